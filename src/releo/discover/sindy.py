"""SINDy on sparsely, irregularly observed trajectories with daily control inputs.

Observations come every 5–6 days (S2 minus clouds: often 10–20) while the drivers act daily
(a rainy day washes the optical effect off within the day), so derivatives at the
observation dates — finite differences, even pysindy's non-uniform stencils
(:func:`derivative_baseline`) — miss most of the dynamics. Instead:

1. integral (weak) form over each interval between consecutive observations,
   y(t_{k+1}) − y(t_k) = [∫ Θ(x(t), u(t)) dt] · ξ, the daily drivers integrated exactly and
   the state between observations on a bridge drawn by the current equation
   (:func:`~releo.discover.integrate.bridge_integrals`), fitting and bridging alternating
   (pysindy STLSQ, threshold on each term's share of the rate);
2. sparse Gauss–Newton on the simulation error itself (:mod:`.output_error`), which keeps
   the observation noise out of the regressors;
3. inclusion probabilities from pysindy's bagging ``EnsembleOptimizer``; terms below
   ``min_inclusion`` are dropped and the rest refitted, then a BIC on the free runs removes
   terms the simulations do not need.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pysindy as ps

from releo.data.errors import DataError
from releo.discover.config import DiscoverConfig
from releo.discover.integrate import bridge_integrals, simulate_at
from releo.discover.library import Library, polynomial_library
from releo.discover.output_error import (
    inclusion,
    prune,
    refine_output_error,
    standard_errors,
)
from releo.discover.trajectories import Drivers, Trajectory, check_trajectories, smooth


@dataclass(frozen=True)
class TermEstimate:
    """One library term: its coefficient (0 when left out), uncertainty and inclusion."""

    label: str
    coefficient: float
    std: float
    inclusion: float
    selected: bool


@dataclass
class Discovery:
    """A discovered equation dx/dt = Σ coefficient · term, with how it was found and fits."""

    target: str
    state: str
    library: Library
    terms: list[TermEstimate]
    n_trajectories: int
    n_intervals: int
    iterations: int
    converged: bool
    bounds: tuple[float, float]
    skill: dict = field(default_factory=dict)
    pruned: list[dict] = field(default_factory=list)  # terms the BIC removed, in order

    @property
    def coef(self) -> np.ndarray:
        """Coefficient of each term."""
        return np.array([t.coefficient for t in self.terms])

    @property
    def selected(self) -> dict[str, float]:
        """Coefficients of the selected terms by label."""
        return {t.label: t.coefficient for t in self.terms if t.selected}

    def equation(self, precision: int = 4) -> str:
        """``db/dt = 0.004*Tplus - 0.06*b`` style text."""
        return f"d{self.state}/dt = {format_rhs(self.selected, precision)}"


def format_rhs(terms: dict[str, float], precision: int = 4) -> str:
    """The right-hand side ``c1*term1 + c2*term2`` of an equation (``0`` without terms)."""
    if not terms:
        return "0"
    text = ""
    for i, (label, c) in enumerate(terms.items()):
        sign = "-" if c < 0 else ("+" if i else "")
        text += f"{' ' if i else ''}{sign}{' ' if i else ''}{abs(c):.{precision}g}*{label}"
    return text


@dataclass(frozen=True)
class Intervals:
    """Consecutive observation pairs of every trajectory."""

    start: np.ndarray
    length: np.ndarray
    y0: np.ndarray
    y1: np.ndarray

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory]) -> Intervals:
        """The intervals between consecutive observations of ``trajectories``."""
        parts = [(t.days[:-1], np.diff(t.days), t.values[:-1], t.values[1:]) for t in trajectories]
        start, length, y0, y1 = (np.concatenate(p) for p in zip(*parts, strict=True))
        return cls(start.astype(int), length.astype(int), y0, y1)


def value_bounds(trajectories: Sequence[Trajectory]) -> tuple[float, float]:
    """Generous bounds for integrating candidates: the data range widened tenfold."""
    values = np.concatenate([t.values for t in trajectories])
    lo, hi = float(values.min()), float(values.max())
    span = max(hi - lo, 1e-6)
    return lo - 10 * span, hi + 10 * span


def _scales(term_rms: np.ndarray, rate_rms: float) -> np.ndarray:
    """Each term's typical share of the rate per unit coefficient.

    |ξ_j| · scale_j is the share of dx/dt that term j carries, so one threshold fits every unit
    system.
    """
    scale = term_rms / max(rate_rms, 1e-300)
    scale[scale == 0] = 1.0
    return scale


def _stlsq(cfg: DiscoverConfig) -> ps.STLSQ:
    return ps.STLSQ(threshold=cfg.threshold, alpha=cfg.alpha, max_iter=50)


def sparse_fit(
    theta: np.ndarray, dy: np.ndarray, scale: np.ndarray, cfg: DiscoverConfig
) -> np.ndarray:
    """STLSQ coefficients (units of ``theta`` and ``dy``), thresholded on term shares."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "eliminated all coefficients": a result
        return _stlsq(cfg).fit(theta / scale, dy).coef_[0] / scale


def _bridge_fit(integrals, dy: np.ndarray, n_terms: int, cfg: DiscoverConfig):
    """Alternate sparse fits and bridges, starting from straight lines between observations.

    Returns the coefficients, the number of fits made and whether they settled.
    """
    coef = np.zeros(n_terms)
    for iteration in range(1, cfg.bridge_iterations + 1):
        theta, scale = integrals(coef)
        new = sparse_fit(theta, dy, scale, cfg)
        change = np.abs(new - coef).max() / max(np.abs(new).max(), 1e-12)
        coef = new
        if change < 1e-4:
            return coef, iteration, True
    return coef, cfg.bridge_iterations, False


def discover(
    trajectories: Sequence[Trajectory],
    drivers: Drivers,
    state: str,
    cfg: DiscoverConfig,
    target: str,
) -> Discovery:
    """Fit the equation of ``state`` on the ``train`` trajectories and score it on the others.

    The score is a free-run simulation from each held-out trajectory's first observation.
    """
    check_trajectories(trajectories, drivers, cfg.min_dates, target)
    trajectories = [smooth(t, cfg.smoothing_days) for t in trajectories]
    fitted = [t for t in trajectories if t.group == "train"]
    if not fitted:
        raise DataError(f"{target}: no trajectory in the fitted group 'train'")
    lib = polynomial_library(cfg.library, state, drivers.names)
    iv = Intervals.of(fitted)
    dy = iv.y1 - iv.y0
    bounds = value_bounds(trajectories)
    u = drivers.values

    rate_rms = float(np.sqrt(np.mean((dy / iv.length) ** 2)))

    def integrals(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        theta, term_rms = bridge_integrals(
            lib, c, iv.start, iv.length, iv.y0, iv.y1, u, cfg.substeps, bounds
        )
        return theta, _scales(term_rms, rate_rms)

    coef, iterations, converged = _bridge_fit(integrals, dy, lib.powers.shape[0], cfg)
    coef, _, lin, refined = refine_output_error(fitted, lib, coef, u, cfg, bounds, rate_rms)
    probability = inclusion(lin, cfg, rate_rms)
    support = probability >= cfg.min_inclusion
    if not np.array_equal(support, coef != 0):
        # Bagging disagrees with the single fit: refit on the terms bagging keeps.
        coef, _, lin, more = refine_output_error(
            fitted, lib, coef * support, u, cfg, bounds, rate_rms, support=support
        )
        refined += more
    coef, lin, pruned = prune(fitted, lib, coef, lin, u, cfg, bounds, rate_rms)
    std = standard_errors(lin, coef)
    iterations += refined
    terms = [
        TermEstimate(label, float(c), float(s), float(p), bool(c != 0))
        for label, c, s, p in zip(lib.labels, coef, std, probability, strict=True)
    ]
    theta, _ = integrals(coef)
    result = Discovery(
        target, state, lib, terms, len(fitted), int(dy.size), iterations, converged, bounds
    )
    result.pruned = pruned
    result.skill = skill(result, trajectories, drivers, cfg, theta=theta, dy=dy)
    return result


def predict(
    result: Discovery, trajectories: Sequence[Trajectory], drivers: Drivers, substeps: int
) -> list[np.ndarray]:
    """Free-run simulation of each trajectory from its first observation, at its days."""
    return simulate_at(
        result.library,
        result.coef,
        np.array([t.values[0] for t in trajectories]),
        np.array([t.days[0] for t in trajectories]),
        [t.days for t in trajectories],
        drivers.values,
        substeps,
        result.bounds,
    )


def r2(observed: np.ndarray, predicted: np.ndarray) -> float:
    """Coefficient of determination (NaN without variance)."""
    ss = float(np.sum((observed - observed.mean()) ** 2))
    return float(1 - np.sum((observed - predicted) ** 2) / ss) if ss > 0 else float("nan")


def skill(
    result: Discovery,
    trajectories: Sequence[Trajectory],
    drivers: Drivers,
    cfg: DiscoverConfig,
    *,
    theta: np.ndarray,
    dy: np.ndarray,
) -> dict:
    """Fit quality on the fitted intervals and on the held-out trajectories.

    Increment R² on the fitted intervals, and free-run simulation R² / RMSE on the held-out
    trajectories (the initial value excluded: it is given).
    """
    out: dict = {"increment_r2_fit": r2(dy, theta @ result.coef)}
    for group, members in (
        ("fit", [t for t in trajectories if t.group == "train"]),
        ("heldout", [t for t in trajectories if t.group != "train"]),
    ):
        out[f"n_trajectories_{group}"] = len(members)
        if not members:
            for key in ("sim_r2", "sim_r2_within", "sim_rmse"):
                out[f"{key}_{group}"] = None
            continue
        simulated = predict(result, members, drivers, cfg.substeps)
        obs = np.concatenate([t.values[1:] for t in members])
        sim = np.concatenate([s[1:] for s in simulated])
        # Pooled R² rewards getting each field's level right (given by its first value);
        # the within-trajectory R² only counts the dynamics: variance about each field's mean.
        within = np.concatenate([t.values[1:] - t.values[1:].mean() for t in members])
        sse = float(np.sum((obs - sim) ** 2))
        out[f"sim_r2_{group}"] = r2(obs, sim)
        out[f"sim_r2_within_{group}"] = (
            1 - sse / float(np.sum(within**2)) if np.any(within) else float("nan")
        )
        out[f"sim_rmse_{group}"] = float(np.sqrt(sse / obs.size))
        out[f"n_observations_{group}"] = int(obs.size)
    return out


def derivative_baseline(
    trajectories: Sequence[Trajectory], drivers: Drivers, state: str, cfg: DiscoverConfig
) -> dict[str, float]:
    """The textbook route, for comparison: pysindy's finite differences.

    Its ``FiniteDifference`` derivatives on the irregular observation dates (its non-uniform
    stencils) are regressed on the library at those dates, with the same thresholding. It sees the
    drivers only on observation days.
    """
    fitted = [t for t in trajectories if t.group == "train"]
    lib = polynomial_library(cfg.library, state, drivers.names)
    derivative = ps.FiniteDifference()
    rates = [derivative(t.values[:, None], t.days.astype(float))[:, 0] for t in fitted]
    theta = np.concatenate([lib.evaluate(t.values, drivers.values[t.days]) for t in fitted])
    rate = np.concatenate(rates)
    rate_rms = float(np.sqrt(np.mean(rate**2)))
    coef = sparse_fit(theta, rate, _scales(np.sqrt(np.mean(theta**2, axis=0)), rate_rms), cfg)
    return {label: float(c) for label, c in zip(lib.labels, coef, strict=True) if c != 0}
