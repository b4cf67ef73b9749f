"""Writing decoded products: a Zarr cube, a GeoTIFF and a PNG quick-look per date, an overview.

Layout of a product folder (replaced as a whole, atomically)::

    lai.zarr/                 (time, y, x): lai, lai_std, lai_low, lai_high
    geotiff/lai_<date>.tif    2 bands: lai, lai_std (float32, deflate)
    quicklooks/lai_<date>.png
    overview.png              evenly spaced dates, LAI and its standard deviation
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import xarray as xr

from releo.data.io import atomic_dir, write_cube
from releo.products import plots


def write_geotiffs(ds: xr.Dataset, folder: Path) -> list[Path]:
    """One 2-band GeoTIFF (``lai``, ``lai_std``) per date, georeferenced like ``ds``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, when in enumerate(pd.DatetimeIndex(ds.time.values)):
        path = folder / f"lai_{when.date()}.tif"
        layer = ds[["lai", "lai_std"]].isel(time=i).drop_vars("time")
        layer.rio.to_raster(path, driver="GTiff", compress="deflate", dtype="float32")
        paths.append(path)
    return paths


def write_products(
    ds: xr.Dataset,
    target: Path,
    *,
    geotiff: bool = True,
    quicklooks: bool = True,
    overview_panels: int = 12,
    vmax: float = 7.0,
) -> dict[str, int]:
    """Write the product folder ``target`` (see the module docstring); returns file counts."""
    target = Path(target)
    counts = {"dates": ds.sizes["time"]}
    with atomic_dir(target) as tmp:
        write_cube(ds, tmp / "lai.zarr")
        if geotiff:
            counts["geotiffs"] = len(write_geotiffs(ds, tmp / "geotiff"))
        if quicklooks:
            counts["quicklooks"] = len(plots.quicklooks(ds, tmp / "quicklooks", vmax))
        if ds.sizes["time"]:
            plots.overview(ds, tmp / "overview.png", overview_panels, vmax)
    return counts
