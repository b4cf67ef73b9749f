"""Field LAI surveys sampled from the true LAI with method-specific measurement errors.

Campaigns are spread over the growing season (April–September) of the period. Each samples
points (elementary sampling units) inside vegetated fields, away from field edges, on fields
with a canopy at the time (teams do not survey bare soil), and measures them over three days.
Measurement models:

* ``LAI-2200`` (gap fraction, LI-COR plant canopy analyser): measures an effective LAI, biased
  low by foliage clumping (Ω ≈ 0.85 for row crops and woods; Chen & Cihlar 1995; Weiss et al.
  2004, Agric. For. Meteorol. 121, 37–53), random error ~8 % + 0.1;
* ``hemispherical_photos`` (CAN-EYE processing, clumping corrected): unbiased, ~15 % relative
  error + 0.05.

``lai_std`` is the uncertainty a team reports: the method's error model at the measured value.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
from scipy import ndimage

from releo.data.contracts import LAND_COVER_CLASSES, SURVEY_COLUMNS
from releo.data.simulate.parcels import VEGETATED_CLASSES
from releo.data.simulate.random_fields import day_key, keyed_rng
from releo.data.simulate.scene import Scene

SEASON_MONTHS = (4, 9)
"""Campaigns happen from April to September."""
MIN_SEASON_DAYS = 20
MIN_SURVEY_LAI = 0.2
CAMPAIGN_DAYS = 3


@dataclass(frozen=True)
class SurveyMethod:
    """An LAI measurement method and its errors."""

    name: str
    bias_factor: float  # measured = bias_factor · LAI + error
    relative_error: float
    absolute_error: float

    def std(self, lai: np.ndarray) -> np.ndarray:
        """Standard deviation of a measurement of ``lai``."""
        return self.relative_error * np.maximum(lai, 0.0) + self.absolute_error


SURVEY_METHODS: tuple[SurveyMethod, ...] = (
    SurveyMethod("LAI-2200", 0.85, 0.08, 0.10),
    SurveyMethod("hemispherical_photos", 1.0, 0.15, 0.05),
)


def campaign_dates(first: date, last: date, n_campaigns: int) -> list[date]:
    """Evenly spaced campaign dates inside the growing-season part of [first, last]."""
    dates: list[date] = []
    for year in range(first.year, last.year + 1):
        season_start = max(first, date(year, SEASON_MONTHS[0], 1))
        season_end = min(last, date(year, SEASON_MONTHS[1], 30))
        span = (season_end - season_start).days + 1
        if span < MIN_SEASON_DAYS or n_campaigns == 0:
            continue
        # Leave room for the three measurement days of the last campaign.
        usable = span - CAMPAIGN_DAYS
        dates += [
            season_start + timedelta(days=int((k + 0.5) * usable / n_campaigns))
            for k in range(n_campaigns)
        ]
    return dates


def simulate_surveys(scene: Scene, first: date, last: date) -> pd.DataFrame:
    """Survey table (contracts.SURVEY_COLUMNS) of every campaign in [first, last]."""
    config, parcels, grid = scene.config, scene.parcels, scene.grid
    vegetated = np.isin(parcels.land_cover, VEGETATED_CLASSES)
    # One pixel away from any other field, so a point is surely inside its field.
    interior = np.zeros_like(vegetated)
    for pid in np.unique(parcels.parcel_id[vegetated]):
        interior |= ndimage.binary_erosion(parcels.parcel_id == pid, border_value=1)
    candidates = vegetated & interior
    if candidates.sum() < config.survey_points:
        candidates = vegetated
    rows_px, cols_px = np.nonzero(candidates)
    records = []
    for campaign_day in campaign_dates(first, last, config.survey_campaigns):
        rng = keyed_rng(config.seed, "surveys", day_key(np.datetime64(campaign_day)))
        label = f"campaign_{campaign_day:%Y%m%d}"
        offsets = rng.integers(0, CAMPAIGN_DAYS, size=rows_px.size)
        days = np.datetime64(campaign_day) + offsets.astype("timedelta64[D]")
        days = np.minimum(days, np.datetime64(last))
        unique_days = np.unique(days)
        lai_days = scene.canopy(unique_days)["lai"]
        zone = parcels.zone[rows_px, cols_px]
        true_lai = lai_days[np.searchsorted(unique_days, days), zone]
        eligible = np.flatnonzero(true_lai >= MIN_SURVEY_LAI)
        chosen = rng.permutation(eligible)[: config.survey_points]
        for k, idx in enumerate(np.sort(chosen)):
            method = SURVEY_METHODS[int(rng.integers(len(SURVEY_METHODS)))]
            expected = method.bias_factor * true_lai[idx]
            measured = max(0.0, expected + method.std(expected) * rng.normal())
            x = grid.x[cols_px[idx]] + rng.uniform(-0.45, 0.45) * grid.pixel_size_m
            y = grid.y[rows_px[idx]] + rng.uniform(-0.45, 0.45) * grid.pixel_size_m
            records.append(
                {
                    "point_id": f"{label}_P{k + 1:03d}",
                    "date": str(days[idx]),
                    "x": round(float(x), 2),
                    "y": round(float(y), 2),
                    "crs": config.crs,
                    "land_cover": LAND_COVER_CLASSES[
                        int(parcels.land_cover[rows_px[idx], cols_px[idx]])
                    ],
                    "lai": round(measured, 3),
                    "lai_std": round(float(method.std(measured)), 3),
                    "method": method.name,
                    "campaign": label,
                }
            )
    return pd.DataFrame.from_records(records, columns=list(SURVEY_COLUMNS))
