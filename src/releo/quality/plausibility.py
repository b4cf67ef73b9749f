"""Per-date plausibility statistics: wrong data that lies inside every range.

A unit mix-up (σ0 in linear power, angles in radians, nodata written as 0 with a clear mask)
or a reader bug (exchanged bands) keeps each value in its admissible interval; the
distribution gives it away. The statistics are taken on a strided subset of each date's pixels
(``PLAUSIBILITY_PIXELS``), cut from the blocks ``summaries`` already reads, so they cost no
extra pass over a cube. Shares and medians of a date with fewer than ``MIN_JUDGED_PIXELS``
judged pixels are NaN (not judged).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from releo.data import contracts as c
from releo.physics.sun import solar_declination
from releo.quality.specs import (
    HAZE_BLUE_MIN,
    HAZE_FLATNESS,
    MIN_JUDGED_PIXELS,
    NDVI_EXCHANGE_THRESHOLD,
    OVERPASS_HOUR_ANGLE_DEG,
    PLAUSIBILITY_PIXELS,
    SATURATED_REFLECTANCE,
    SNOW_NDSI_MIN,
    WATER_SWIR_MAX,
    CubeSpec,
)

NEGATIVE_NDVI = "ndvi_B08_B04_negative_share"
HAZE = "haze_clear_share"
HAZE_MEAN = "haze_clear_share_mean_over_dates"
ZERO = "zero_spectrum_clear_share"
SATURATED = "saturated_clear_share"
SUN_OFF = "sun_zenith_outside_expected_deg"


def subset_index(n_pixels: int) -> np.ndarray:
    """Flat pixel indices of the per-date subset: a regular stride, at most PLAUSIBILITY_PIXELS."""
    step = max(1, -(-n_pixels // PLAUSIBILITY_PIXELS))
    return np.arange(0, n_pixels, step)


def _ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return (a - b) / (a + b)


def _share(flags: np.ndarray | np.bool_, judged: np.ndarray) -> np.ndarray:
    n = judged.sum(axis=1)
    share = (flags & judged).sum(axis=1) / np.maximum(n, 1)
    return np.where(n >= MIN_JUDGED_PIXELS, share, np.nan)


def spectra_shares(bands: Mapping[str, np.ndarray], clear: np.ndarray) -> dict[str, np.ndarray]:
    """Per-date shares of clear (subset) pixels with an implausible spectrum; (date, pixel) in."""
    clear = clear & np.all([np.isfinite(v) for v in bands.values()], axis=0)
    stack = np.stack([bands[b] for b in c.S2_BANDS])
    b02, b03, b04, b08 = (bands[b] for b in ("B02", "B03", "B04", "B08"))
    b11, b12 = bands["B11"], bands["B12"]
    water = (b11 < WATER_SWIR_MAX) & (b12 < WATER_SWIR_MAX)
    land = clear & ~water
    snow = _ratio(b03, b11) > SNOW_NDSI_MIN
    haze = (
        (b02 > HAZE_BLUE_MIN) & (b02 >= b03 - HAZE_FLATNESS) & (b03 >= b04 - HAZE_FLATNESS) & ~snow
    )
    return {
        "clear_judged": clear.sum(axis=1),
        ZERO: _share((stack == 0).all(axis=0), clear),
        NEGATIVE_NDVI: _share(_ratio(b08, b04) < NDVI_EXCHANGE_THRESHOLD, land),
        HAZE: _share(haze, clear),
        SATURATED: _share((stack >= SATURATED_REFLECTANCE).any(axis=0), clear),
    }


def distribution(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-date median and p90 - p10 over the finite (subset) pixels; NaN with too few."""
    finite = np.isfinite(values)
    kept = np.where(finite, values, np.nan).astype("float64")
    enough = finite.sum(axis=1) >= MIN_JUDGED_PIXELS
    out_median = np.full(values.shape[0], np.nan)
    out_spread = np.full(values.shape[0], np.nan)
    if enough.any():
        p10, p50, p90 = np.nanpercentile(kept[enough], [10, 50, 90], axis=1)
        out_median[enough], out_spread[enough] = p50, p90 - p10
    return out_median, out_spread


def site_lonlat(ds: xr.Dataset, crs: object) -> tuple[float, float]:
    """Longitude and latitude of the cube's centre (CRS + bounds)."""
    import pyproj

    x = float(np.mean([ds["x"].values.min(), ds["x"].values.max()]))
    y = float(np.mean([ds["y"].values.min(), ds["y"].values.max()]))
    to_lonlat = pyproj.Transformer.from_crs(
        pyproj.CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs),
        "EPSG:4326",
        always_xy=True,
    )
    lon, lat = to_lonlat.transform(x, y)
    return float(lon), float(lat)


def expected_sun_zenith(times: pd.DatetimeIndex, lat: float) -> tuple[np.ndarray, np.ndarray]:
    """Range of the sun zenith (degrees) at latitude ``lat`` on each day, near solar noon.

    The range covers the times within ``OVERPASS_HOUR_ANGLE_DEG`` of local solar noon: [noon zenith,
    zenith at that hour angle].

    No time of day is needed, so a cube dated at midnight is judged like one with the UTC
    overpass time.
    """
    decl = solar_declination(times.day_of_year.to_numpy())
    phi, h = np.deg2rad(lat), np.deg2rad(OVERPASS_HOUR_ANGLE_DEG)
    noon = np.abs(np.rad2deg(phi - decl))
    cos_z = np.sin(phi) * np.sin(decl) + np.cos(phi) * np.cos(decl) * np.cos(h)
    late = np.rad2deg(np.arccos(np.clip(cos_z, -1.0, 1.0)))
    return noon, late


def sun_zenith_table(ds: xr.Dataset, spec: CubeSpec, crs: object) -> dict[str, np.ndarray]:
    """Per-date sun zenith, its expected range and the signed degrees outside it (0 inside)."""
    name = spec.sun_zenith
    if name is None:
        raise ValueError(f"cube spec {spec.contract!r} names no sun zenith variable")
    zenith = np.asarray(ds[name].values, dtype="float64")
    _, lat = site_lonlat(ds, crs)
    lo, hi = expected_sun_zenith(pd.DatetimeIndex(ds["time"].values), lat)
    outside = np.where(zenith < lo, zenith - lo, np.where(zenith > hi, zenith - hi, 0.0))
    return {
        name: zenith,
        f"{name}_expected_min": lo,
        f"{name}_expected_max": hi,
        SUN_OFF: outside,
    }
