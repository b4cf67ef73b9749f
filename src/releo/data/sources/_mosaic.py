"""Lazy windowed reading of product rasters onto one 10 m grid, solar-day mosaics, the S2 cube.

Shared by the SAFE and Theia readers: each turns a product into :class:`Granule` records, and
:func:`build_cube` picks the grid, drops what lies outside it, groups granules by solar day,
mosaics them and assembles the S2 contract cube with dask-backed bands.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rioxarray
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_reproject
from pyproj import CRS
from pyproj.exceptions import CRSError
from rasterio.warp import transform_bounds

from releo.data.contracts import (
    MASK_NODATA,
    PIXEL_SIZE_M,
    PLATFORM,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
)
from releo.data.errors import DataError
from releo.data.readers import relative_azimuth
from releo.data.sources._angles import Bounds, circular_mean

PathLike = str | os.PathLike[str]

CHUNK = 1024
"""Dask chunk edge (pixels) of every band: a tile is read block by block, never whole."""


@dataclass(frozen=True)
class Granule:
    """One product raster set (one tile) and how to read it.

    ``load(geobox)`` returns lazy (y, x) reflectances (float32, NaN = no data) per contract band
    and the uint8 contract mask, on ``geobox``; ``angles(bounds)`` returns sun/view zenith and
    azimuth (degrees) over ``bounds`` in the granule's CRS.
    """

    name: str
    path: Path
    time: pd.Timestamp
    platform: str
    crs: CRS
    bounds: Bounds
    load: Callable[[GeoBox], tuple[dict[str, xr.DataArray], xr.DataArray]]
    angles: Callable[[Bounds], dict[str, float]]
    attrs: dict[str, Any] = field(default_factory=dict)


def as_paths(paths: PathLike | Sequence[PathLike], reader: str) -> list[Path]:
    """Normalise the ``paths`` argument (one or many) to existing paths."""
    out = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not out:
        raise DataError(f"{reader}: no product path given")
    for path in out:
        if not path.exists():
            raise DataError(f"{path}: not found")
    return out


def parse_crs(value: Any, source: str) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as err:
        raise DataError(f"{source}: invalid CRS {value!r}: {err}") from err


def open_on_grid(file: Path, geobox: GeoBox, fill: float) -> xr.DataArray:
    """Lazily read band 1 of ``file`` onto ``geobox`` (nearest), ``fill`` outside the file.

    Only the window covering ``geobox`` is opened as dask blocks, so a 110 km tile costs the
    bytes of the area asked for.
    """
    try:
        src = rioxarray.open_rasterio(file, cache=False, lock=False, masked=False)
    except Exception as err:  # rasterio raises several types for unreadable files
        raise DataError(f"{file}: cannot read raster: {type(err).__name__}: {err}") from err
    if not isinstance(src, xr.DataArray):
        raise DataError(f"{file}: expected a single raster, got {type(src).__name__}")
    if src.rio.crs is None:
        raise DataError(f"{file}: raster has no CRS")
    src = src.isel(band=0, drop=True)
    src_crs = CRS.from_user_input(src.rio.crs)
    xmin, ymin, xmax, ymax = transform_bounds(
        geobox.crs, src_crs, *geobox.boundingbox, densify_pts=21
    )
    res_x, res_y = (abs(r) for r in src.rio.resolution())
    # a two-pixel margin keeps nearest neighbours at the window's edges after a reprojection
    window = src.sel(
        x=slice(xmin - 2 * res_x, xmax + 2 * res_x),
        y=slice(ymax + 2 * res_y, ymin - 2 * res_y)
        if src["y"].values[0] > src["y"].values[-1]
        else slice(ymin - 2 * res_y, ymax + 2 * res_y),
    )
    shape = geobox.shape
    if window.sizes["x"] == 0 or window.sizes["y"] == 0:
        return _filled(geobox, fill, src.dtype)
    window = window.drop_vars("spatial_ref").rio.write_crs(src_crs)
    window.attrs = {}
    window.encoding = {}
    window = window.chunk({"y": CHUNK, "x": CHUNK})
    out = xr_reproject(window, geobox, resampling="nearest", dst_nodata=fill)
    out = out.drop_vars([c for c in out.coords if c not in ("x", "y")])
    if out.shape != tuple(shape):
        raise DataError(f"{file}: reprojection gave shape {out.shape}, expected {tuple(shape)}")
    return out.astype(src.dtype)


def _filled(geobox: GeoBox, fill: float, dtype: Any) -> xr.DataArray:
    import dask.array as dsa

    y, x = _coords(geobox)
    data = dsa.full(geobox.shape, fill, dtype=dtype, chunks=CHUNK)
    return xr.DataArray(data, dims=("y", "x"), coords={"y": y, "x": x})


def _coords(geobox: GeoBox) -> tuple[np.ndarray, np.ndarray]:
    coords = geobox.coordinates
    return np.asarray(coords["y"].values), np.asarray(coords["x"].values)


def lookup(codes: xr.DataArray, table: np.ndarray) -> xr.DataArray:
    """Map integer class codes through ``table`` block by block (stays lazy)."""
    return xr.apply_ufunc(
        lambda block: table[np.clip(block, 0, table.size - 1).astype(np.intp)],
        codes,
        dask="parallelized",
        output_dtypes=[table.dtype],
    )


def build_cube(
    granules: list[Granule],
    *,
    bbox: Bounds | None,
    crs: Any,
    period: tuple[Any, Any] | None,
    source: str,
) -> xr.Dataset:
    """Assemble granules into the S2 contract cube (lazy bands, eager per-date angles)."""
    granules = _in_period(granules, period, source)
    target = _target_crs(granules, crs, source)
    if not target.is_projected:
        raise DataError(f"{source}: CRS {target.to_string()} is not projected; pass crs='EPSG:…'")
    if bbox is not None:
        area = _checked_bbox(bbox, source)
    else:
        extents = [_bounds_in(g.bounds, g.crs, target) for g in granules]
        area = (
            min(e[0] for e in extents),
            min(e[1] for e in extents),
            max(e[2] for e in extents),
            max(e[3] for e in extents),
        )
    inside = [g for g in granules if _intersects(_bounds_in(g.bounds, g.crs, target), area)]
    if not inside:
        coverage = "; ".join(
            f"{g.path} covers {tuple(round(v) for v in g.bounds)} in {g.crs.to_string()}"
            for g in granules
        )
        raise DataError(
            f"{source}: bbox {tuple(area)} (in {target.to_string()}) is outside every product: "
            f"{coverage}"
        )
    # GeoBox snaps the area outwards to multiples of 10 m, the S2 tiles' own pixel grid
    geobox = GeoBox.from_bbox(area, crs=target.to_wkt(), resolution=PIXEL_SIZE_M)
    y, x = _coords(geobox)

    days: dict[tuple[Any, str], list[Granule]] = {}
    for g in sorted(inside, key=lambda g: (g.time, g.name)):
        days.setdefault((_solar_date(g, target, geobox), g.platform), []).append(g)

    steps = []
    for (_, platform), group in sorted(days.items(), key=lambda kv: kv[1][0].time):
        bands, mask = _mosaic([g.load(geobox) for g in group])
        step = xr.Dataset({**bands, S2_MASK: mask}).assign_coords(y=y, x=x)
        angles = _group_angles(group, geobox, target)
        for name in S2_ANGLES:
            step[name] = np.float32(angles[name])
        step = step.expand_dims(time=[np.datetime64(group[0].time.to_datetime64(), "ns")])
        steps.append(step.assign_coords({PLATFORM: ("time", [platform])}))
    cube = xr.concat(
        steps, dim="time", data_vars="all", coords="minimal", compat="override", join="exact"
    )
    cube = cube[[*S2_BANDS, S2_MASK, *S2_ANGLES]]
    for band in S2_BANDS:
        cube[band] = cube[band].astype(np.float32)
        cube[band].attrs = {"long_name": f"{band} bottom-of-atmosphere reflectance", "units": "1"}
    cube[S2_MASK] = cube[S2_MASK].astype(np.uint8)
    cube[S2_MASK].attrs = {"long_name": "0 clear, 1 cloud, 2 shadow, 3 no data"}
    for angle in S2_ANGLES:
        cube[angle] = cube[angle].astype(np.float32)
        cube[angle].attrs = {"units": "degree"}
    cube.attrs = {"source": sorted({g.name for g in inside})}
    return cube.rio.write_crs(target.to_wkt()).rio.write_coordinate_system()


def _in_period(granules: list[Granule], period: Any, source: str) -> list[Granule]:
    if period is None:
        return granules
    try:
        start, end = (pd.Timestamp(v) if v is not None else None for v in period)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: period must be (start, end) dates: {err}") from err
    kept = [
        g
        for g in granules
        if (start is None or g.time >= start)
        # an end date without a time of day includes that whole day
        and (end is None or g.time <= end or (end == end.normalize() and g.time.normalize() <= end))
    ]
    if not kept:
        times = ", ".join(str(g.time) for g in granules)
        raise DataError(f"{source}: no product in period {period} (products: {times})")
    return kept


def _target_crs(granules: list[Granule], crs: Any, source: str) -> CRS:
    if crs is not None:
        return parse_crs(crs, source)
    crss = {g.crs for g in granules}
    if len(crss) > 1:
        listing = "; ".join(f"{g.path}: {g.crs.to_string()}" for g in granules)
        raise DataError(
            f"{source}: products in different CRSs ({listing}); pass crs='EPSG:…' to reproject"
        )
    return granules[0].crs


def _checked_bbox(bbox: Any, source: str) -> Bounds:
    try:
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: bbox must be (xmin, ymin, xmax, ymax): {err}") from err
    if not (xmin < xmax and ymin < ymax):
        raise DataError(f"{source}: bbox {tuple(bbox)} is empty (need xmin < xmax, ymin < ymax)")
    return xmin, ymin, xmax, ymax


def _bounds_in(bounds: Bounds, src: CRS, dst: CRS) -> Bounds:
    if src == dst:
        return bounds
    return tuple(transform_bounds(src, dst, *bounds, densify_pts=21))


def _intersects(a: Bounds, b: Bounds) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _solar_date(granule: Granule, target: CRS, geobox: GeoBox) -> Any:
    """Local solar date at the area's centre: UTC + longitude / 15 h (S2 passes ~10:30)."""
    xmin, ymin, xmax, ymax = geobox.boundingbox
    lon = transform_bounds(target, "EPSG:4326", xmin, ymin, xmax, ymax)
    centre_lon = (lon[0] + lon[2]) / 2
    return (granule.time + pd.Timedelta(hours=centre_lon / 15.0)).date()


def _mosaic(
    loaded: list[tuple[dict[str, xr.DataArray], xr.DataArray]],
) -> tuple[dict[str, xr.DataArray], xr.DataArray]:
    """First granule with data wins, pixel by pixel (granules sorted by time, then name)."""
    bands, mask = loaded[0]
    for other_bands, other_mask in loaded[1:]:
        take = (mask == MASK_NODATA) & (other_mask != MASK_NODATA)
        bands = {b: xr.where(take, other_bands[b], bands[b]) for b in S2_BANDS}
        mask = xr.where(take, other_mask, mask)
    return bands, mask


def _group_angles(group: list[Granule], geobox: GeoBox, target: CRS) -> dict[str, float]:
    """Angles of one date: each granule's over its part of the area, then averaged."""
    found: dict[str, list[float]] = {}
    for g in group:
        xmin, ymin, xmax, ymax = geobox.boundingbox
        area = _bounds_in((xmin, ymin, xmax, ymax), target, g.crs)
        part = (
            max(area[0], g.bounds[0]),
            max(area[1], g.bounds[1]),
            min(area[2], g.bounds[2]),
            min(area[3], g.bounds[3]),
        )
        for name, value in g.angles(part).items():
            found.setdefault(name, []).append(value)
    sun_az = circular_mean(found["sun_azimuth"])
    view_az = circular_mean(found["view_azimuth"])
    return {
        "sun_zenith": float(np.mean(found["sun_zenith"])),
        "view_zenith": float(np.mean(found["view_zenith"])),
        "relative_azimuth": float(relative_azimuth(sun_az, view_az)),
    }
