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

Stage ``calibrate`` fits it (:func:`run_calibrate`); ``decode``, ``evaluate``, ``register`` and
``releo decode`` apply it (:class:`LaiCalibration`).
"""

from __future__ import annotations

import math
import time
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from releo.config import Params
from releo.data.io import json_safe, open_cube, write_json
from releo.data.readers import read_field_survey
from releo.data.site import open_site
from releo.models.distributions import BoundedNormal
from releo.products.decode import LaiCalibration, decode_distribution, pair_queries
from releo.products.embed import load_autoencoder
from releo.products.evaluate import held_out_mask, survey_pixels
from releo.products.stages import CALIBRATION, EMBEDDINGS, INDEX, MODEL
from releo.timings import record

CALIBRATE_METRICS = Path("metrics/calibrate.json")


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


def run_calibrate(params: Params, root: Path = Path()) -> dict:
    """Stage ``calibrate``: fit the spread scale on the field surveys of held-out places.

    The places are those of ``products.calibrate.splits``; writes ``calibration/lai.json`` and
    ``metrics/calibrate.json``.
    """
    started = time.perf_counter()
    root = Path(root)
    cfg = params.products.calibrate
    interval = params.products.decode.interval
    model, _ = load_autoencoder(root / MODEL)
    embeddings = open_cube(root / EMBEDDINGS)
    site = open_site(root / params.data_dir)
    index = pd.read_parquet(root / INDEX)
    if site.surveys is None:
        surveys = pd.DataFrame(columns=["x", "y", "date", "lai", "lai_std"])
    else:
        surveys = read_field_survey(site.path("surveys"), target_crs=site.crs)
    s2 = site.s2
    row, col, inside = survey_pixels(surveys, s2.x.values, s2.y.values)
    places = held_out_mask(index, (s2.sizes["y"], s2.sizes["x"]), cfg.splits)
    chosen = inside.copy()
    chosen[inside] = places[row[inside], col[inside]]
    table = surveys.loc[chosen].reset_index(drop=True)
    when = pd.DatetimeIndex(pd.to_datetime(table["date"])).tz_localize(None).normalize()
    queries = pair_queries(
        embeddings, table["x"].to_numpy(), table["y"].to_numpy(), when,
        blend_days=params.products.decode.blend_days,
    )  # fmt: skip
    valid = queries.valid
    observed = table["lai"].to_numpy(float)[valid]
    observed_std = table["lai_std"].fillna(0.0).to_numpy(float)[valid]
    result = {
        "splits": list(cfg.splits),
        "interval": interval,
        "detection_limit": cfg.detection_limit,
        "surveys": int(valid.sum()),
        "min_surveys": cfg.min_surveys,
        "site_has_surveys": site.surveys is not None,
        "site_has_truth": site.has_truth,  # never used here: the record of what the site holds
    }
    if valid.sum() >= cfg.min_surveys:
        dist = decode_distribution(model, queries)
        scale, before, after = fit_spread_scale(
            dist, observed, observed_std, interval=interval, detection_limit=cfg.detection_limit
        )
        result.update(fitted=True, spread_scale=scale, coverage_before=before, coverage=after)
    else:
        why = (
            f"{site.path('surveys')}: absent (no field surveys)"
            if site.surveys is None
            else f"{int(valid.sum())} surveys on {'+'.join(cfg.splits)} places, fewer than "
            f"min_surveys={cfg.min_surveys}"
        )
        result.update(
            fitted=False, spread_scale=1.0, coverage_before=math.nan, coverage=math.nan,
            note=f"{why}: spread left as decoded",
        )  # fmt: skip
    write_json(
        {k: result[k] for k in ("spread_scale", "detection_limit", "interval", "surveys")},
        root / CALIBRATION,
    )
    record(calibrate_seconds=round(time.perf_counter() - started, 2))
    write_json(json_safe(result), root / CALIBRATE_METRICS)
    return result
