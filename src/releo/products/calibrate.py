"""Calibration of the decoded LAI distributions: a detection limit and a spread scale.

The model's LAI distribution comes from the physics alone, and users of its intervals miss
two things in it:

- bare soil has LAI exactly 0, which a logit-normal on (0, 10) never reaches: its lower
  bound is 0.0003, not 0. Below ``detection_limit`` a canopy changes the S2 reflectance of its
  soil by less than the L2A noise (checked against PROSAIL in the tests), so LAI and its
  bounds below it are reported as 0;
- its spread holds what the reflectance noise leaves unknown, not the model's own error (its
  prior, the effects it does not model), so its intervals are too narrow. ``spread_scale``
  multiplies the logit-space spread: the smallest factor with which the central ``interval``
  of the predictive distribution of a survey measurement (decoded LAI plus the survey's own
  error ``lai_std``) holds that share of the field surveys of ``splits`` (``val``: places
  that training never fitted; on the training places the model's errors are smaller, and the
  intervals fitted there covered 0.60 of the test truth instead of 0.81).

Stage ``calibrate`` fits it (:func:`fit_spread_scale`, run by :mod:`releo.stages.calibrate`);
``decode``, ``evaluate``, ``register`` and ``releo decode`` apply it (:class:`LaiCalibration`).
"""

from __future__ import annotations

from functools import cache

import numpy as np
import torch

from releo.models.distributions import BoundedNormal
from releo.products.decode import LaiCalibration


def predictive_coverage(
    dist: BoundedNormal,
    observed: np.ndarray,
    observed_std: np.ndarray,
    scales: np.ndarray,
    *,
    interval: float,
    detection_limit: float = 0.0,
    draws: int = 4000,
    seed: int = 0,
) -> np.ndarray:
    """Share of ``observed`` values (N,) inside their predictive interval, per spread scale.

    The predictive distribution is the widened and censored ``dist`` (N,) plus a Gaussian
    measurement error of ``observed_std`` (N,); the share is that of values inside its central
    ``interval``. Monte Carlo with common draws, so the coverage is a smooth function of the
    scale.
    """
    gen = torch.Generator().manual_seed(seed)
    n = len(observed)
    eps = torch.randn((draws, n), generator=gen, dtype=torch.float64)
    err = torch.randn((draws, n), generator=gen, dtype=torch.float64)
    levels = torch.special.ndtr(eps)  # common quantile levels of the draws
    base = BoundedNormal(dist.loc.detach().double().reshape(n),
                         dist.scale.detach().double().reshape(n), dist.low, dist.high)  # fmt: skip
    y = torch.as_tensor(observed, dtype=torch.float64)
    sd = torch.as_tensor(observed_std, dtype=torch.float64)
    out = np.empty(len(scales))
    for i, s in enumerate(scales):
        cal = LaiCalibration(float(s), detection_limit)
        sample = cal.censor(cal.widen(base).icdf(levels)) + sd * err
        # mid-rank PIT: a survey of exactly 0 against an atom at 0 sits inside it
        pit = (sample < y).double().mean(0) + 0.5 * (sample == y).double().mean(0)
        out[i] = float(((pit - 0.5).abs() <= interval / 2).double().mean())
    return out


def fit_spread_scale(
    dist: BoundedNormal,
    observed: np.ndarray,
    observed_std: np.ndarray,
    *,
    interval: float,
    detection_limit: float = 0.0,
    scales: np.ndarray | None = None,
) -> tuple[float, float, float]:
    """The smallest spread scale whose predictive coverage reaches ``interval``.

    The scale is taken from ``scales`` (default 0.25…20, 1 % apart), the largest if none
    reaches it; found by bisection, the coverage growing with the scale.

    Returns:
        (scale, coverage at 1, coverage at the scale).
    """
    scales = np.geomspace(0.25, 20.0, 442) if scales is None else np.sort(scales)

    @cache
    def coverage(scale: float) -> float:
        return float(predictive_coverage(
            dist, observed, observed_std, np.array([scale]), interval=interval,
            detection_limit=detection_limit,
        )[0])  # fmt: skip

    lo, hi = 0, len(scales) - 1
    if coverage(scales[hi]) >= interval:
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if coverage(scales[mid]) >= interval else (mid + 1, hi)
    scale = float(scales[hi])  # coverage(scale) is cached from the search
    return scale, coverage(1.0), coverage(scale)
