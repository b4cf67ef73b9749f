"""Candidate terms of an equation: pysindy's polynomial library on (state, drivers).

pysindy builds the library (its monomials and their order); evaluating it here from the
exponent table keeps the thousands of evaluations inside the ODE integrator vectorised over
every interval at once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pysindy as ps

from releo.discover.config import LibraryConfig


def term_label(factors: Mapping[str, int]) -> str:
    """``P*b``-style label of a monomial (symbols sorted; ``x^2`` for powers).

    As in :attr:`releo.data.simulate.effects.Term.label`.
    """
    parts = [s if p == 1 else f"{s}^{p}" for s, p in sorted(factors.items()) if p]
    return "*".join(parts) if parts else "1"


@dataclass(frozen=True)
class Library:
    """Monomials of ``inputs`` (the state first, then the drivers)."""

    inputs: tuple[str, ...]
    powers: np.ndarray  # (n_terms, n_inputs) exponents
    sindy: ps.PolynomialLibrary

    @property
    def labels(self) -> tuple[str, ...]:
        """Label of each library term."""
        return tuple(
            term_label(dict(zip(self.inputs, row, strict=True))) for row in self.powers.tolist()
        )

    @property
    def state(self) -> str:
        """Name of the state (the first input)."""
        return self.inputs[0]

    def evaluate(self, state: np.ndarray, drivers: np.ndarray) -> np.ndarray:
        """Terms (..., n_terms) at states (...) with drivers (..., n_drivers)."""
        ones = np.ones_like(np.asarray(state, dtype=float))[..., None]
        inputs = np.concatenate([np.asarray(state)[..., None], drivers, ones], axis=-1)
        # Each monomial as a product of `degree` picked inputs (the last one is a 1): one
        # gather and a few products instead of a power table, inside every RK4 stage.
        picked = inputs[..., self._factors]
        out = picked[..., 0]
        for k in range(1, picked.shape[-1]):
            out = out * picked[..., k]
        return out

    @property
    def _factors(self) -> np.ndarray:
        n_inputs = len(self.inputs)
        width = max(int(self.powers.sum(axis=1).max()), 1)
        out = np.full((self.powers.shape[0], width), n_inputs)
        for j, row in enumerate(self.powers):
            picks = np.repeat(np.arange(n_inputs), row)
            out[j, : picks.size] = picks
        return out

    def driver_monomials(self, drivers: np.ndarray) -> np.ndarray:
        """The driver part Π u^p of every term, (n, n_terms), for drivers (n, n_drivers)."""
        return np.prod(drivers[:, None, :] ** self.powers[None, :, 1:], axis=-1)

    def state_polynomial(self, coef: np.ndarray, monomials: np.ndarray) -> np.ndarray:
        """dx/dt as a polynomial in the state for fixed drivers.

        Returns the coefficients (n, degree + 1) of x⁰, x¹, … from the drivers'
        ``monomials`` (n, n_terms) and ``coef`` (n_terms,) or (n, n_terms).
        """
        weighted = monomials * coef
        return weighted @ self._state_power_matrix

    @property
    def _state_power_matrix(self) -> np.ndarray:
        """(n_terms, degree + 1) indicator of each term's power of the state."""
        power = self.powers[:, 0]
        return (power[:, None] == np.arange(int(power.max()) + 1)[None, :]).astype(float)


def horner(poly: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Σ_k poly[:, k] · x^k."""
    out = poly[:, -1].copy()
    for k in range(poly.shape[1] - 2, -1, -1):
        out = out * x + poly[:, k]
    return out


def polynomial_library(cfg: LibraryConfig, state: str, drivers: Sequence[str]) -> Library:
    """The pysindy ``PolynomialLibrary`` of ``cfg`` over the state and ``drivers``."""
    sindy = ps.PolynomialLibrary(
        degree=cfg.degree, include_bias=cfg.include_bias, interaction_only=cfg.interaction_only
    )
    inputs = (state, *drivers)
    sindy.fit(np.ones((2, len(inputs))))
    return Library(inputs, np.asarray(sindy.powers_, dtype=int), sindy)
