"""The truth cube, kept apart from the observations for evaluation.

Daily (dim ``time``): LAI, surface soil moisture and both exclusive effects per pixel
(susceptibility × state), and the effect states themselves. At the S2 dates (dim ``time_s2``):
the other time-varying PROSAIL inputs. Static (y, x): land cover, parcel id, the static PROSAIL
inputs, the within-field vigour index and the effect susceptibilities. Each value is exactly
the one that generated the observations.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from releo.data.contracts import LAND_COVER_CLASSES
from releo.data.simulate.canopy import STATIC_VARIABLES, UNITS
from releo.data.simulate.effects import OPTICAL_BROWNING, PLANTED_EQUATIONS, SAR_WETNESS
from releo.data.simulate.scene import Scene
from releo.data.spill import Data, Scratch

S2_DATE_VARIABLES: tuple[str, ...] = ("cab", "car", "cant", "cbrown", "cw", "cm", "psoil")
DAILY_VARIABLES: tuple[str, ...] = (
    "lai",
    "soil_moisture",
    OPTICAL_BROWNING.pixel_variable,
    SAR_WETNESS.pixel_variable,
)


def truth_dataset(
    scene: Scene, days: np.ndarray, s2_dates: np.ndarray, scratch: Scratch | None = None
) -> xr.Dataset:
    """Truth over ``days`` (every day of the period) with PROSAIL inputs at ``s2_dates``.

    The (time, y, x) variables are made date by date into arrays of ``scratch`` (memory by
    default).
    """
    parcels, scratch = scene.parcels, scratch or Scratch()
    zone, parcel_index = parcels.zone, parcels.parcel_id - 1

    def per_pixel(values: np.ndarray, index: np.ndarray) -> Data:
        return Scratch.data(scratch.per_date(values, index))

    daily = scene.canopy(days)
    data: dict[str, tuple] = {
        "lai": (("time", "y", "x"), per_pixel(daily["lai"], zone)),
        "soil_moisture": (("time", "y", "x"), per_pixel(scene.soil_moisture_zones(days), zone)),
    }
    for equation in PLANTED_EQUATIONS:
        per_parcel = scene.effect(equation, days)
        data[equation.pixel_variable] = (("time", "y", "x"), per_pixel(per_parcel, parcel_index))
        state = scene.effect_states[equation.name][scene.day_index(days)]
        data[equation.state_variable] = ("time", state.astype(np.float32))
        weights = scene.effect_weights[equation.name].astype(np.float32)
        data[f"{equation.pixel_variable}_susceptibility"] = (("y", "x"), weights[parcel_index])
    at_s2 = scene.canopy(s2_dates) if s2_dates.size else None
    for name in S2_DATE_VARIABLES:
        values = at_s2[name] if at_s2 is not None else np.zeros((0, 1))
        data[name] = (("time_s2", "y", "x"), per_pixel(values.astype(np.float32), zone))
    for name in STATIC_VARIABLES:
        data[name] = (("y", "x"), daily[name][zone])
    data["land_cover"] = (("y", "x"), parcels.land_cover)
    data["parcel_id"] = (("y", "x"), parcels.parcel_id.astype(np.int32))
    data["vigour"] = (("y", "x"), parcels.vigour.astype(np.float32))
    ds = xr.Dataset(
        data,
        coords={
            "time": np.asarray(days, dtype="datetime64[ns]"),
            "time_s2": np.asarray(s2_dates, dtype="datetime64[ns]"),
            "y": scene.grid.y,
            "x": scene.grid.x,
        },
    )
    for name, unit in UNITS.items():
        if name in ds:
            ds[name].attrs["units"] = unit
    ds[OPTICAL_BROWNING.pixel_variable].attrs.update(
        units="1",
        long_name="optical browning index x susceptibility (adds reflectance "
        "OPTICAL_BAND_AMPLITUDE[band] per unit)",
    )
    ds[SAR_WETNESS.pixel_variable].attrs.update(units="dB", long_name="SAR wetness term added")
    ds["land_cover"].attrs.update(
        long_name="land-cover class index",
        flag_values=list(range(len(LAND_COVER_CLASSES))),
        flag_meanings=" ".join(LAND_COVER_CLASSES),
    )
    ds["vigour"].attrs["long_name"] = "within-field vigour index (quantised, unit variance)"
    ds.attrs["title"] = "Truth of the releo simulated site (not an observation)"
    return ds.rio.write_crs(scene.config.crs)
