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
from releo.data.spill import Scratch, row_blocks
from releo.physics import snap_lai
from releo.physics.snap import SNAP_ANGLES, SNAP_BANDS

SNAP_VERSION = "3.0"


def snap_reference(
    s2: xr.Dataset, version: str = SNAP_VERSION, scratch: Scratch | None = None
) -> xr.Dataset:
    """SNAP LAI (time, y, x) with its input/output flags (uint8, 1 = flagged).

    Made date by date and band of rows by band of rows (a lazily opened ``s2`` is read so),
    into arrays of ``scratch`` (memory by default).
    """
    scratch = scratch or Scratch()
    n, ny, nx = s2[S2_MASK].shape
    lai = scratch.zeros((n, ny, nx), np.float32)  # every pixel-date is written below
    input_flag = scratch.zeros((n, ny, nx), np.uint8)
    output_flag = scratch.zeros((n, ny, nx), np.uint8)
    for i in range(n):
        date = s2.isel(time=i)
        angles = {a: float(date[a]) for a in SNAP_ANGLES}
        platform = str(date[PLATFORM].values)
        for rows in row_blocks((ny, nx)):  # keeps the network's broadcast inputs small
            block = date.isel(y=rows).compute()
            clear = block[S2_MASK].values == MASK_CLEAR
            # float64 network, rounded to float32 once: float32 matmul/tanh results depend on
            # the CPU's vectorised kernels and BLAS blocking, and would be stored as they come.
            bands = {
                b: np.where(clear, block[b].values, np.nan).astype(np.float64) for b in SNAP_BANDS
            }
            result = snap_lai(bands, angles, version=version, platform=platform)
            flagged = np.asarray(result.output_flag, bool)
            lai[i, rows] = np.where(clear & ~flagged, result.lai, np.nan)
            input_flag[i, rows] = np.asarray(result.input_flag, dtype=np.uint8)
            output_flag[i, rows] = flagged
    ds = xr.Dataset(
        {
            REFERENCE_LAI: (("time", "y", "x"), Scratch.data(lai)),
            "input_flag": (("time", "y", "x"), Scratch.data(input_flag)),
            "output_flag": (("time", "y", "x"), Scratch.data(output_flag)),
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
