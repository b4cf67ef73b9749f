"""Physical variables decoded by the model: their ranges, priors, and bounded distributions."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

VARIABLE_RANGES: Mapping[str, tuple[float, float]] = {
    "N": (1.2, 1.8), "cab": (20.0, 90.0), "car": (5.0, 23.0), "cant": (0.0, 10.0),
    "cbrown": (0.0, 2.0), "cw": (0.0075, 0.075), "cm": (0.003, 0.011), "lai": (0.0, 10.0),
    "lidfa": (30.0, 80.0), "hspot": (0.01, 0.5), "psoil": (0.0, 1.0), "rsoil": (0.1, 3.5),
    "soil_moisture": (0.02, 0.55),
}  # fmt: skip
"""Decoded variables and their ranges: the PROSAIL-VAE training domain (Zérah et al. 2024,
inside PROSAIL's PARAMETER_RANGES) and surface soil moisture (m³ m⁻³, inside the WCM's).
The soil brightness goes down to 0.1 (PROSAIL-VAE: 0.3) so that dark wet or flooded surfaces
(open water seen as LAI 0 over wet soil at rsoil 0.3) lie inside the range, not on its edge,
where a logit-normal cannot reach them."""

PRIOR_MEDIANS: Mapping[str, float] = {
    "N": 1.5, "cab": 45.0, "car": 10.0, "cant": 2.0, "cbrown": 0.3, "cw": 0.025, "cm": 0.007,
    "lai": 2.0, "lidfa": 55.0, "hspot": 0.2, "psoil": 0.5, "rsoil": 1.2, "soil_moisture": 0.25,
}  # fmt: skip
"""Prior medians: typical agricultural values; the prior spread is wide (see PRIOR_SCALE)."""

PRIOR_SCALE = 1.5
"""Prior standard deviation in logit space: ~90 % of its mass spans most of the range."""

VARIABLES: tuple[str, ...] = tuple(VARIABLE_RANGES)
STATIC_VARIABLES: tuple[str, ...] = ("N", "lidfa", "hspot", "rsoil")
"""Per-pixel constants of the canopy and soil (decoded without the date)."""

GAUSS_HERMITE_NODES, GAUSS_HERMITE_WEIGHTS = np.polynomial.hermite_e.hermegauss(12)
"""12-point Gauss-Hermite quadrature (probabilists', weight exp(-x²/2)) of the moments."""


def prior_logit(name: str) -> float:
    """Prior median of ``name`` in the logit space of its range."""
    lo, hi = VARIABLE_RANGES[name]
    p = (PRIOR_MEDIANS[name] - lo) / (hi - lo)
    return math.log(p / (1 - p))


class BoundedNormal:
    """A Normal in logit space mapped into (low, high): a scaled logit-normal distribution.

    ``rsample`` is reparameterised; ``median`` is exact, ``mean`` and ``stddev`` use 12-point
    Gauss-Hermite quadrature; ``icdf`` gives quantiles (uncertainty intervals).
    """

    def __init__(self, loc: torch.Tensor, scale: torch.Tensor, low: float, high: float):
        self.loc, self.scale, self.low, self.high = loc, scale, low, high

    def _map(self, u: torch.Tensor) -> torch.Tensor:
        # Clamp keeps float32 values strictly usable by the physics range checks.
        return (self.low + (self.high - self.low) * torch.sigmoid(u)).clamp(self.low, self.high)

    @property
    def median(self) -> torch.Tensor:
        """Median: the mapped location."""
        return self._map(self.loc)

    def _moment(self, power: int) -> torch.Tensor:
        nodes = torch.as_tensor(GAUSS_HERMITE_NODES, dtype=self.loc.dtype, device=self.loc.device)
        weights = torch.as_tensor(
            GAUSS_HERMITE_WEIGHTS, dtype=self.loc.dtype, device=self.loc.device
        )
        values = self._map(self.loc[..., None] + self.scale[..., None] * nodes) ** power
        return (values * weights).sum(-1) / math.sqrt(2 * math.pi)

    @property
    def mean(self) -> torch.Tensor:
        """Mean, by Gauss-Hermite quadrature."""
        return self._moment(1)

    @property
    def stddev(self) -> torch.Tensor:
        """Standard deviation, by Gauss-Hermite quadrature."""
        return (self._moment(2) - self._moment(1) ** 2).clamp_min(0).sqrt()

    def rsample(self) -> torch.Tensor:
        """One reparameterised draw."""
        return self._map(self.loc + self.scale * torch.randn_like(self.loc))

    def sample(self) -> torch.Tensor:
        """One draw, without gradient."""
        with torch.no_grad():
            return self.rsample()

    def icdf(self, q: float | torch.Tensor) -> torch.Tensor:
        """Quantile ``q``."""
        q = torch.as_tensor(q, dtype=self.loc.dtype, device=self.loc.device)
        return self._map(self.loc + self.scale * math.sqrt(2) * torch.erfinv(2 * q - 1))

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log density of ``value``."""
        p = ((value - self.low) / (self.high - self.low)).clamp(1e-6, 1 - 1e-6)
        u = torch.log(p) - torch.log1p(-p)
        normal = torch.distributions.Normal(self.loc, self.scale)
        return normal.log_prob(u) - torch.log((self.high - self.low) * p * (1 - p))

    def logit_nll(self, value: torch.Tensor, huber: float = 3.0) -> torch.Tensor:
        """Negative log-density of ``value`` in logit space (constant- and Jacobian-free).

        Quadratic within ``huber`` standard deviations and linear beyond, so the gradients of a
        badly placed early distribution stay bounded.
        """
        p = ((value - self.low) / (self.high - self.low)).clamp(1e-6, 1 - 1e-6)
        d = ((torch.log(p) - torch.log1p(-p)) - self.loc).abs() / self.scale
        robust = torch.where(d < huber, 0.5 * d**2, huber * d - 0.5 * huber**2)
        return robust + torch.log(self.scale)

    def kl_to_prior(self, prior_loc: float, prior_scale: float = PRIOR_SCALE) -> torch.Tensor:
        """KL(q || prior), both Normal in logit space (the map is shared, so KL is unchanged)."""
        return _normal_kl(self.loc, self.scale, prior_loc, prior_scale)

    def kl_from(self, other: BoundedNormal) -> torch.Tensor:
        """KL(other || self) in logit space.

        Fitting ``self`` to ``other`` by it gives self.scale² = other.scale² + (loc gap)², the
        other's spread plus its own miss.
        """
        return _normal_kl(other.loc, other.scale, self.loc, self.scale)


def _normal_kl(loc_p, scale_p, loc_q, scale_q) -> torch.Tensor:
    """KL(N(loc_p, scale_p²) || N(loc_q, scale_q²)), elementwise."""
    ratio = scale_p / scale_q
    return 0.5 * (ratio**2 + ((loc_p - loc_q) / scale_q) ** 2 - 1) - torch.log(ratio)
