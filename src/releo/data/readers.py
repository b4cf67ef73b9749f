"""Readers that bring real data into releo's contracts (:mod:`releo.data.contracts`).

S2 L2A cubes (:func:`read_s2_l2a`) come from NetCDF, Zarr or GeoTIFF; pixel time-series
tables (:func:`read_pixel_table`) and field surveys (:func:`read_field_survey`) from CSV or
Parquet. Whatever the source, the result speaks the contract names, so real data and the
simulator's data are interchangeable downstream. Values are not range-checked here: the
quality gates do that and name the offending values.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rioxarray
import xarray as xr
from pydantic import Field, create_model
from pyproj import CRS, Transformer
from pyproj.exceptions import CRSError
from rasterio.enums import Resampling

from releo.data.contracts import (
    DATE_FORMAT_KEY,
    MASK_CLEAR,
    MASK_CLOUD,
    MASK_NODATA,
    MASK_SHADOW,
    PIXEL_SIZE_M,
    PIXEL_TABLE_COLUMNS,
    PLATFORM,
    S1_INCIDENCE,
    S1_POLARISATIONS,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
    SURVEY_COLUMNS,
)
from releo.data.errors import DataError
from releo.data.io import (
    MANIFEST_ATTR,
    AmbiguousDatesError,
    open_cube,
    read_table,
    to_datetimes,
)

__all__ = [
    "NATIVE_RESOLUTION_M",
    "PIXEL_TABLE_OPTIONAL_COLUMNS",
    "SCL_TO_MASK",
    "PixelTableSchema",
    "platform_of",
    "read_field_survey",
    "read_pixel_table",
    "read_s2_l2a",
    "relative_azimuth",
    "unpack",
]

PathLike = str | os.PathLike[str]

NATIVE_RESOLUTION_M: dict[str, float] = {
    band: 10.0 if band in ("B02", "B03", "B04", "B08") else 20.0 for band in S2_BANDS
}
"""Native ground sampling of each contract band (the 60 m bands are not in the contract)."""

SCL_TO_MASK: dict[int, int] = {
    0: MASK_NODATA,  # no data
    1: MASK_NODATA,  # saturated or defective
    2: MASK_SHADOW,  # dark area pixels / topographic cast shadows
    3: MASK_SHADOW,  # cloud shadows
    4: MASK_CLEAR,  # vegetation
    5: MASK_CLEAR,  # not vegetated
    6: MASK_CLEAR,  # water
    7: MASK_CLEAR,  # unclassified
    8: MASK_CLOUD,  # cloud, medium probability
    9: MASK_CLOUD,  # cloud, high probability
    10: MASK_CLOUD,  # thin cirrus
    11: MASK_CLOUD,  # snow or ice: bright like cloud, and no canopy PROSAIL or SNAP explains
}
"""Sen2Cor scene classification (SCL) → contract mask codes."""

_ANGLE_ALIASES: dict[str, tuple[str, ...]] = {
    "sun_zenith": (
        "sun_zenith",
        "sza",
        "solar_zenith",
        "sun_zenith_angle",
        "solar_zenith_angle",
        "sunzenithangles",
    ),
    "view_zenith": (
        "view_zenith",
        "vza",
        "viewing_zenith",
        "view_zenith_angle",
        "sensor_zenith",
        "viewzenithmean",
    ),
    "relative_azimuth": ("relative_azimuth", "raa", "relative_azimuth_angle", "rel_azimuth"),
    "sun_azimuth": ("sun_azimuth", "saa", "solar_azimuth", "sun_azimuth_angle", "sunazimuthangles"),
    "view_azimuth": (
        "view_azimuth",
        "vaa",
        "viewing_azimuth",
        "view_azimuth_angle",
        "viewazimuthmean",
    ),
}
_BAND_RE = re.compile(r"^(?:B|BAND)[_ ]?0?(1[0-2]|[1-9]|8A)$", re.IGNORECASE)
_PLATFORM_RE = re.compile(r"(?:\bS2|SENTINEL-?2)([A-D])(?![A-Z0-9])", re.IGNORECASE)
_DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2}))?")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf", ".h5", ".hdf5")
_TIFF_SUFFIXES = (".tif", ".tiff")


# ------------------------------------------------------------------------------------ S2 cubes


def read_s2_l2a(path: PathLike | Sequence[PathLike], *, crs: Any = None) -> xr.Dataset:
    """Read Sentinel-2 L2A data into the S2 contract cube at 10 m.

    ``path`` is one source or a list of sources of the same acquisitions:

    - NetCDF (``.nc``) or Zarr (a releo cube or any xarray-written store) holding either one
      variable with a ``band`` dim whose labels name the bands (``band_data(time, band, y, x)``
      as exported by rioxarray/stackstac; ``B2``, ``B02``, ``B8A``… all accepted) or one
      variable per band. Angles as per-date (or per-pixel, then averaged) variables
      ``sun_zenith``, ``view_zenith`` and ``relative_azimuth`` or ``sun_azimuth`` +
      ``view_azimuth`` (common aliases such as ``sza``/``vza`` accepted). A ``mask`` variable
      in contract codes or a Sen2Cor ``SCL`` variable/band gives the mask.
    - A GeoTIFF stack: a directory of ``.tif`` files whose names contain the acquisition date
      (``YYYYMMDD[THHMMSS]`` or ``YYYY-MM-DD``). Either one multi-band file per date (bands
      named by the GeoTIFF band descriptions, or the 10 contract bands in contract order), or
      one file per band and date with the band as a name token (``20230609_B8A.tif``,
      ``S2A_20230609_SCL.tif``). Angles come from an ``angles.csv`` sidecar (a ``date`` column
      plus angle columns, optionally ``platform``) or from GeoTIFF tags of the same names.

    When several sources or grids hold a band, the one at the band's native resolution wins
    (B02 B03 B04 B08 at 10 m, the others at 20 m), so interpolated copies are not used. Every
    band is put on the finest grid, resampled to 10 m if needed, with nearest neighbour
    (average when downsampling). Reflectance is rescaled only where the file says so
    (``scale_factor``/``add_offset``, ``BOA_QUANTIFICATION_VALUE``/``BOA_ADD_OFFSET``);
    otherwise values are left as they are for the quality gates to judge. Pixels where any
    band is NaN get mask code 3 (no data); without an input mask, the others are 0 (clear).
    The relative azimuth derived from azimuths is folded into [0, 180] degrees. ``platform``
    (S2A/S2B…) is parsed from a platform variable or the product ids when present.

    ``crs`` is assumed when the source has no CRS; when it has a different one, the cube is
    reprojected to ``crs``. The result must be in a projected CRS.
    """
    paths = [Path(path)] if isinstance(path, str | os.PathLike) else [Path(p) for p in path]
    if not paths:
        raise DataError("read_s2_l2a: no source given")
    target_crs = _parse_crs(crs, paths[0]) if crs is not None else None
    parts: list[xr.Dataset] = []
    for source in paths:
        for part in _read_parts(source):
            parts.append(_georeference(part, source, target_crs))
    cube = _assemble(parts, paths)
    cube.attrs = {"source": [p.name for p in paths]}
    return cube


def _read_parts(source: Path) -> list[xr.Dataset]:
    """Read one source into partial cubes (contract names, one per pixel grid)."""
    if not source.exists():
        raise DataError(f"{source}: not found")
    if source.is_dir() and not _is_zarr(source):
        return _read_tiff_stack(source)
    if source.suffix.lower() in _TIFF_SUFFIXES:
        return _read_tiff_stack(source)
    raw = _open_dataset(source)
    return [_normalise(raw, source)]


def _is_zarr(path: Path) -> bool:
    return path.suffix.lower() == ".zarr" or any(
        (path / name).is_file() for name in ("zarr.json", ".zgroup", ".zattrs")
    )


def _open_dataset(source: Path) -> xr.Dataset:
    try:
        if _is_zarr(source):
            if _has_manifest(source):
                return open_cube(source)
            with warnings.catch_warnings():
                # generic stores may lack consolidated metadata; the fallback is fine locally
                warnings.filterwarnings("ignore", message=".*consolidated metadata.*")
                with xr.open_zarr(source, decode_coords="all", chunks=None) as ds:
                    return ds.load()
        if source.suffix.lower() in _NETCDF_SUFFIXES:
            # Packing is decoded here, per variable: xarray's decoder fails on integer
            # scale_factors of uint8 layers (SCL) in Earth Engine exports.
            with xr.open_dataset(source, decode_coords="all", mask_and_scale=False) as ds:
                return _unpacked(ds.load())
    except DataError:
        raise
    except Exception as err:  # netCDF/HDF5/zarr raise many types for unreadable files
        raise DataError(f"{source}: cannot read: {type(err).__name__}: {err}") from err
    raise DataError(
        f"{source}: unknown S2 source format; expected NetCDF ({', '.join(_NETCDF_SUFFIXES)}), "
        "Zarr, a GeoTIFF or a directory of GeoTIFFs"
    )


_PACKING = ("_FillValue", "scale_factor", "add_offset")


def unpack(var: xr.DataArray) -> xr.DataArray:
    """A variable opened with ``mask_and_scale=False``, as float64 values.

    Its ``_FillValue`` (tested on the stored integers) and non-finite values become NaN, then
    ``scale_factor`` and ``add_offset`` are applied; the packing attributes are dropped.
    """
    fill = var.attrs.get("_FillValue", var.encoding.get("_FillValue"))
    values = var.values.astype(np.float64)
    invalid = ~np.isfinite(values)
    if fill is not None:
        invalid |= var.values == fill
    scale = float(var.attrs.get("scale_factor", 1.0))
    offset = float(var.attrs.get("add_offset", 0.0))
    attrs = {k: v for k, v in var.attrs.items() if k not in _PACKING}
    out = np.where(invalid, np.nan, values * scale + offset)
    return xr.DataArray(out, coords=var.coords, dims=var.dims, attrs=attrs)


def _unpacked(ds: xr.Dataset) -> xr.Dataset:
    """Apply each variable's CF packing (fill → NaN, then scale and offset); SCL keeps codes."""
    out = ds.copy()
    for name, var in ds.data_vars.items():
        if not any(k in var.attrs for k in _PACKING):
            continue
        if str(name).upper() == "SCL" or name == S2_MASK:
            # class codes: a fill value is "no data", which SCL 0 already means
            fill = var.attrs.get("_FillValue")
            codes = var.where(var != fill, 0) if fill is not None else var
            attrs = {k: v for k, v in var.attrs.items() if k not in _PACKING}
            out[name] = xr.DataArray(
                codes.astype(var.dtype).data, var.coords, var.dims, attrs=attrs
            )
            continue
        values = unpack(var)
        out[name] = values.astype(np.float32) if var.dtype.itemsize <= 4 else values
    return out


def _has_manifest(source: Path) -> bool:
    try:
        return MANIFEST_ATTR in (source / "zarr.json").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def _band_name(label: object) -> str | None:
    """Contract name of a band label (``B2``, ``b02``, ``B8a``, ``band_11``…), else None."""
    match = _BAND_RE.match(str(label).strip())
    if not match:
        return None
    num = match.group(1).upper()
    name = "B8A" if num == "8A" else f"B{int(num):02d}"
    return name if name in S2_BANDS else None


def _normalise(raw: xr.Dataset, source: Path) -> xr.Dataset:
    """Rename a NetCDF/Zarr dataset's bands, mask, angles and platform to the contract."""
    if "time" not in raw.dims and "timestamp" in raw.dims:  # Earth Engine / openEO exports
        raw = raw.rename({"timestamp": "time"})
    if "time" not in raw.dims:
        raise DataError(f"{source}: no 'time' dimension (dims: {', '.join(map(str, raw.dims))})")
    if not {"x", "y"} <= set(raw.dims):
        raise DataError(
            f"{source}: needs 'x' and 'y' dimensions (dims: {', '.join(map(str, raw.dims))})"
        )
    out: dict[str, xr.DataArray] = {}
    for name, var in raw.data_vars.items():
        if "band" in var.dims:
            labels = _band_labels(var, source)
            for i, label in enumerate(labels):
                layer = var.isel(band=i, drop=True)
                if (band := _band_name(label)) is not None:
                    out[band] = _scaled(layer, var.attrs, raw.attrs, source)
                elif str(label).upper() == "SCL":
                    out["SCL"] = layer
        elif (band := _band_name(name)) is not None and {"x", "y"} <= set(var.dims):
            out[band] = _scaled(var, var.attrs, raw.attrs, source)
        elif name == S2_MASK or str(name).upper() == "SCL":
            out[S2_MASK if name == S2_MASK else "SCL"] = var
    part = xr.Dataset({k: v.transpose("time", "y", "x") for k, v in out.items()})
    part = _with_mask(part)
    for angle, values in _angles(raw, source).items():
        part[angle] = values
    platform = _platform(raw)
    if platform is not None:
        part = part.assign_coords({PLATFORM: ("time", platform)})
    part = part.assign_coords(time=_as_datetime(raw["time"].values, source))
    crs = raw.rio.crs or _crs_attr(raw)
    if crs is not None:
        part = part.rio.write_crs(crs)
    return part


def _band_labels(var: xr.DataArray, source: Path) -> list[str]:
    labels = [str(v) for v in np.atleast_1d(var["band"].values)] if "band" in var.coords else []
    if any(_band_name(v) or v.upper() == "SCL" for v in labels):
        return labels
    long_name = var.attrs.get("long_name")
    if isinstance(long_name, list | tuple | np.ndarray) and len(long_name) == var.sizes["band"]:
        return [str(v) for v in long_name]
    if var.sizes["band"] == len(S2_BANDS):
        return list(S2_BANDS)  # unnamed 10-band stack: the documented contract order
    raise DataError(
        f"{source}: variable {var.name!r} has {var.sizes['band']} unnamed bands; name them "
        "(band coordinate or long_name) or provide the 10 contract bands in contract order"
    )


def _scaled(var: xr.DataArray, var_attrs: dict, file_attrs: dict, source: Path) -> xr.DataArray:
    """Apply a DN→reflectance packing that the file declares but xarray did not decode."""
    is_dn = var.dtype.kind in "iu"
    var = var.astype(np.float32)
    if "scale_factor" in var_attrs or "add_offset" in var_attrs:
        # CF packing left undecoded (e.g. opened with mask_and_scale=False upstream)
        scale = _number(var_attrs.get("scale_factor", 1.0), "scale_factor", source)
        offset = _number(var_attrs.get("add_offset", 0.0), "add_offset", source)
        return (var * scale + offset).astype(np.float32)
    attrs = var_attrs if "BOA_QUANTIFICATION_VALUE" in var_attrs else file_attrs
    if is_dn and "BOA_QUANTIFICATION_VALUE" in attrs:
        # L2A product metadata: reflectance = (DN + BOA_ADD_OFFSET) / BOA_QUANTIFICATION_VALUE.
        # Only integers are DNs: a float band next to these attrs was converted already.
        quantification = _number(
            attrs["BOA_QUANTIFICATION_VALUE"], "BOA_QUANTIFICATION_VALUE", source
        )
        offset = _number(attrs.get("BOA_ADD_OFFSET", 0.0), "BOA_ADD_OFFSET", source)
        return ((var + offset) / quantification).astype(np.float32)
    return var


def _number(value: Any, name: str, source: Path) -> float:
    try:
        return float(np.asarray(value).ravel()[0])
    except (TypeError, ValueError, IndexError) as err:
        raise DataError(f"{source}: unreadable attribute {name}={value!r}: {err}") from err


def _with_mask(part: xr.Dataset) -> xr.Dataset:
    """Turn an SCL layer into contract mask codes (NaN SCL = no data)."""
    if "SCL" not in part:
        return part
    scl = part["SCL"].values
    lut = np.full(256, MASK_CLEAR, dtype=np.uint8)
    for code, mask_code in SCL_TO_MASK.items():
        lut[code] = mask_code
    valid = np.isfinite(scl) & (scl >= 0) & (scl <= 255)
    codes = np.where(valid, lut[np.where(valid, scl, 0).astype(np.int64)], MASK_NODATA)
    mask = xr.DataArray(codes.astype(np.uint8), dims=part["SCL"].dims, coords=part["SCL"].coords)
    return part.drop_vars("SCL").assign({S2_MASK: mask})


def _find(raw: xr.Dataset, aliases: tuple[str, ...]) -> xr.DataArray | None:
    by_lower = {str(name).lower(): name for name in raw.variables}
    for alias in aliases:
        if alias in by_lower:
            return raw[by_lower[alias]]
    return None


def _angles(raw: xr.Dataset, source: Path) -> dict[str, xr.DataArray]:
    found = {name: _find(raw, aliases) for name, aliases in _ANGLE_ALIASES.items()}
    out = {}
    for name, var in found.items():
        if var is None:
            continue
        if "time" not in var.dims:
            raise DataError(f"{source}: angle {var.name!r} has no 'time' dimension")
        other = [d for d in var.dims if d != "time"]
        # per-pixel angle grids vary by tenths of a degree over a site: the mean is enough
        out[name] = var.mean(other) if other else var
        out[name] = (
            out[name].astype(np.float32).drop_vars([c for c in out[name].coords if c != "time"])
        )
    if "relative_azimuth" not in out and {"sun_azimuth", "view_azimuth"} <= set(out):
        out["relative_azimuth"] = relative_azimuth(out["sun_azimuth"], out["view_azimuth"])
    return {name: out[name] for name in S2_ANGLES if name in out}


def relative_azimuth(sun_azimuth: Any, view_azimuth: Any) -> Any:
    """|sun − view azimuth| folded into [0, 180]° (cos, as used by SAIL and SNAP, is even)."""
    diff = (sun_azimuth - view_azimuth) % 360.0
    return np.minimum(diff, 360.0 - diff)


def _platform(raw: xr.Dataset) -> np.ndarray | None:
    """Per-date platform (S2A, S2B…) from a platform variable or per-date product ids."""
    n = raw.sizes["time"]
    candidates = [raw[name] for name in raw.variables if raw[name].dims == ("time",)]
    named = [c for c in candidates if str(c.name).lower() in (PLATFORM, "spacecraft", "satellite")]
    for var in named + candidates:
        if var.dtype.kind not in "OUST":
            continue
        values = [platform_of(str(v)) for v in var.values]
        if all(values):
            return np.array(values, dtype=str)
    for key in (PLATFORM, "spacecraft", "spacecraft_name", "satellite"):
        value = raw.attrs.get(key)
        if isinstance(value, str) and (name := platform_of(value)):
            return np.array([name] * n, dtype=str)
    return None


def platform_of(text: str) -> str | None:
    """Platform (S2A, S2B…) named in a product id or spacecraft name, else None."""
    match = _PLATFORM_RE.search(text)
    return f"S2{match.group(1).upper()}" if match else None


def _crs_attr(raw: xr.Dataset) -> str | None:
    value = raw.attrs.get("crs")
    return value if isinstance(value, str) and value else None


def _parse_crs(value: Any, source: Path) -> CRS:
    try:
        return CRS.from_user_input(value)
    except CRSError as err:
        raise DataError(f"{source}: invalid CRS {value!r}: {err}") from err


def _as_datetime(values: Any, source: Path) -> np.ndarray:
    try:
        times = pd.DatetimeIndex(pd.to_datetime(np.asarray(values)))
    except (ValueError, TypeError) as err:
        raise DataError(f"{source}: unparsable acquisition times: {err}") from err
    if times.tz is not None:
        times = times.tz_convert("UTC").tz_localize(None)
    return times.as_unit("ns").values


def _georeference(part: xr.Dataset, source: Path, target: CRS | None) -> xr.Dataset:
    """Give the part its CRS, reprojecting to ``target`` if it has another one."""
    part = part.sortby("time").sortby("y", ascending=False).sortby("x")
    own = part.rio.crs
    if own is None:
        if target is None:
            raise DataError(f"{source}: no CRS in the file; pass crs='EPSG:…' to read_s2_l2a")
        return part.rio.write_crs(target)
    if target is not None and CRS.from_user_input(own) != target:
        spatial = [v for v in part.data_vars if {"x", "y"} <= set(part[v].dims)]
        # keep a projected part's pixel size so 10 m and 20 m parts stay distinguishable
        resolution = _resolution(part) if CRS.from_user_input(own).is_projected else None
        reprojected = _regrid(
            part[spatial], resampling=Resampling.nearest, crs=target, resolution=resolution
        )
        per_date = part.drop_vars(spatial).drop_dims(["x", "y"], errors="ignore")
        per_date = per_date.drop_vars("spatial_ref", errors="ignore")
        merged = xr.merge([reprojected, per_date], compat="override", combine_attrs="drop")
        part = merged.drop_vars("spatial_ref", errors="ignore").rio.write_crs(target)
    return part


def _regrid(
    ds: xr.Dataset,
    *,
    resampling: Resampling,
    crs: CRS | None = None,
    resolution: float | None = None,
    match: xr.Dataset | xr.DataArray | None = None,
) -> xr.Dataset:
    """Reproject the spatial variables of ``ds`` with rioxarray; float NaN stays no data."""
    out = {}
    for name, var in ds.data_vars.items():
        method = Resampling.nearest if var.dtype.kind in "iub" else resampling
        if var.dtype.kind == "f":
            var = var.rio.write_nodata(np.nan, encoded=False)
        if match is not None:
            res = var.rio.reproject_match(match, resampling=method)
        else:
            res = var.rio.reproject(crs or var.rio.crs, resolution=resolution, resampling=method)
        out[name] = res
    result = xr.Dataset(out)
    if match is not None:
        # GDAL recomputes the coordinates; reuse the template's exactly so grids align.
        result = result.assign_coords(x=match["x"].values, y=match["y"].values)
    return result


def _resolution(part: xr.Dataset) -> float:
    return float(abs(part.rio.resolution()[0]))


def _same_grid(a: xr.Dataset | xr.DataArray, b: xr.Dataset | xr.DataArray) -> bool:
    return (
        a.sizes["x"] == b.sizes["x"]
        and a.sizes["y"] == b.sizes["y"]
        and np.allclose(a["x"].values, b["x"].values)
        and np.allclose(a["y"].values, b["y"].values)
    )


def _assemble(parts: list[xr.Dataset], sources: list[Path]) -> xr.Dataset:
    """Merge partial cubes onto one 10 m grid, each band from its native-resolution part."""
    names = ", ".join(str(p) for p in sources)
    times = parts[0]["time"].values
    for part in parts[1:]:
        if not np.array_equal(part["time"].values, times):
            raise DataError(
                f"{names}: the sources hold different acquisition dates "
                f"({list(map(str, times))} vs {list(map(str, part['time'].values))})"
            )
    if pd.Index(times).has_duplicates:
        raise DataError(f"{names}: duplicate acquisition times; mosaic them first")
    crs = parts[0].rio.crs
    for part in parts[1:]:
        if part.rio.crs != crs:
            raise DataError(f"{names}: sources in different CRSs ({crs} vs {part.rio.crs})")
    if not CRS.from_user_input(crs).is_projected:
        raise DataError(f"{names}: CRS {crs} is not projected; pass crs='EPSG:…' to reproject")

    finest = min(parts, key=_resolution)
    template = finest[[v for v in finest.data_vars if {"x", "y"} <= set(finest[v].dims)][:1]]
    if not np.isclose(_resolution(finest), PIXEL_SIZE_M):
        method = Resampling.nearest if _resolution(finest) > PIXEL_SIZE_M else Resampling.average
        template = _regrid(template, resampling=method, resolution=PIXEL_SIZE_M)

    cube = xr.Dataset(coords={"time": times, "y": template["y"].values, "x": template["x"].values})
    missing = []
    for band in S2_BANDS:
        holders = [p for p in parts if band in p]
        if not holders:
            missing.append(band)
            continue
        native = [p for p in holders if np.isclose(_resolution(p), NATIVE_RESOLUTION_M[band])]
        src = native[0] if native else min(holders, key=_resolution)
        cube[band] = _on_grid(src[[band]], template)[band].astype(np.float32)
    if missing:
        found = sorted({str(v) for p in parts for v in p.data_vars if v in S2_BANDS})
        raise DataError(f"{names}: band(s) {', '.join(missing)} not found (found: {found})")

    masks = [p for p in sorted(parts, key=_resolution) if S2_MASK in p]
    mask = (
        _on_grid(masks[0][[S2_MASK]], template)[S2_MASK].values
        if masks
        else np.full(cube[S2_BANDS[0]].shape, MASK_CLEAR, dtype=np.uint8)
    )
    if mask.dtype.kind == "f":  # a mask read through a nodata value
        mask = np.where(np.isfinite(mask), mask, MASK_NODATA)
    nodata = np.zeros(mask.shape, dtype=bool)
    for band in S2_BANDS:
        nodata |= np.isnan(cube[band].values)
    cube[S2_MASK] = (("time", "y", "x"), np.where(nodata, MASK_NODATA, mask).astype(np.uint8))

    for angle in S2_ANGLES:
        holder = next((p for p in parts if angle in p), None)
        if holder is None:
            raise DataError(
                f"{names}: no {angle} found; give per-date angle variables "
                "(sun_zenith, view_zenith, relative_azimuth or sun/view azimuths)"
            )
        cube[angle] = ("time", holder[angle].values.astype(np.float32))
    platform = next((p[PLATFORM].values for p in parts if PLATFORM in p.coords), None)
    if platform is not None:
        cube = cube.assign_coords({PLATFORM: ("time", platform)})
    for band in S2_BANDS:
        cube[band].attrs = {"long_name": f"{band} bottom-of-atmosphere reflectance", "units": "1"}
    cube[S2_MASK].attrs = {"long_name": "0 clear, 1 cloud, 2 shadow, 3 no data"}
    for angle in S2_ANGLES:
        cube[angle].attrs = {"units": "degree"}
    return cube.rio.write_crs(crs).rio.write_coordinate_system()


def _on_grid(ds: xr.Dataset, template: xr.Dataset) -> xr.Dataset:
    ds = ds.rio.write_crs(template.rio.crs)
    if _same_grid(ds, template):
        return ds.assign_coords(x=template["x"].values, y=template["y"].values)
    src_res, dst_res = _resolution(ds), _resolution(template)
    method = Resampling.average if src_res < dst_res else Resampling.nearest
    return _regrid(ds, resampling=method, match=template)


# --------------------------------------------------------------------------- GeoTIFF stacks


def _read_tiff_stack(source: Path) -> list[xr.Dataset]:
    files = (
        [source]
        if source.is_file()
        else sorted(p for p in source.rglob("*") if p.suffix.lower() in _TIFF_SUFFIXES)
    )
    if not files:
        raise DataError(f"{source}: no GeoTIFF (.tif) files found")
    layers: dict[pd.Timestamp, dict[str, xr.DataArray]] = {}
    tags: dict[pd.Timestamp, dict[str, Any]] = {}
    for file in files:
        rel = file.relative_to(source).as_posix() if source.is_dir() else file.name
        time = _date_of(rel, file)
        da = _open_tiff(file)
        tags.setdefault(time, {}).update({k.lower(): v for k, v in da.attrs.items()})
        if platform := platform_of(rel):
            tags[time].setdefault(PLATFORM, platform)
        band = _band_token(rel)
        if band is not None:
            layers.setdefault(time, {})[band] = da.isel(band=0, drop=True)
            continue
        labels = _band_labels(da.rename(file.name), file)
        for i, label in enumerate(labels):
            name = _band_name(label) or ("SCL" if str(label).upper() == "SCL" else None)
            if name is not None:
                layers.setdefault(time, {})[name] = da.isel(band=i, drop=True)
    times = sorted(layers)
    band_sets = {t: set(layers[t]) for t in times}
    expected = set().union(*band_sets.values())
    for t in times:
        if band_sets[t] != expected:
            raise DataError(
                f"{source}: date {t.date()} lacks band(s) {sorted(expected - band_sets[t])}"
            )
    # One partial cube per pixel grid: 10 m and 20 m files stay apart until _assemble.
    groups: dict[tuple, list[str]] = {}
    for name in sorted(expected):
        da = layers[times[0]][name]
        key = (da.sizes["y"], da.sizes["x"], float(da["x"][0]), float(da["y"][0]))
        groups.setdefault(key, []).append(name)
    angles = _sidecar_angles(source, times, tags)
    parts = []
    for names in groups.values():
        data = {
            name: xr.concat([layers[t][name] for t in times], dim="time").drop_vars(
                "spatial_ref", errors="ignore"
            )
            for name in names
        }
        part = xr.Dataset(data).assign_coords(time=_as_datetime(times, source))
        part = _with_mask(part)
        for angle, values in angles.items():
            if angle == PLATFORM:
                part = part.assign_coords({PLATFORM: ("time", values)})
            else:
                part[angle] = ("time", values)
        crs = layers[times[0]][names[0]].rio.crs
        parts.append(part.rio.write_crs(crs) if crs is not None else part)
    return parts


def _date_of(rel: str, file: Path) -> pd.Timestamp:
    match = _DATE_RE.search(rel)
    if not match:
        raise DataError(f"{file}: no acquisition date (YYYYMMDD or YYYY-MM-DD) in the file name")
    y, m, d, hh, mm, ss = (int(g) if g else 0 for g in match.groups())
    try:
        return pd.Timestamp(datetime(y, m, d, hh, mm, ss))
    except ValueError as err:
        raise DataError(f"{file}: invalid date in the file name: {err}") from err


def _band_token(rel: str) -> str | None:
    for token in re.split(r"[^A-Za-z0-9]+", Path(rel).with_suffix("").as_posix()):
        if band := _band_name(token):
            return band
        if token.upper() in ("SCL", "MASK"):
            return "SCL" if token.upper() == "SCL" else S2_MASK
    return None


def _open_tiff(file: Path) -> xr.DataArray:
    try:
        # mask_and_scale applies the nodata value and any scales/offsets the GeoTIFF declares
        opened = rioxarray.open_rasterio(file, mask_and_scale=True)
        if not isinstance(opened, xr.DataArray):
            raise TypeError(f"expected a single raster, got {type(opened).__name__}")
        with opened as da:
            return da.load()
    except Exception as err:  # rasterio raises several types for unreadable files
        raise DataError(f"{file}: cannot read GeoTIFF: {type(err).__name__}: {err}") from err


def _sidecar_angles(
    source: Path, times: list[pd.Timestamp], tags: dict[pd.Timestamp, dict[str, Any]]
) -> dict[str, np.ndarray]:
    """Per-date angles and platform from ``angles.csv`` or from GeoTIFF tags."""
    table = None
    sidecar = source / "angles.csv" if source.is_dir() else source.with_name("angles.csv")
    if sidecar.is_file():
        table = read_table(sidecar)
        if "date" not in table.columns:
            raise DataError(f"{sidecar}: needs a 'date' column")
        table["date"] = _dates(table["date"], "date", sidecar).dt.normalize()
        table = table.set_index("date")
    found: dict[str, list] = {}
    for name, aliases in {**_ANGLE_ALIASES, PLATFORM: (PLATFORM,)}.items():
        values = []
        for t in times:
            value = None
            if table is not None:
                col = next((c for c in table.columns if c.lower() in aliases), None)
                if col is not None and t.normalize() in table.index:
                    value = table.loc[t.normalize(), col]
            if value is None:
                value = next((tags[t][a] for a in aliases if a in tags[t]), None)
            values.append(value)
        if all(v is not None for v in values):
            found[name] = values
    out: dict[str, np.ndarray] = {}
    try:
        for name in (*_ANGLE_ALIASES, PLATFORM):
            if name in found:
                out[name] = (
                    np.array([platform_of(str(v)) or str(v) for v in found[name]])
                    if name == PLATFORM
                    else np.asarray(found[name], dtype=np.float32)
                )
    except (TypeError, ValueError) as err:
        raise DataError(f"{source}: unreadable angle values: {err}") from err
    if "relative_azimuth" not in out and {"sun_azimuth", "view_azimuth"} <= set(out):
        out["relative_azimuth"] = relative_azimuth(out["sun_azimuth"], out["view_azimuth"])
    out.pop("sun_azimuth", None)
    out.pop("view_azimuth", None)
    return out


# ------------------------------------------------------------------------------------- tables

PIXEL_TABLE_OPTIONAL_COLUMNS: tuple[str, ...] = ("x", "y", "crs", *S1_POLARISATIONS, S1_INCIDENCE)
"""Optional columns of a pixel time-series table."""

# Field definitions in column order; typed Any because create_model checks a ** mapping's values
# against its keyword options (__config__, __base__, ...) as well.
_PIXEL_TABLE_FIELDS: dict[str, Any] = {
    "point_id": (str | int, Field(..., description="measurement point id")),
    "date": (datetime, Field(..., description="acquisition date (UTC)")),
    # Required columns, but a cloudy row may leave them empty (a requested date has neither).
    **{b: (float | None, Field(..., description="BOA reflectance")) for b in S2_BANDS},
    **{a: (float | None, Field(..., description="degrees")) for a in S2_ANGLES},
    "cloud_mask": (int, Field(..., description="0 clear, 1 cloud, 2 shadow, 3 no data")),
    "x": (float | None, Field(None, description="easting in the row's crs")),
    "y": (float | None, Field(None, description="northing in the row's crs")),
    "crs": (str | None, Field(None, description="e.g. EPSG:32631")),
    **{p: (float | None, Field(None, description="backscatter σ0, dB")) for p in S1_POLARISATIONS},
    S1_INCIDENCE: (float | None, Field(None, description="degrees")),
}

PixelTableSchema = create_model(
    "PixelTableSchema",
    __doc__="One row of a pixel time-series table, in releo's column names.",
    **_PIXEL_TABLE_FIELDS,
)
"""Pydantic row model of a pixel table; its fields are the required and optional columns."""


def read_pixel_table(
    path: PathLike, column_map: dict[str, str] | None = None, *, date_format: str | None = None
) -> pd.DataFrame:
    """Read a pixel time-series table (CSV/Parquet) in releo's column names.

    ``column_map`` renames the file's columns to releo's (``{"SZA": "sun_zenith", …}``); its
    targets must be fields of :data:`PixelTableSchema`. Required columns are
    ``contracts.PIXEL_TABLE_COLUMNS``, optional ones ``x, y, crs, VV, VH, incidence_angle``;
    other columns pass through. Dates are parsed (naive UTC), numbers made numeric (empty or
    blank cells become NaN: cloudy rows and requested dates may have no bands or angles);
    ``cloud_mask`` becomes uint8 (0 clear, 1 unusable; booleans → 0/1, missing → 1). Rows are
    sorted by point and date. Values are not range-checked (the gate judges clear rows). A
    missing or unknown column raises :class:`DataError` naming the file and column.

    ``date_format`` (e.g. ``"%d/%m/%Y"``; also a ``date_format`` entry of ``column_map``, as
    ``{"date_format": fmt}`` or inverted ``{fmt: "date_format"}``) says how dates are written:
    without it, ``06/01/2025``-like dates are a DataError (day/month order unknown).
    """
    source = Path(path)
    fields = PixelTableSchema.model_fields
    column_map, date_format = _date_format(column_map, date_format, source)
    df = _renamed(read_table(source, date_format=date_format), column_map, tuple(fields), source)
    _require(df, PIXEL_TABLE_COLUMNS, source)
    df["date"] = _dates(df["date"], "date", source, date_format)
    for name in (*S2_BANDS, *S2_ANGLES, "x", "y", *S1_POLARISATIONS, S1_INCIDENCE):
        if name in df.columns:
            df[name] = _numeric(df[name], name, source)
    df["cloud_mask"] = _mask_codes(df["cloud_mask"], source)
    return df.sort_values(["point_id", "date"], kind="stable").reset_index(drop=True)


def read_field_survey(
    path: PathLike,
    target_crs: str,
    column_map: dict[str, str] | None = None,
    *,
    date_format: str | None = None,
) -> pd.DataFrame:
    """Read a field-survey table and reproject its points to ``target_crs``.

    Columns are ``contracts.SURVEY_COLUMNS`` (after ``column_map``); each row may have its own
    ``crs`` (e.g. ``EPSG:4326``, with x = longitude and y = latitude). ``x``/``y`` are
    replaced by coordinates in ``target_crs`` (pyproj, always x/y order) and ``crs`` by its
    ``EPSG:…`` name. Rows are sorted by point and date. Missing columns, unknown CRSs or
    points outside the target CRS raise :class:`DataError` naming the file. ``date_format``:
    as in :func:`read_pixel_table` (ambiguous day/month dates without it are a DataError).
    """
    source = Path(path)
    target = _parse_crs(target_crs, source)
    column_map, date_format = _date_format(column_map, date_format, source)
    df = _renamed(read_table(source, date_format=date_format), column_map, SURVEY_COLUMNS, source)
    _require(df, SURVEY_COLUMNS, source)
    df["date"] = _dates(df["date"], "date", source, date_format)
    for name in ("x", "y", "lai", "lai_std"):
        df[name] = _numeric(df[name], name, source)
    if df["crs"].isna().any():
        rows = df.index[df["crs"].isna()].tolist()[:5]
        raise DataError(f"{source}: column 'crs' is empty in row(s) {rows}")
    x = df["x"].to_numpy(dtype=float, copy=True)
    y = df["y"].to_numpy(dtype=float, copy=True)
    for value, rows in df.groupby("crs", sort=True).groups.items():
        src = _parse_crs(value, source)
        if src == target:
            continue
        idx = df.index.get_indexer(rows)
        transformer = Transformer.from_crs(src, target, always_xy=True)
        x[idx], y[idx] = transformer.transform(x[idx], y[idx])
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        points = df.loc[bad, "point_id"].tolist()[:5]
        raise DataError(f"{source}: point(s) {points} cannot be placed in {target_crs}")
    df["x"], df["y"] = x, y
    df["crs"] = target.to_string()
    return df.sort_values(["point_id", "date"], kind="stable").reset_index(drop=True)


def _renamed(
    df: pd.DataFrame, column_map: dict[str, str] | None, known: Sequence[str], source: Path
) -> pd.DataFrame:
    if not column_map:
        return df.copy()
    absent = [k for k in column_map if k not in df.columns]
    if absent:
        raise DataError(
            f"{source}: column_map names column(s) {absent} that the file does not have "
            f"(it has {list(df.columns)})"
        )
    unknown = [v for v in column_map.values() if v not in known]
    if unknown:
        raise DataError(
            f"{source}: column_map maps to unknown column(s) {unknown}; releo's are {list(known)}"
        )
    renamed = df.rename(columns=column_map)
    duplicated = renamed.columns[renamed.columns.duplicated()].tolist()
    if duplicated:
        raise DataError(f"{source}: column_map yields duplicate column(s) {duplicated}")
    return renamed


def _require(df: pd.DataFrame, required: Sequence[str], source: Path) -> None:
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(
            f"{source}: missing required column(s) {missing} (the file has {list(df.columns)}; "
            "map other names with column_map)"
        )


def _date_format(
    column_map: dict[str, str] | None, date_format: str | None, source: Path
) -> tuple[dict[str, str] | None, str | None]:
    """Take a ``date_format`` entry out of a column map (either direction of the mapping)."""
    if not column_map:
        return column_map, date_format
    rest = {k: v for k, v in column_map.items() if DATE_FORMAT_KEY not in (k, v)}
    named = [v if k == DATE_FORMAT_KEY else k for k, v in column_map.items() if k not in rest]
    if named and date_format is not None and named[0] != date_format:
        raise DataError(
            f"{source}: date_format {date_format!r} and the column map's {named[0]!r} disagree"
        )
    return rest, date_format if date_format is not None else (named[0] if named else None)


def _dates(values: pd.Series, name: str, source: Path, date_format: str | None = None) -> pd.Series:
    try:
        dates = to_datetimes(values, utc=True, date_format=date_format)
    except AmbiguousDatesError as err:
        raise DataError(f"{source}: column {name!r} {err}") from err
    except (ValueError, TypeError) as err:
        what = f"dates not in date_format {date_format!r}" if date_format else "unparsable dates"
        raise DataError(f"{source}: column {name!r} holds {what}: {err}") from err
    if dates.isna().any():
        rows = values.index[dates.isna()].tolist()[:5]
        raise DataError(f"{source}: column {name!r} is empty in row(s) {rows}")
    return dates.dt.tz_localize(None).astype("datetime64[ns]")


def _numeric(values: pd.Series, name: str, source: Path) -> pd.Series:
    if values.dtype == object or isinstance(values.dtype, pd.StringDtype):
        # Blank text cells (" " in a CSV, "" in a Parquet string column) are missing values.
        values = values.mask(values.astype(str).str.strip() == "")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        examples = values[bad].astype(str).unique().tolist()[:5]
        raise DataError(f"{source}: column {name!r} holds non-numeric value(s) {examples}")
    return numbers.astype(float)


def _mask_codes(values: pd.Series, source: Path) -> pd.Series:
    """``cloud_mask`` as uint8: 0 clear, 1 unusable (cloud, shadow or no data)."""
    if values.dtype == bool:
        return values.astype(np.uint8)
    codes = _numeric(values, "cloud_mask", source)
    bad = codes.notna() & ((codes % 1 != 0) | (codes < 0) | (codes > 255))
    if bad.any():
        examples = values[bad].astype(str).unique().tolist()[:5]
        raise DataError(f"{source}: column 'cloud_mask' holds non-code value(s) {examples}")
    # a missing flag cannot vouch for a clear sky: count it as unusable
    return codes.fillna(MASK_CLOUD).astype(np.uint8)
