"""Turn cubes and tables into the tables Great Expectations validates, and pre-check structure.

GE is tabular, so a cube becomes four tables:

- ``bands``: one row per (date, variable): min, max, mean over the usable pixels (clear ones
  for masked variables, finite ones otherwise), usable and NaN fractions, dtype;
- ``acquisitions``: one row per date: the date, per-acquisition geometry/orbit, mask fractions;
- ``metadata``: one row: CRS (present, projected, units), pixel spacing, dims, sizes;
- ``sample``: a deterministic random sample of pixels (``SAMPLE_SIZE`` rows);
- ``plausibility`` (S2, S1): one row per date: σ0 median/spread, shares of implausible clear
  spectra, sun zenith against the date and latitude (see ``plausibility``).

Reductions stream over blocks of dates, so a lazily opened Zarr cube is never loaded whole
(several blocks of a stored cube are Ray tasks), and the sample reads only the sampled pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from releo.data import contracts as c
from releo.data.spill import date_blocks
from releo.distributed import map_tasks, ray_session, use_ray
from releo.quality import plausibility
from releo.quality.errors import Failure, QualityGateError
from releo.quality.specs import (
    CLEAR_OUTLIER_SHARE,
    PIXEL_TABLE_OPTIONAL_RANGES,
    RESOLUTION_TOLERANCE_M,
    SAMPLE_SEED,
    SAMPLE_SIZE,
    CubeSpec,
)

CUBE_DIMS = ("time", "y", "x")
STRUCTURE = "structure"


def _crs(ds: xr.Dataset) -> Any:
    """The CRS rioxarray reads from the cube (``spatial_ref``), or None."""
    import rioxarray  # noqa: F401  (registers the .rio accessor)

    try:
        crs = ds.rio.crs
        if crs is None and "spatial_ref" in ds.data_vars:
            # Opened without decode_coords="all", spatial_ref is a data variable: same CRS.
            crs = ds.set_coords("spatial_ref").rio.crs
        return crs
    except Exception:  # a malformed spatial_ref is as good as none
        return None


def check_cube_structure(ds: xr.Dataset, source: str, spec: CubeSpec) -> None:
    """Raise QualityGateError for what a summary table cannot express: missing parts, dims, CRS."""
    failures: list[Failure] = []

    def fail(expectation: str, name: str, detail: str, subject: str = "variable") -> None:
        failures.append(Failure(STRUCTURE, expectation, name, detail, subject=subject))

    for name in CUBE_DIMS:
        if name not in ds.coords:
            fail("expect_coordinate_to_exist", name, "missing", "coordinate")
    expected_dims: list[tuple[str, tuple[str, ...]]] = [(n, CUBE_DIMS) for n in spec.pixel_vars]
    expected_dims += [(n, ("time",)) for n in spec.time_vars]
    for name, dims in expected_dims:
        if name not in ds.variables:
            fail(
                "expect_variable_to_exist",
                name,
                f"missing; the cube has {sorted(map(str, ds.data_vars))}",
            )
        elif ds[name].dims != dims:
            fail("expect_variable_dims_to_equal", name, f"dims {ds[name].dims}, expected {dims}")
    if "time" in ds.coords and ds["time"].dtype.kind != "M":
        fail("expect_coordinate_to_be_datetime", "time", f"dtype {ds['time'].dtype}", "coordinate")
    for name in CUBE_DIMS:
        if ds.sizes.get(name, 1) == 0:
            fail("expect_dimension_to_be_non_empty", name, "size 0", "dimension")
    if _crs(ds) is None:
        detail = "no CRS readable by rioxarray (write it with ds.rio.write_crs)"
        fail("expect_crs_to_exist", "spatial_ref", detail, "coordinate")
    if failures:
        raise QualityGateError(spec.contract, source, failures)


def check_table_columns(
    df: pd.DataFrame, source: str, contract: str, required: Sequence[str]
) -> None:
    """Raise QualityGateError when required columns are missing (GE would only error on them)."""
    missing = [col for col in required if col not in df.columns]
    if missing:
        failures = [
            Failure(STRUCTURE, "expect_column_to_exist", col, f"missing; has {list(df.columns)}")
            for col in missing
        ]
        raise QualityGateError(contract, source, failures)


def _spacing(coord: xr.DataArray) -> tuple[float, bool]:
    """Median absolute step of a 1-D coordinate and whether every step equals it."""
    steps = np.abs(np.diff(np.asarray(coord.values, dtype=float)))
    if steps.size == 0:
        return float("nan"), False
    res = float(np.median(steps))
    return res, bool(np.allclose(steps, res, rtol=0.0, atol=RESOLUTION_TOLERANCE_M))


def cube_metadata(ds: xr.Dataset, spec: CubeSpec) -> pd.DataFrame:
    """One row: CRS facts, pixel spacing, dims and sizes."""
    import pyproj

    crs = _crs(ds)
    projected, units, name = False, None, None
    if crs is not None:
        proj = pyproj.CRS.from_user_input(crs.to_wkt())
        projected = bool(proj.is_projected)
        units = proj.axis_info[0].unit_name if proj.axis_info else None
        name = crs.to_string()
    res_x, x_regular = _spacing(ds["x"])
    res_y, y_regular = _spacing(ds["y"])
    row = {
        "crs": name,
        "crs_present": crs is not None,
        "crs_projected": projected,
        "crs_units": units,
        "res_x": res_x,
        "res_y": res_y,
        "x_regular": x_regular,
        "y_regular": y_regular,
        "dims": ",".join(map(str, ds[spec.pixel_vars[0]].dims)),
        "n_time": ds.sizes["time"],
        "n_y": ds.sizes["y"],
        "n_x": ds.sizes["x"],
    }
    return pd.DataFrame([row])


def _usable(
    values: np.ndarray, nan: np.ndarray, clear: np.ndarray | None, judged_where_clear: bool
) -> np.ndarray:
    """Which pixels a variable's range is judged on (see ``CubeSpec.judged_where_clear``).

    Clear, non-NaN pixels for masked variables (an infinite clear value stays in, to fail the
    range; a clear NaN fails ``nan_clear_fraction`` instead); finite pixels for other float
    variables (NaN and ±inf are no data: S1 σ0 of 0 is -inf dB); every pixel of integer ones.
    """
    if values.dtype.kind != "f":
        return np.ones(values.shape, bool)
    if judged_where_clear and clear is not None:
        return clear & ~nan
    return np.isfinite(values)


Arrays = dict[str, np.ndarray]


def _reduce(
    ds: xr.Dataset, spec: CubeSpec, stored: str | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per-(date, variable) statistics over usable pixels, and per-date mask fractions.

    ``min``/``max``/``mean`` are taken over the pixels a variable is judged on (NaN on a date
    with none; for variables judged where clear, min/max leave out ``CLEAR_OUTLIER_SHARE``
    of the pixels at each end), ``valid_fraction`` is their share, ``nan_fraction`` the share
    of NaN anywhere and ``nan_clear_fraction`` the share of clear pixels that are NaN.
    Streaming over blocks of dates bounds memory: a lazily opened Zarr cube is read one block
    at a time, each block once for all statistics, the per-date plausibility ones (on a
    strided subset of the pixels, ``plausibility.subset_index``) included. Where ``ds`` is the
    cube ``stored`` at that path and there are several blocks, they are Ray tasks, each
    reading its block by path (:mod:`releo.distributed`); the statistics are the same.
    """
    blocks = date_blocks(ds.sizes["time"], ds.sizes["y"] * ds.sizes["x"])
    if stored is not None and use_ray(len(blocks)):
        tasks = [{"path": stored, "spec": spec, "start": b.start, "stop": b.stop} for b in blocks]
        with ray_session():
            parts = map_tasks(_reduce_stored, tasks)
    else:
        parts = [_reduce_block(ds, spec, block) for block in blocks]
    times = pd.DatetimeIndex(ds["time"].values)

    def joined(key: str) -> Arrays:
        names = parts[0][key] if parts else {}
        return {k: np.concatenate([p[key][k] for p in parts]) for k in names}

    frames = []
    for name in spec.pixel_vars:
        columns = joined(name)
        frames.append(
            pd.DataFrame({"time": times, "variable": name, "dtype": str(ds[name].dtype), **columns})
        )
    bands = pd.concat(frames, ignore_index=True)
    masks = pd.DataFrame(joined("fractions"), index=range(len(times)))
    plaus_table = pd.DataFrame({"time": times, **joined("plausibility")})
    return bands, masks, plaus_table


def _reduce_stored(path: str, spec: CubeSpec, start: int, stop: int) -> dict[str, Arrays]:
    """:func:`_reduce_block` of the dates [start, stop) of the cube stored at ``path``."""
    from releo.data.io import open_cube

    return _reduce_block(open_cube(path, lazy=True), spec, slice(start, stop))


def _reduce_block(ds: xr.Dataset, spec: CubeSpec, block: slice) -> dict[str, Arrays]:
    """The statistics of the dates ``block`` (see :func:`_reduce`).

    Keyed by variable (its statistics), ``fractions`` (the mask classes') and
    ``plausibility``; each array has one value per date of the block.
    """
    out: dict[str, Arrays] = {"fractions": {}, "plausibility": {}}
    subset = plausibility.subset_index(ds.sizes["y"] * ds.sizes["x"])
    picked: dict[str, np.ndarray] = {}
    clear = None
    if spec.mask is not None:
        mask = np.asarray(ds[spec.mask].isel(time=block).values).reshape(
            -1, ds.sizes["y"] * ds.sizes["x"]
        )
        clear = mask == c.MASK_CLEAR
        n_clear = clear.sum(axis=1)
        for value, label in spec.mask_values.items():
            out["fractions"][f"{label}_fraction"] = (mask == value).mean(axis=1)
    for name in spec.pixel_vars:
        values = np.asarray(ds[name].isel(time=block).values)
        values = values.reshape(values.shape[0], -1)
        if name in spec.median_ranges or (spec.clear_spectra and name in c.S2_BANDS):
            picked[name] = values[:, subset]
        nan = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
        usable = _usable(values, nan, clear, name in spec.judged_where_clear)
        n_usable = usable.sum(axis=1)
        if values.dtype.kind == "f":
            # Unusable pixels as NaN, which fmin/fmax and nansum skip: a date without a
            # usable pixel (fully cloudy) gets NaN statistics, which GE's between skips.
            kept = values if usable.all() else np.where(usable, values, np.nan)
            if name in spec.judged_where_clear:
                lo, hi = _trimmed_range(kept, usable, n_usable)
            else:
                lo, hi = np.fmin.reduce(kept, axis=1), np.fmax.reduce(kept, axis=1)
            total = np.nansum(kept, axis=1, dtype="float64")
        else:
            lo, hi, total = values.min(axis=1), values.max(axis=1), values.sum(axis=1)
        stats = {
            "min": lo.astype("float64"),
            "max": hi.astype("float64"),
            "mean": np.where(n_usable > 0, total / np.maximum(n_usable, 1), np.nan),
            "valid_fraction": n_usable / values.shape[1],
            "nan_fraction": nan.mean(axis=1),
        }
        if clear is not None:
            bad = (nan & clear).sum(axis=1)
            # 0 where a date has no clear pixel at all: nothing there may be wrongly NaN.
            stats["nan_clear_fraction"] = np.where(n_clear > 0, bad / np.maximum(n_clear, 1), 0.0)
        out[name] = stats
    out["plausibility"] = _plausible(spec, picked, clear, subset)
    return out


def _plausible(
    spec: CubeSpec, picked: dict[str, np.ndarray], clear: np.ndarray | None, subset: np.ndarray
) -> dict[str, np.ndarray]:
    """The per-date plausibility statistics of one block, from its subset pixels."""
    out: dict[str, np.ndarray] = {}
    for name in spec.median_ranges:
        out[f"{name}_median"], out[f"{name}_spread"] = plausibility.distribution(picked[name])
    if spec.clear_spectra and clear is not None:
        bands = {b: picked[b] for b in c.S2_BANDS}
        out.update(plausibility.spectra_shares(bands, clear[:, subset]))
    return out


def _trimmed_range(
    values: np.ndarray, usable: np.ndarray, n_usable: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-row min and max of the usable values, trimmed at both ends.

    The ``CLEAR_OUTLIER_SHARE`` most extreme values at each end are left out (none on a small image:
    the share rounds down).
    """
    lo, hi = np.fmin.reduce(values, axis=1), np.fmax.reduce(values, axis=1)
    trim = np.floor(CLEAR_OUTLIER_SHARE * n_usable).astype(int)
    for row in np.nonzero(trim)[0]:
        k, kept = int(trim[row]), values[row][usable[row]]
        lo[row] = np.partition(kept, k)[k]
        hi[row] = np.partition(kept, kept.size - 1 - k)[kept.size - 1 - k]
    return lo, hi


def cube_acquisitions(ds: xr.Dataset, spec: CubeSpec, mask_fractions: pd.DataFrame) -> pd.DataFrame:
    """One row per date: the date, per-acquisition variables and mask class fractions."""
    table = pd.DataFrame({"time": pd.DatetimeIndex(ds["time"].values)})
    for name in spec.time_vars:
        values = np.asarray(ds[name].values)
        # Text coordinates come back from Zarr as bytes or numpy str: give GE plain str.
        table[name] = values.astype(str) if values.dtype.kind in "USO" else values
    return pd.concat([table, mask_fractions], axis=1)


def cube_sample(ds: xr.Dataset, spec: CubeSpec) -> pd.DataFrame:
    """A deterministic random sample of pixels: time, y, x and every (time, y, x) variable.

    Values are the cube's, except ±inf of variables judged where finite, which become NaN.
    """
    shape = tuple(ds.sizes[d] for d in CUBE_DIMS)
    total = int(np.prod(shape))
    rng = np.random.default_rng(SAMPLE_SEED)
    flat = np.sort(rng.choice(total, size=min(SAMPLE_SIZE, total), replace=False))
    it, iy, ix = np.unravel_index(flat, shape)
    # Pointwise (vectorised) indexing: one value per sampled pixel, not an outer product.
    index = (it, iy, ix)
    points = {d: xr.DataArray(i, dims="pixel") for d, i in zip(CUBE_DIMS, index, strict=True)}
    picked = ds[list(spec.pixel_vars)].isel(points).compute()
    table = pd.DataFrame(
        {
            "time": pd.DatetimeIndex(ds["time"].values[it]),
            "y": ds["y"].values[iy],
            "x": ds["x"].values[ix],
        }
    )
    for name in spec.pixel_vars:
        values = picked[name].values
        if values.dtype.kind == "f" and name not in spec.judged_where_clear:
            # Judged where finite, as in the bands table: ±inf is no data, like NaN.
            values = np.where(np.isfinite(values), values, np.nan).astype(values.dtype)
        table[name] = values
    return table


def cube_tables(
    ds: xr.Dataset, spec: CubeSpec, stored: str | None = None
) -> dict[str, pd.DataFrame]:
    """The tables a cube gate validates, keyed by table name (``plausibility`` for S2/S1).

    ``stored``: the path of the cube ``ds`` is, opened lazily (its reductions may be Ray tasks).
    """
    bands, mask_fractions, plaus = _reduce(ds, spec, stored)
    tables = {
        "bands": bands,
        "acquisitions": cube_acquisitions(ds, spec, mask_fractions),
        "metadata": cube_metadata(ds, spec),
        "sample": cube_sample(ds, spec),
    }
    if spec.plausibility:
        if plausibility.HAZE in plaus:
            # the same on every row; 0 when no date has enough clear pixels to judge
            judged = plaus[plausibility.HAZE].dropna()
            plaus[plausibility.HAZE_MEAN] = float(judged.mean()) if len(judged) else 0.0
        if spec.sun_zenith is not None:
            for key, values in plausibility.sun_zenith_table(ds, spec, _crs(ds)).items():
                plaus[key] = values
        tables["plausibility"] = plaus
    return tables


def _as_datetime(values: pd.Series) -> pd.Series:
    """Dates as naive datetimes; unparseable ones become NaT (and fail a not-null expectation)."""
    dates = pd.to_datetime(values, errors="coerce", utc=False)
    if isinstance(dates.dtype, pd.DatetimeTZDtype):
        dates = dates.dt.tz_convert("UTC").dt.tz_localize(None)
    return dates


def survey_table(df: pd.DataFrame, site_crs: str) -> pd.DataFrame:
    """The survey with dates as days, plus ``x_site``/``y_site``: points in the site CRS."""
    import pyproj

    table = df.copy()
    # A field measurement is dated by its day: the period and (point_id, date) are day-level.
    table["date"] = _as_datetime(table["date"]).dt.normalize()
    x = pd.to_numeric(table["x"], errors="coerce").to_numpy(dtype=float)
    y = pd.to_numeric(table["y"], errors="coerce").to_numpy(dtype=float)
    x_site, y_site = np.full(len(table), np.nan), np.full(len(table), np.nan)
    site = pyproj.CRS.from_user_input(site_crs)
    for crs, rows in table.groupby(table["crs"].astype(str), sort=False).indices.items():
        try:
            transformer = pyproj.Transformer.from_crs(
                pyproj.CRS.from_user_input(crs), site, always_xy=True
            )
        except pyproj.exceptions.ProjError:  # CRSError included
            continue  # left NaN: the not-null expectation on x_site reports these rows
        x_site[rows], y_site[rows] = transformer.transform(x[rows], y[rows])
    # inf is what pyproj returns for points it cannot project: as bad as unparseable.
    table["x_site"] = np.where(np.isfinite(x_site), x_site, np.nan)
    table["y_site"] = np.where(np.isfinite(y_site), y_site, np.nan)
    return table


def pixel_table(df: pd.DataFrame) -> pd.DataFrame:
    """The pixel table as it is, dates parsed, optional SAR columns present (NaN when absent)."""
    table = df.copy()
    table["date"] = _as_datetime(table["date"])
    for name in PIXEL_TABLE_OPTIONAL_RANGES:
        if name not in table.columns:
            table[name] = np.nan
    return table
