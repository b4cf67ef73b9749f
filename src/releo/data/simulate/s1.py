"""Sentinel-1 IW GRD acquisitions: Water Cloud Model + exclusive effect + speckle.

σ0 of every pixel comes from the Water Cloud Model (Attema & Ulaby 1978, Radio Sci. 13, 357)
with the true LAI and surface soil moisture at the pixel's incidence angle; the SAR exclusive
effect is added in dB; open water, which the WCM does not describe, follows a specular-surface
law (VV ≈ −22 dB, VH ≈ −29 dB, decreasing with incidence). Speckle is multiplicative, unit-mean
gamma of shape L = ENL in linear power (Goodman 1976; Ulaby, Kouyate, Brisco & Williams 1986,
IEEE TGRS 24, 235), with L ≈ 4.4 as specified for IW GRDH 10 m products; it is drawn
independently per pixel (the pixel-to-pixel correlation of real GRD speckle is neglected).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from tqdm.auto import tqdm

from releo.data.contracts import (
    PLATFORM,
    S1_INCIDENCE,
    S1_ORBIT_DIRECTION,
    S1_POLARISATIONS,
    S1_RELATIVE_ORBIT,
)
from releo.data.simulate.effects import SAR_WETNESS
from releo.data.simulate.geometry import incidence_raster
from releo.data.simulate.parcels import WATER
from releo.data.simulate.random_fields import day_key, keyed_rng, round_mantissa
from releo.data.simulate.scene import Scene
from releo.data.spill import Data, Scratch, row_blocks
from releo.physics import wcm_backscatter_db

OPEN_WATER_DB = {"VV": (-22.0, -0.30), "VH": (-29.0, -0.10)}
"""σ0 of calm open water at 35° incidence (dB) and its slope (dB per degree)."""
SIMULATED_DB_RANGE = (-40.0, 10.0)
"""Clip of simulated σ0 (dB): speckle's deep fades stay above the sensor's noise floor."""


def open_water_db(incidence_deg: np.ndarray, polarisation: str) -> np.ndarray:
    """Backscatter of calm open water (dB): specular reflection leaves little signal."""
    level, slope = OPEN_WATER_DB[polarisation]
    return level + slope * (incidence_deg - 35.0)


def noise_free_backscatter_db(
    lai: np.ndarray,
    soil_moisture: np.ndarray,
    incidence_deg: np.ndarray,
    is_water: np.ndarray,
    effect_db: np.ndarray,
    polarisation: str,
) -> np.ndarray:
    """σ0 (dB) before speckle: WCM (or open water) plus the exclusive effect."""
    wcm = wcm_backscatter_db(
        lai.astype(np.float64),
        soil_moisture.astype(np.float64),
        incidence_deg.astype(np.float64),
        polarisation=polarisation,
    )
    sigma0 = np.where(is_water, open_water_db(incidence_deg, polarisation), wcm)
    return sigma0 + effect_db


def simulate_s1(
    scene: Scene, acquisitions: pd.DataFrame, progress: bool = True, scratch: Scratch | None = None
) -> xr.Dataset:
    """S1 contract cube for ``acquisitions`` (from ``geometry.s1_acquisitions``).

    It holds VV and VH σ0 in dB, the incidence angle, the orbit direction and the relative orbit,
    made date by date into arrays of ``scratch`` (memory by default).
    """
    config, parcels, grid = scene.config, scene.parcels, scene.grid
    scratch = scratch or Scratch()
    dates = acquisitions["date"].to_numpy().astype("datetime64[D]")
    ny, nx = config.shape
    n = dates.size
    sigma0 = {pol: scratch.zeros((n, ny, nx), np.float32) for pol in S1_POLARISATIONS}
    incidence = scratch.zeros((n, ny, nx), np.float32)
    if n:
        lai = scene.canopy(dates)["lai"]
        theta = scene.soil_moisture_zones(dates)
        effect = scene.effect(SAR_WETNESS, dates)
    is_water = parcels.land_cover == WATER
    parcel_index = parcels.parcel_id - 1
    acquired = tqdm(
        list(acquisitions.itertuples(index=False)), desc="S1 GRD", unit="date", disable=not progress
    )
    for i, acq in enumerate(acquired):
        angle = round_mantissa(
            incidence_raster(
                grid.x, grid.y, acq.centre_incidence, acq.look_azimuth, acq.altitude_km
            ),
            keep_bits=16,
        )
        incidence[i] = angle
        rng = keyed_rng(config.seed, "s1_speckle", day_key(dates[i]))
        for pol in S1_POLARISATIONS:
            # by bands of rows, in the order of the speckle's stream: as one (ny, nx) draw
            for part in row_blocks((ny, nx)):
                zone = parcels.zone[part]
                clean = noise_free_backscatter_db(
                    lai[i][zone],
                    theta[i][zone],
                    angle[part],
                    is_water[part],
                    effect[i][parcel_index[part]],
                    pol,
                )
                speckle = rng.gamma(config.s1_enl, 1.0 / config.s1_enl, size=zone.shape)
                observed = clean + 10.0 * np.log10(speckle)
                sigma0[pol][i, part] = np.clip(observed, *SIMULATED_DB_RANGE)

    data: dict[str, tuple[str | tuple[str, ...], Data]] = {
        pol: (("time", "y", "x"), Scratch.data(sigma0[pol])) for pol in S1_POLARISATIONS
    }
    data[S1_INCIDENCE] = (("time", "y", "x"), Scratch.data(incidence))
    data[S1_ORBIT_DIRECTION] = ("time", acquisitions["orbit_direction"].to_numpy().astype(str))
    data[S1_RELATIVE_ORBIT] = ("time", acquisitions["relative_orbit"].to_numpy(dtype=np.int16))
    ds = xr.Dataset(
        data,
        coords={
            "time": acquisitions["date"].to_numpy().astype("datetime64[ns]"),
            "y": grid.y,
            "x": grid.x,
            PLATFORM: ("time", acquisitions["platform"].to_numpy().astype(str)),
        },
    )
    for pol in S1_POLARISATIONS:
        ds[pol].attrs.update(units="dB", long_name=f"{pol} backscatter sigma0")
    ds[S1_INCIDENCE].attrs.update(units="degree", long_name="local incidence angle")
    ds.attrs.update(
        title="Simulated Sentinel-1 IW GRD (releo scene simulator)",
        speckle=f"multiplicative gamma, ENL = {config.s1_enl}, independent per pixel",
    )
    return ds.rio.write_crs(config.crs)
