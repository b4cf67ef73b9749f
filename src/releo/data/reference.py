"""The reference operational product: SNAP biophysical-processor LAI at every S2 date.

Computed from L2A reflectance (simulated or real) exactly as an operational chain would: masked
(cloud, shadow) pixels are set to NaN before the network, so their LAI is NaN and unflagged;
LAI beyond SNAP's tolerated output range (output flag) is invalid and delivered as NaN too,
with the flag kept.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from releo.data.contracts import MASK_CLEAR, PLATFORM, REFERENCE_LAI, S2_MASK
from releo.physics import snap_lai
from releo.physics.snap import SNAP_ANGLES, SNAP_BANDS

SNAP_VERSION = "3.0"


def snap_reference(s2: xr.Dataset, version: str = SNAP_VERSION) -> xr.Dataset:
    """SNAP LAI (time, y, x) with its input/output flags (uint8, 1 = flagged)."""
    n, ny, nx = s2[S2_MASK].shape
    lai = np.full((n, ny, nx), np.nan, dtype=np.float32)
    input_flag = np.zeros((n, ny, nx), dtype=np.uint8)
    output_flag = np.zeros((n, ny, nx), dtype=np.uint8)
    for i in range(n):  # date by date keeps the network's broadcast inputs small
        date = s2.isel(time=i)
        clear = date[S2_MASK].values == MASK_CLEAR
        # float64 network, rounded to float32 once: float32 matmul/tanh results depend on the
        # CPU's vectorised kernels and BLAS blocking, and would be stored as they come.
        bands = {b: np.where(clear, date[b].values, np.nan).astype(np.float64) for b in SNAP_BANDS}
        angles = {a: float(date[a]) for a in SNAP_ANGLES}
        result = snap_lai(bands, angles, version=version, platform=str(date[PLATFORM].values))
        lai[i] = np.where(clear & ~np.asarray(result.output_flag, bool), result.lai, np.nan)
        input_flag[i] = np.asarray(result.input_flag, dtype=np.uint8)
        output_flag[i] = np.asarray(result.output_flag, dtype=np.uint8)
    ds = xr.Dataset(
        {
            REFERENCE_LAI: (("time", "y", "x"), lai),
            "input_flag": (("time", "y", "x"), input_flag),
            "output_flag": (("time", "y", "x"), output_flag),
        },
        coords={
            "time": s2["time"].values,
            "y": s2["y"].values,
            "x": s2["x"].values,
            PLATFORM: ("time", s2[PLATFORM].values),
        },
    )
    ds[REFERENCE_LAI].attrs.update(units="m2 m-2", long_name="SNAP biophysical processor LAI")
    ds["input_flag"].attrs.update(long_name="reflectance outside the SNAP definition domain")
    ds["output_flag"].attrs.update(long_name="SNAP LAI outside the tolerated output range")
    ds.attrs.update(
        title=f"SNAP S2 LAI (version {version}) of the L2A cube; NaN where mask != 0 or output_flag"
    )
    return ds.rio.write_crs(s2.rio.crs)
