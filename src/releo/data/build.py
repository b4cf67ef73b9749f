"""``releo site build``: real S2 and S1 products → a site directory the pipeline runs on.

The sources are read lazily by :mod:`releo.data.sources` (or :func:`read_s2_l2a` for cube
files), cut to the bounding box and period, S1 put on the S2 grid, the SNAP reference computed
from the S2 cube, and every part written to a temporary directory that replaces ``out`` only
after every quality gate passed: a failed build leaves the previous site intact.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pyproj import CRS
from rasterio.enums import Resampling

from releo.data.contracts import (
    PLATFORM,
    S1_INCIDENCE,
    S1_ORBIT_DIRECTION,
    S1_POLARISATIONS,
    S1_RELATIVE_ORBIT,
    S2_BANDS,
    S2_PLATFORMS,
)
from releo.data.errors import DataError
from releo.data.io import atomic_dir, json_safe, write_cube, write_json, write_table
from releo.data.meteo import read_meteo
from releo.data.readers import read_field_survey, read_s2_l2a
from releo.data.reference import SNAP_VERSION, snap_reference
from releo.data.site import SITE_FILES, open_site, validate_site
from releo.data.site_record import Bounds, IncidenceRecord, Period, SiteRecord, SourceRecord
from releo.data.sources.s1 import read_s1_files
from releo.data.sources.safe import read_safe
from releo.data.sources.stac import read_stac_s1, read_stac_s2
from releo.data.sources.theia import read_theia
from releo.data.spill import scratch_folder

PathLike = str | os.PathLike[str]


def build_site(
    *,
    s2: Sequence[PathLike],
    s1: Sequence[PathLike],
    out: PathLike,
    bbox: Bounds | None = None,
    period: tuple[str, str] | None = None,
    crs: str | None = None,
    surveys: PathLike | None = None,
    meteo: PathLike | None = None,
    s1_incidence: float | None = None,
    s1_stated: dict[str, Any] | None = None,
    s2_platform: str | None = None,
    name: str | None = None,
    context_root: PathLike | None = None,
    progress: Callable[[str], None] = lambda _msg: None,
) -> SiteRecord:
    """Build the site directory ``out`` from S2 and S1 sources; return its ``site.json``.

    ``bbox`` is (xmin, ymin, xmax, ymax) in ``crs`` (or in the products' CRS when ``crs`` is
    None); ``period`` is (first, last) day, inclusive. ``s1_incidence`` states the incidence
    angle (degrees) of S1 products that carry none; ``s2_platform`` the platform (S2A…) of S2
    products that do not say it (SNAP and PROSAIL use the platform's spectral responses).
    ``s1_stated`` states what S1 files without metadata hold (``quantity``: sigma0/gamma0,
    ``units``: linear/dB, ``orbit_direction``, ``relative_orbit``). All are recorded in
    ``site.json``; nothing is assumed silently.
    """
    window = _period(period)
    s1_stated = {k: v for k, v in (s1_stated or {}).items() if v is not None}
    progress("reading S2")
    s2_cube, s2_reader = _read_s2(s2, bbox=bbox, crs=crs, period=window)
    s2_cube = _cut(s2_cube, bbox, window, "S2", s2)
    s2_cube, stated = _with_platform(s2_cube, s2_platform, s2)
    site_crs = s2_cube.rio.crs.to_string()
    progress(f"S2: {s2_cube.sizes['time']} dates, {s2_cube.sizes['y']}×{s2_cube.sizes['x']} px")

    progress("reading S1")
    s1_cube, s1_reader = _read_s1(
        s1,
        bbox=_bounds(s2_cube),
        crs=site_crs,
        period=window,
        incidence=s1_incidence,
        stated=s1_stated,
    )
    s1_cube = _on_s2_grid(_cut(s1_cube, None, window, "S1", s1), s2_cube, s1)
    progress(f"S1: {s1_cube.sizes['time']} dates")

    # the readers say where the angle came from; a stated one unused by the product is not kept
    user_incidence = str(s1_cube.attrs.get("incidence_angle_source", "")).startswith("user")
    survey_table = read_field_survey(surveys, target_crs=site_crs) if surveys else None
    meteo_table = read_meteo(meteo) if meteo else None

    first = min(s2_cube.time.values.min(), s1_cube.time.values.min())
    last = max(s2_cube.time.values.max(), s1_cube.time.values.max())
    record = SiteRecord(
        name=name or Path(out).resolve().name,
        crs=site_crs,
        bounds=_bounds(s2_cube),
        period=Period(start=pd.Timestamp(first).date(), end=pd.Timestamp(last).date()),
        s2=_source_record(s2_reader, s2, s2_cube),
        s1=_source_record(s1_reader, s1, s1_cube),
        s1_incidence=IncidenceRecord(
            source="user" if user_incidence else "product",
            value_deg=s1_incidence if user_incidence else None,
        ),
        s2_platform_stated=stated,
        s1_stated=s1_stated,
        reference={"product": "SNAP biophysical processor LAI", "version": SNAP_VERSION},
        surveys=str(surveys) if surveys else None,
        meteo=str(meteo) if meteo else None,
        built=build_time(),
    )

    target = Path(out)
    with atomic_dir(target) as tmp:
        progress(f"writing {target}")
        # The (lazy) sources are read shard by shard as the cubes are written, then again date
        # by date for SNAP, into scratch files: no step holds the site whole. (The stored cube's
        # inner chunks hold every date of a window: read date by date, each would be decoded
        # once per date.)
        write_cube(s2_cube, tmp / SITE_FILES["s2"])
        write_cube(s1_cube, tmp / SITE_FILES["s1"])
        progress("computing the SNAP LAI reference")
        with scratch_folder(tmp / SITE_FILES["reference"]) as scratch:
            write_cube(snap_reference(s2_cube, scratch=scratch), tmp / SITE_FILES["reference"])
        if survey_table is not None:
            write_table(survey_table, tmp / SITE_FILES["surveys"])
        if meteo_table is not None:
            dated = meteo_table.assign(date=meteo_table["date"].dt.strftime("%Y-%m-%d"))
            write_table(dated, tmp / SITE_FILES["meteo"])
        write_json(record.model_dump(mode="json"), tmp / SITE_FILES["metadata"])
        progress("running the quality gates")
        validate_site(open_site(tmp, lazy=True), context_root=context_root)
    return record


def build_time() -> dt.datetime:
    """Now, or ``$SOURCE_DATE_EPOCH`` where set (reproducible-builds.org).

    The pipeline's stage that builds a real site sets it, so the same products give the same
    bytes and a fresh clone's ``dvc repro`` leaves ``dvc.lock`` as committed.
    """
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    try:
        return dt.datetime.fromtimestamp(int(epoch), dt.UTC)
    except ValueError as error:
        raise ValueError(f"SOURCE_DATE_EPOCH={epoch!r}: not whole seconds since 1970") from error


# ----------------------------------------------------------------------------------- readers


def _kind(sources: Sequence[Path]) -> str:
    """Which reader fits the sources: stac (JSON), safe, theia, or cube/files."""
    first = sources[0]
    if first.suffix.lower() == ".json":
        return "stac"
    names = [first.name]
    if first.is_dir() and first.suffix.upper() != ".SAFE":
        names = [p.name for p in first.iterdir()]
    if any(n.upper().endswith(".SAFE") for n in names):
        return "safe"
    if any(n.startswith("SENTINEL2") and "_L2A_T" in n for n in names):
        return "theia"
    return "cube"


def _read_s2(
    sources: Sequence[PathLike], *, bbox: Bounds | None, crs: str | None, period: Any
) -> tuple[xr.Dataset, str]:
    paths = _paths(sources, "--s2")
    kind = _kind(paths)
    if kind == "stac":
        if bbox is None or crs is None:
            raise DataError(f"{paths[0]}: a STAC source needs --bbox and --crs")
        cubes = [read_stac_s2(p, bbox=bbox, crs=crs, period=period) for p in paths]
        return _concat(cubes, paths), kind
    if kind == "safe":
        return read_safe(paths, bbox=bbox, crs=crs, period=period), kind
    if kind == "theia":
        return read_theia(paths, bbox=bbox, crs=crs, period=period), kind
    return read_s2_l2a(paths, crs=crs), kind


def _read_s1(
    sources: Sequence[PathLike],
    *,
    bbox: Bounds,
    crs: str,
    period: Any,
    incidence: float | None,
    stated: dict[str, Any],
) -> tuple[xr.Dataset, str]:
    paths = _paths(sources, "--s1")
    conventions = {k: stated[k] for k in ("quantity", "units") if stated.get(k) is not None}
    if _kind(paths) == "stac":
        cubes = [
            read_stac_s1(
                p, bbox=bbox, crs=crs, period=period, incidence_angle=incidence, **conventions
            )
            for p in paths
        ]
        return _concat(cubes, paths), "stac"
    orbit = {k: stated[k] for k in ("orbit_direction", "relative_orbit") if stated.get(k)}
    cube = read_s1_files(
        paths, crs=crs, bbox=bbox, incidence_angle=incidence, **conventions, **orbit
    )
    return cube, "files"


def _paths(sources: Sequence[PathLike], option: str) -> list[Path]:
    paths = [Path(s) for s in sources]
    if not paths:
        raise DataError(f"site build: no {option} source given")
    for path in paths:
        if not path.exists():
            raise DataError(f"{path}: not found ({option})")
    return paths


def _concat(cubes: list[xr.Dataset], paths: list[Path]) -> xr.Dataset:
    if len(cubes) == 1:
        return cubes[0]
    crs = {c.rio.crs.to_string() for c in cubes}
    if len(crs) > 1:
        raise DataError(f"{', '.join(map(str, paths))}: cubes in different CRSs {sorted(crs)}")
    return xr.concat(cubes, dim="time").sortby("time")


# ------------------------------------------------------------------------------ site assembly


def _period(period: tuple[str, str] | None) -> tuple[pd.Timestamp, pd.Timestamp] | None:
    if period is None:
        return None
    try:
        first, last = (pd.Timestamp(p) for p in period)
    except (ValueError, TypeError) as err:
        raise DataError(f"--period {period}: not two dates (YYYY-MM-DD): {err}") from err
    if last < first:
        raise DataError(f"--period {period}: ends before it starts")
    return first, last + pd.Timedelta(days=1) - pd.Timedelta(seconds=1)


def _cut(
    cube: xr.Dataset, bbox: Bounds | None, window: Any, what: str, sources: Sequence[PathLike]
) -> xr.Dataset:
    """The cube inside ``bbox`` and ``window``; nothing left is an error naming the sources."""
    names = ", ".join(map(str, sources))
    if window is not None:
        cube = cube.sel(time=slice(*window))
        if cube.sizes["time"] == 0:
            raise DataError(f"{names}: no {what} acquisition in the period {window[0].date()}…")
    if bbox is not None:
        xmin, ymin, xmax, ymax = bbox
        have = _bounds(cube)
        if xmin >= have[2] or xmax <= have[0] or ymin >= have[3] or ymax <= have[1]:
            raise DataError(f"{names}: bbox {bbox} lies outside the {what} products ({have})")
        cube = cube.rio.clip_box(xmin, ymin, xmax, ymax)
    return cube


def _bounds(cube: xr.Dataset) -> Bounds:
    return tuple(float(v) for v in cube.rio.bounds())  # type: ignore[return-value]


def _with_platform(
    cube: xr.Dataset, stated: str | None, sources: Sequence[PathLike]
) -> tuple[xr.Dataset, str | None]:
    if PLATFORM in cube.coords and stated is None:
        return cube, None
    if stated is None:
        raise DataError(
            f"{', '.join(map(str, sources))}: the S2 products do not say their platform "
            f"(one of {', '.join(S2_PLATFORMS)}); state it with --s2-platform"
        )
    if stated not in S2_PLATFORMS:
        raise DataError(f"--s2-platform {stated!r}: not one of {', '.join(S2_PLATFORMS)}")
    if PLATFORM in cube.coords:
        raise DataError(
            f"{', '.join(map(str, sources))}: the products name their platforms; "
            "--s2-platform would override them"
        )
    return cube.assign_coords({PLATFORM: ("time", np.full(cube.sizes["time"], stated))}), stated


def _on_s2_grid(s1: xr.Dataset, s2: xr.Dataset, sources: Sequence[PathLike]) -> xr.Dataset:
    """S1 resampled onto the S2 grid (nearest: speckle statistics are not averaged away)."""
    if CRS.from_user_input(s1.rio.crs) != CRS.from_user_input(s2.rio.crs):
        s1 = s1.rio.reproject(s2.rio.crs)
    pixel = [v for v in (*S1_POLARISATIONS, S1_INCIDENCE) if v in s1]
    missing = [v for v in (*S1_POLARISATIONS, S1_INCIDENCE) if v not in s1]
    if missing:
        names = ", ".join(map(str, sources))
        raise DataError(f"{names}: the S1 cube lacks {', '.join(missing)}")
    template = s2[S2_BANDS[0]].isel(time=0, drop=True)
    gridded = s1[pixel].rio.reproject_match(template, resampling=Resampling.nearest)
    gridded = gridded.assign_coords(x=s2["x"].values, y=s2["y"].values)
    for name in pixel:
        gridded[name] = gridded[name].where(np.isfinite(gridded[name])).astype(np.float32)
        gridded[name].attrs = s1[name].attrs
    per_date = [v for v in (S1_ORBIT_DIRECTION, S1_RELATIVE_ORBIT) if v in s1]
    for name in per_date:
        gridded[name] = ("time", s1[name].values)
    if PLATFORM in s1.coords:
        gridded = gridded.assign_coords({PLATFORM: ("time", s1[PLATFORM].values)})
    gridded.attrs = s1.attrs
    return gridded.rio.write_crs(s2.rio.crs).rio.write_coordinate_system()


def _source_record(reader: str, sources: Sequence[PathLike], cube: xr.Dataset) -> SourceRecord:
    attrs = json_safe(dict(cube.attrs))
    return SourceRecord(
        reader=reader,
        sources=[str(s) for s in sources],
        acquisitions=int(cube.sizes["time"]),
        first=pd.Timestamp(cube.time.values.min()).to_pydatetime(),
        last=pd.Timestamp(cube.time.values.max()).to_pydatetime(),
        attrs=attrs,
    )
