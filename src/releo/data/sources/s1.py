"""Sentinel-1 backscatter into the S1 contract cube: σ0 (dB), incidence angle, orbit per date.

What a product stores (σ0, γ0, terrain-flattened γ0; linear power or dB) comes from its
metadata or from the caller, never from the pixel values. γ0/β0 become σ0 with the cube's
incidence angle θ (σ0 = γ0·cos θ, σ0 = β0·sin θ); for terrain-flattened γ0 that is the
flat-terrain approximation, recorded in the cube's attrs.

Unknown relative orbit. Some products (e.g. WorldCereal extractions) carry neither the orbit
number nor the platform. Passes of one relative orbit over a site recur at the same UTC time
of day (exact 12-day repeat), so acquisitions are grouped into time-of-day slots per orbit
direction and each slot gets a **negative** code: ``relative_orbit = -k`` means "orbit number
unknown, k-th acquisition slot". Real orbit numbers are 1..175, so a code can never be taken
for one; the ``relative_orbit`` variable's attrs list the slots (``unknown_orbit_slots``) and
``relative_orbit_known`` says whether every value is a real orbit number.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import rioxarray
import xarray as xr
from odc.geo.geobox import GeoBox
from pyproj import CRS
from rasterio.enums import Resampling

from releo.data.contracts import (
    PLATFORM,
    S1_INCIDENCE,
    S1_ORBIT_DIRECTION,
    S1_ORBIT_DIRECTIONS,
    S1_POLARISATIONS,
    S1_RELATIVE_ORBIT,
)
from releo.data.errors import DataError
from releo.data.readers import unpack
from releo.data.sources._stac_common import output_geobox, projected_crs

__all__ = ["Backscatter", "read_s1_files"]

PathLike = str | os.PathLike[str]

QUANTITIES: dict[str, str] = {
    "sigma0": "sigma0",
    "σ0": "sigma0",
    "gamma0": "gamma0",
    "γ0": "gamma0",
    "gamma0_t": "gamma0_T",
    "gamma0_terrain": "gamma0_T",
    "γ0_t": "gamma0_T",
    "beta0": "beta0",
    "β0": "beta0",
}
"""Accepted spellings of the backscatter quantity → canonical name."""
UNITS: dict[str, str] = {
    "db": "dB",
    "decibel": "dB",
    "decibels": "dB",
    "linear": "linear",
    "power": "linear",
    "1": "linear",
}
SLOT_TOLERANCE_S = 150.0
"""Passes of one relative orbit over a site recur within seconds of the same UTC time of day;
adjacent orbits over one site are several minutes apart."""

_DATE_RE = re.compile(r"(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2}))?")
_OPERA_RE = re.compile(
    r"OPERA_L2_RTC-S1_T(\d{3})-\d+-IW\d_(\d{8}T\d{6})Z_\d{8}T\d{6}Z_(S1[A-D])", re.IGNORECASE
)
_WORLDCEREAL_RE = re.compile(r"^S1_GRD-(ASCENDING|DESCENDING)_\d+m_", re.IGNORECASE)
_PLATFORM_RE = re.compile(r"(?:^|[^A-Z0-9])(S1[A-D])(?:[^A-Z0-9]|$)", re.IGNORECASE)
_INCIDENCE_TOKENS = ("incidence_angle", "local_incidence_angle", "incidence", "lia", "theta")
_NETCDF_SUFFIXES = (".nc", ".nc4", ".netcdf")
_TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass(frozen=True)
class Backscatter:
    """What backscatter values are, and where that fact comes from.

    ``quantity`` is sigma0, gamma0, gamma0_T or beta0; ``units`` linear power or dB.
    """

    quantity: str
    units: str
    source: str


def backscatter(quantity: Any, units: Any, source: str, where: str) -> Backscatter:
    """Validate a stated quantity/units pair."""
    q = QUANTITIES.get(str(quantity).strip().lower()) if quantity is not None else None
    u = UNITS.get(str(units).strip().lower()) if units is not None else None
    if q is None or u is None:
        raise DataError(
            f"{where}: backscatter quantity {quantity!r} / units {units!r} not understood; "
            f"quantity is one of sigma0, gamma0, gamma0_T, beta0 and units linear or dB"
        )
    return Backscatter(q, u, source)


def stated_or_error(
    found: Backscatter | None, quantity: Any, units: Any, where: str
) -> Backscatter:
    """The product's own convention, else the caller's, else an error saying what to state."""
    if found is not None:
        if quantity is not None or units is not None:
            stated = backscatter(
                quantity or found.quantity, units or found.units, "user-stated", where
            )
            if (stated.quantity, stated.units) != (found.quantity, found.units):
                raise DataError(
                    f"{where}: the metadata says {found.quantity} in {found.units} "
                    f"({found.source}) but quantity={quantity!r}, units={units!r} was stated"
                )
        return found
    if quantity is None or units is None:
        missing = [n for n, v in (("quantity", quantity), ("units", units)) if v is None]
        raise DataError(
            f"{where}: the metadata does not say which backscatter it holds; state "
            f"{' and '.join(missing)} (e.g. quantity='sigma0', units='dB')"
        )
    return backscatter(quantity, units, "user-stated", where)


def to_sigma0_db(
    values: xr.DataArray,
    convention: Backscatter,
    incidence: xr.DataArray | float,
    nodata: float | None = None,
    to_sigma0: bool = True,
) -> xr.DataArray:
    """Backscatter in ``convention`` → σ0 in dB (float32).

    Nodata, NaN and (for linear power) values ≤ 0 become NaN.
    """
    v = values.astype(np.float64)
    invalid = ~np.isfinite(v)
    if nodata is not None and np.isfinite(nodata):
        invalid = invalid | (v == nodata)
    db: xr.DataArray
    if convention.units == "linear":
        invalid = invalid | (v <= 0)
        # numpy's stubs type a ufunc's result as ndarray; on a DataArray it is a DataArray
        db = cast(xr.DataArray, 10.0 * np.log10(v.where(~invalid)))
    else:
        db = v.where(~invalid)
    if to_sigma0 and convention.quantity != "sigma0":
        theta = np.deg2rad(incidence)
        factor = np.sin(theta) if convention.quantity == "beta0" else np.cos(theta)
        db = db + 10.0 * np.log10(factor)
    return db.astype(np.float32)


def conversion_note(conventions: Sequence[Backscatter], to_sigma0: bool) -> str:
    """A line for the cube attrs: what was read and how it became σ0 dB."""
    seen = sorted({(c.quantity, c.units, c.source) for c in conventions})
    read = "; ".join(f"{q} {u} ({s})" for q, u, s in seen)
    if not to_sigma0:
        return f"read {read}; kept as delivered (variables hold that quantity in dB, not σ0)"
    rules = []
    if any(c.quantity in ("gamma0", "gamma0_T") for c in conventions):
        rules.append("sigma0 = gamma0 * cos(incidence_angle)")
    if any(c.quantity == "gamma0_T" for c in conventions):
        rules.append("exact for ellipsoid gamma0, flat-terrain approximation for gamma0_T")
    if any(c.quantity == "beta0" for c in conventions):
        rules.append("sigma0 = beta0 * sin(incidence_angle)")
    return f"read {read}" + (f"; {', '.join(rules)}" if rules else "")


def relative_orbit_codes(
    times: np.ndarray, directions: Sequence[str], orbits: Sequence[int | None]
) -> tuple[np.ndarray, dict[str, str]]:
    """Relative orbit per acquisition, and attrs describing the codes.

    The real number where known, else ``-k`` for the k-th (direction, UTC time-of-day) slot of the
    unknown ones.
    """
    out = np.zeros(len(orbits), dtype=np.int16)
    unknown = [i for i, o in enumerate(orbits) if o is None]
    for i, o in enumerate(orbits):
        if o is not None:
            out[i] = int(o)
    attrs = {
        "long_name": "relative orbit number",
        "relative_orbit_known": "true" if not unknown else "false",
    }
    if not unknown:
        return out, attrs
    t = pd.DatetimeIndex(np.asarray(times)[unknown])
    seconds = (t - t.normalize()).total_seconds().to_numpy()
    slots: list[tuple[str, float, list[int]]] = []  # (direction, last second, members)
    order = sorted(range(len(unknown)), key=lambda j: (directions[unknown[j]], seconds[j]))
    for j in order:
        direction = directions[unknown[j]]
        if slots and slots[-1][0] == direction and seconds[j] - slots[-1][1] <= SLOT_TOLERANCE_S:
            slots[-1] = (direction, seconds[j], [*slots[-1][2], j])
        else:
            slots.append((direction, seconds[j], [j]))
    described = []
    for k, (direction, _, members) in enumerate(slots, start=1):
        for j in members:
            out[unknown[j]] = -k
        secs = seconds[members]
        lo, hi = (pd.Timedelta(seconds=float(s)) for s in (secs.min(), secs.max()))
        described.append(
            f"-{k}: {direction} passes at {_hhmmss(lo)}-{_hhmmss(hi)} UTC ({len(members)} dates)"
        )
    attrs["unknown_orbit_slots"] = "; ".join(described)
    attrs["unknown_orbit_encoding"] = (
        "orbit number not in the product: -k = k-th acquisition time slot (UTC time of day per "
        "orbit direction, one relative orbit per slot); values 1..175 are real orbit numbers"
    )
    return out, attrs


def _hhmmss(t: pd.Timedelta) -> str:
    total = round(t.total_seconds())
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def s1_cube(
    parts: Sequence[xr.Dataset],
    orbits: Sequence[int | None],
    attrs: dict[str, Any],
    crs: CRS,
) -> xr.Dataset:
    """Concatenate per-acquisition parts into the S1 contract cube, sorted by time.

    Each part holds VV, VH and incidence_angle on one grid, with per-time ``orbit_direction`` and
    ``platform``.
    """
    cube = xr.concat(
        list(parts), dim="time", data_vars="all", coords="minimal", compat="override", join="exact"
    )
    order = np.argsort(cube["time"].values, kind="stable")
    cube = cube.isel(time=order)
    orbits = [orbits[i] for i in order]
    directions = [str(d) for d in cube[S1_ORBIT_DIRECTION].values]
    codes, orbit_attrs = relative_orbit_codes(cube["time"].values, directions, orbits)
    cube[S1_RELATIVE_ORBIT] = ("time", codes)
    cube[S1_RELATIVE_ORBIT].attrs = orbit_attrs
    for pol in S1_POLARISATIONS:
        cube[pol].attrs = {"units": "dB", "long_name": f"{pol} backscatter sigma0"}
    cube[S1_INCIDENCE].attrs = {"units": "degree", "long_name": "incidence angle"}
    cube.attrs = {k: v for k, v in attrs.items() if v is not None}
    cube = cube.drop_vars("spatial_ref", errors="ignore")
    return cube.rio.write_crs(crs).rio.write_coordinate_system()


def incidence_layer(template: xr.DataArray, incidence_angle: Any, where: str) -> xr.DataArray:
    """A constant (user-stated) incidence angle shaped like ``template``."""
    if incidence_angle is None:
        raise DataError(
            f"{where}: no incidence angle in the product; state one with incidence_angle=<degrees> "
            "(e.g. the scene's mid-swath angle from the GRD annotation, ~30-46° for IW)"
        )
    try:
        theta = float(incidence_angle)
    except (TypeError, ValueError) as err:
        raise DataError(f"{where}: incidence_angle must be a number of degrees") from err
    if not 0.0 < theta < 90.0:
        raise DataError(f"{where}: incidence_angle={theta} is not an angle in (0, 90) degrees")
    return xr.full_like(template, theta, dtype=np.float32)


def check_direction(value: Any, where: str) -> str:
    direction = str(value).strip().lower()
    if direction not in S1_ORBIT_DIRECTIONS:
        raise DataError(
            f"{where}: orbit direction {value!r} is not one of {', '.join(S1_ORBIT_DIRECTIONS)}"
        )
    return direction


# ------------------------------------------------------------------------------ files


def read_s1_files(
    paths: PathLike | Sequence[PathLike],
    *,
    crs: Any = None,
    bbox: Sequence[float] | None = None,
    incidence_angle: float | None = None,
    resolution: float = 10.0,
    quantity: str | None = None,
    units: str | None = None,
    orbit_direction: str | None = None,
    relative_orbit: int | None = None,
    to_sigma0: bool = True,
) -> xr.Dataset:
    """Read S1 backscatter files into the S1 contract cube (eagerly; files are small).

    ``paths``: NetCDF files (``VV``/``VH`` variables over ``time`` or ``timestamp``; CF
    ``scale_factor``/``_FillValue`` applied by hand, so integer-packed dB works) and/or GeoTIFFs,
    one per acquisition and polarisation, whose names carry the date (``YYYYMMDD[THHMMSS]``)
    and ``VV``/``VH`` (an ``incidence``/``LIA`` file of the same date gives the angle); a folder
    is searched recursively. OPERA RTC-S1 names are recognised (γ0_T, linear, track = relative
    orbit, platform). Quantity/units come from the file (``units`` attribute or tag, OPERA and
    WorldCereal ``S1_GRD-<DIRECTION>_…nc`` conventions), else from ``quantity=``/``units=``;
    orbit direction from the file (variable, attribute or ``ASCENDING``/``DESCENDING`` in the
    name), else ``orbit_direction=``; an unknown relative orbit is coded by time slot (module
    doc). The incidence angle comes from the product, else ``incidence_angle=`` (degrees,
    recorded as user-stated). Everything is put on one grid: ``crs`` (default: the first
    file's), ``bbox`` in that CRS (default: the first file's bounds), ``resolution`` metres.
    """
    files = _s1_files(paths)
    where = ", ".join(str(f) for f in files[:3]) + (" …" if len(files) > 3 else "")
    sources: list[_Source] = []
    tiffs = [f for f in files if f.suffix.lower() in _TIFF_SUFFIXES]
    for f in files:
        if f.suffix.lower() in _NETCDF_SUFFIXES:
            sources.append(_read_netcdf(f))
    sources.extend(_read_tiffs(tiffs))
    first_crs = next((s.crs for s in sources if s.crs is not None), None)
    target = (
        projected_crs(crs if crs is not None else first_crs, where)
        if (crs is not None or first_crs is not None)
        else None
    )
    if target is None:
        raise DataError(f"{where}: no CRS in the files; pass crs='EPSG:…'")
    if bbox is None:
        first = sources[0]
        src_crs = first.crs or target
        bounds = first.data.rio.write_crs(src_crs).rio.transform_bounds(target)
        bbox = bounds
    gbox = output_geobox(bbox, target, resolution, None, where)
    parts, orbits, conventions = [], [], []
    user_incidence = False
    for src in sources:
        label = str(src.path)
        conv = stated_or_error(src.convention, quantity, units, label)
        conventions.append(conv)
        grid = _on_geobox(src, gbox, target, label, conv)
        n = grid.sizes["time"]
        if S1_INCIDENCE in grid:
            theta = grid[S1_INCIDENCE]
        else:
            theta = incidence_layer(grid["VV"], incidence_angle, label)
            user_incidence = True
        part = xr.Dataset(
            {pol: to_sigma0_db(grid[pol], conv, theta, None, to_sigma0) for pol in S1_POLARISATIONS}
        )
        part[S1_INCIDENCE] = theta.astype(np.float32)
        directions = src.directions or (
            [check_direction(orbit_direction, label)] * n if orbit_direction is not None else None
        )
        if directions is None:
            raise DataError(
                f"{label}: no orbit direction in the file (variable, attribute or ASCENDING/"
                "DESCENDING in the name); state orbit_direction='ascending' or 'descending'"
            )
        part[S1_ORBIT_DIRECTION] = ("time", np.asarray(directions, dtype=str))
        part = part.assign_coords({PLATFORM: ("time", np.asarray(src.platforms, dtype=str))})
        parts.append(part)
        own = src.orbits if src.orbits is not None else [relative_orbit] * n
        orbits.extend(own)
    attrs = {
        "source": [str(f) for f in files],
        "backscatter": conversion_note(conventions, to_sigma0),
        "incidence_angle_source": (
            f"user-stated: {float(incidence_angle)} degrees, constant"
            if user_incidence and incidence_angle is not None
            else "product layer"
        ),
    }
    if relative_orbit is not None:
        attrs["relative_orbit_source"] = f"user-stated: {relative_orbit}"
    return s1_cube(parts, orbits, attrs, target)


@dataclass
class _Source:
    path: Path
    data: xr.Dataset  # VV, VH (and incidence_angle) over (time, y, x), values as stored
    crs: CRS | None
    convention: Backscatter | None
    directions: list[str] | None
    orbits: list[int | None] | None
    platforms: list[str]


def _s1_files(paths: PathLike | Sequence[PathLike]) -> list[Path]:
    given = [Path(paths)] if isinstance(paths, str | os.PathLike) else [Path(p) for p in paths]
    if not given:
        raise DataError("read_s1_files: no file given")
    files: list[Path] = []
    for p in given:
        if not p.exists():
            raise DataError(f"{p}: not found")
        if p.is_dir():
            found = sorted(
                f for f in p.rglob("*") if f.suffix.lower() in (*_NETCDF_SUFFIXES, *_TIFF_SUFFIXES)
            )
            if not found:
                raise DataError(f"{p}: no NetCDF or GeoTIFF files found")
            files.extend(found)
        elif p.suffix.lower() in (*_NETCDF_SUFFIXES, *_TIFF_SUFFIXES):
            files.append(p)
        else:
            raise DataError(f"{p}: unknown S1 file format; expected NetCDF (.nc) or GeoTIFF (.tif)")
    return files


def _units_attr(attrs: dict) -> str | None:
    value = attrs.get("units") or attrs.get("unit")
    return UNITS.get(str(value).strip().lower()) if value is not None else None


def quantity_in_text(text: str) -> str | None:
    low = text.lower()
    if "gamma0_t" in low or "terrain-flattened" in low or "terrain flattened" in low:
        return "gamma0_T"
    for key, names in (
        ("sigma0", ("sigma0", "sigma nought", "sigma naught", "σ0")),
        ("gamma0", ("gamma0", "gamma nought", "gamma naught", "γ0")),
        ("beta0", ("beta0", "beta nought", "beta naught", "β0")),
    ):
        if any(n in low for n in names):
            return key
    return None


def _read_netcdf(path: Path) -> _Source:
    try:
        # packed ints: decoding by hand keeps the _FillValue test on the stored integers
        with warnings.catch_warnings():
            # some files put a free-text 'bounds' attribute that xarray takes for CF bounds
            warnings.filterwarnings("ignore", message=".*referenced in bounds.*")
            raw = xr.open_dataset(path, mask_and_scale=False, decode_coords="all").load()
    except Exception as err:  # netCDF/HDF5 raise many types for unreadable files
        raise DataError(f"{path}: cannot read: {type(err).__name__}: {err}") from err
    if "time" not in raw.dims:
        tdim = next((d for d in ("timestamp", "t", "date") if d in raw.dims), None)
        if tdim is None:
            raise DataError(f"{path}: no time dimension (dims: {', '.join(map(str, raw.dims))})")
        raw = raw.rename({tdim: "time"})
    by_lower = {str(n).lower(): n for n in raw.data_vars}
    data = {}
    for pol in S1_POLARISATIONS:
        name = by_lower.get(pol.lower()) or by_lower.get(f"sigma0_{pol.lower()}")
        if name is None:
            raise DataError(f"{path}: no {pol} variable (variables: {list(raw.data_vars)})")
        data[pol] = unpack(raw[name]).reset_coords(drop=True)
    inc = next((by_lower[t] for t in _INCIDENCE_TOKENS if t in by_lower), None)
    if inc is not None:
        data[S1_INCIDENCE] = unpack(raw[inc]).reset_coords(drop=True)
    ds = xr.Dataset(data).transpose("time", "y", "x")
    crs = raw.rio.crs
    if crs is None and raw.attrs.get("epsg"):
        crs = CRS.from_epsg(int(raw.attrs["epsg"]))
    n = ds.sizes["time"]
    vv = raw[by_lower.get("vv") or by_lower["sigma0_vv"]]
    convention = None
    units = _units_attr(vv.attrs)
    quantity = quantity_in_text(
        " ".join(str(vv.attrs.get(k, "")) for k in ("long_name", "standard_name"))
    )
    if units and quantity:
        convention = Backscatter(quantity, units, f"{path.name}: variable attributes")
    worldcereal = _WORLDCEREAL_RE.match(path.name)
    if convention is None and worldcereal and "location_id" in raw.attrs:
        convention = Backscatter(
            "sigma0",
            "dB",
            "WorldCereal S1_GRD extraction (Earth Engine COPERNICUS/S1_GRD: sigma0 in dB, "
            "stored as int32 x 1e-4)",
        )
    directions = None
    for name in ("orbit_direction", "orbit_state", "sat:orbit_state"):
        if name in raw.variables and raw[name].dims == ("time",):
            directions = [check_direction(v, str(path)) for v in raw[name].values]
            break
        if name in raw.attrs:
            directions = [check_direction(raw.attrs[name], str(path))] * n
            break
    if directions is None:
        token = re.search(r"(ASCENDING|DESCENDING)", path.name, re.IGNORECASE)
        if token:
            directions = [token.group(1).lower()] * n
    orbits: list[int | None] | None = None
    for name in ("relative_orbit", "sat:relative_orbit", "relative_orbit_number"):
        if name in raw.variables and raw[name].dims == ("time",):
            orbits = [int(v) for v in raw[name].values]
        elif name in raw.attrs:
            orbits = [int(raw.attrs[name])] * n
    platform = _platform(path.name, raw.attrs)
    ds = ds.assign_coords(time=pd.DatetimeIndex(raw["time"].values).as_unit("ns").values)
    return _Source(path, ds, crs, convention, directions, orbits, [platform] * n)


def _platform(name: str, attrs: dict | None = None) -> str:
    for text in (name, *(str(v) for k, v in (attrs or {}).items() if "platform" in k.lower())):
        match = _PLATFORM_RE.search(text)
        if match:
            return match.group(1).upper()
        match = re.search(r"sentinel[-_ ]?1([a-d])", text, re.IGNORECASE)
        if match:
            return f"S1{match.group(1).upper()}"
    return "unknown"


def _read_tiffs(files: list[Path]) -> list[_Source]:
    """GeoTIFFs grouped by acquisition (date token) into one source each."""
    groups: dict[pd.Timestamp, dict[str, Path]] = {}
    for f in files:
        opera = _OPERA_RE.search(f.name)
        stamp = opera.group(2) if opera else None
        match = _DATE_RE.search(stamp or f.name)
        if not match:
            raise DataError(f"{f}: no acquisition date (YYYYMMDD[THHMMSS]) in the file name")
        y, m, d, hh, mm, ss = (int(g) if g else 0 for g in match.groups())
        time = pd.Timestamp(y, m, d, hh, mm, ss)
        tokens = [t.lower() for t in re.split(r"[^A-Za-z0-9]+", f.stem)]
        low = f.stem.lower()
        if any(t in low for t in _INCIDENCE_TOKENS if len(t) > 5) or "lia" in tokens:
            role = S1_INCIDENCE
        elif "vv" in tokens:
            role = "VV"
        elif "vh" in tokens:
            role = "VH"
        else:
            raise DataError(f"{f}: no polarisation (VV/VH) or incidence token in the file name")
        if role in groups.setdefault(time, {}):
            raise DataError(f"{f}: two {role} files for {time} ({groups[time][role]})")
        groups[time][role] = f
    sources = []
    for time, roles in sorted(groups.items()):
        missing = [p for p in S1_POLARISATIONS if p not in roles]
        if missing:
            raise DataError(f"{next(iter(roles.values()))}: no {'/'.join(missing)} file for {time}")
        layers = {role: _open_tiff(path) for role, path in roles.items()}
        vv_path = roles["VV"]
        convention = _tiff_convention(vv_path, layers["VV"])
        crs = layers["VV"].rio.crs
        data = {}
        for role, da in layers.items():
            if da.rio.crs != crs or da.shape != layers["VV"].shape:
                da = da.rio.reproject_match(layers["VV"], resampling=Resampling.nearest)
            data[role] = da.drop_vars("spatial_ref", errors="ignore").expand_dims(time=[time])
        ds = xr.Dataset(data)
        ds = ds.assign_coords(x=layers["VV"]["x"].values, y=layers["VV"]["y"].values)
        opera = _OPERA_RE.search(vv_path.name)
        orbit = int(opera.group(1)) if opera else _tag_int(layers["VV"].attrs, "relative_orbit")
        tags = " ".join(f"{k}={v}" for k, v in layers["VV"].attrs.items())
        token = re.search(r"(ascending|descending)", f"{vv_path.name} {tags}", re.IGNORECASE)
        directions = [token.group(1).lower()] if token else None
        sources.append(
            _Source(
                vv_path,
                ds,
                CRS.from_user_input(crs) if crs is not None else None,
                convention,
                directions,
                [orbit] if orbit is not None else None,
                [_platform(vv_path.name, layers["VV"].attrs)],
            )
        )
    return sources


def _tag_int(attrs: dict, key: str) -> int | None:
    for k, v in attrs.items():
        if k.lower() == key:
            try:
                return int(v)
            except (TypeError, ValueError):
                return None
    return None


def _open_tiff(path: Path) -> xr.DataArray:
    try:
        opened = rioxarray.open_rasterio(path, mask_and_scale=True)
        if not isinstance(opened, xr.DataArray):
            raise TypeError(f"expected a single raster, got {type(opened).__name__}")
        with opened as da:
            return da.isel(band=0, drop=True).load()
    except Exception as err:  # rasterio raises several types for unreadable files
        raise DataError(f"{path}: cannot read GeoTIFF: {type(err).__name__}: {err}") from err


def _tiff_convention(path: Path, da: xr.DataArray) -> Backscatter | None:
    if _OPERA_RE.search(path.name):
        return Backscatter(
            "gamma0_T", "linear", "OPERA RTC-S1 product specification (gamma0 RTC, linear power)"
        )
    text = " ".join(f"{k} {v}" for k, v in da.attrs.items()) + " " + path.stem.replace("_", " ")
    units = _units_attr({k.lower(): v for k, v in da.attrs.items()})
    if units is None:
        tokens = [t.lower() for t in re.split(r"[^A-Za-z0-9]+", path.stem)]
        units = "dB" if "db" in tokens else ("linear" if "linear" in tokens else None)
    quantity = quantity_in_text(text)
    if units and quantity:
        return Backscatter(quantity, units, f"{path.name}: tags/name")
    return None


def _on_geobox(
    src: _Source, gbox: GeoBox, target: CRS, label: str, conv: Backscatter
) -> xr.Dataset:
    """Source layers on the output grid.

    Backscatter is resampled in linear power (nearest when upsampling, average when downsampling),
    the incidence angle likewise.
    """
    own_crs = src.crs or target
    data = src.data
    if conv.units == "dB":  # average in power, not in dB
        lin = {p: 10.0 ** (data[p] / 10.0) for p in S1_POLARISATIONS}
    else:
        lin = {p: data[p].where(data[p] > 0) for p in S1_POLARISATIONS}
    if S1_INCIDENCE in data:
        lin[S1_INCIDENCE] = data[S1_INCIDENCE]
    src_res = float(abs(data.rio.write_crs(own_crs).rio.resolution()[0]))
    method = Resampling.average if src_res < gbox.resolution.x - 1e-9 else Resampling.nearest
    out = {}
    ny, nx = gbox.shape
    for name, da in lin.items():
        da = da.astype(np.float32).rio.write_crs(own_crs).rio.write_nodata(np.nan, encoded=False)
        res = da.rio.reproject(target, shape=(ny, nx), transform=gbox.transform, resampling=method)
        out[name] = res.assign_coords(
            x=gbox.coords["x"].values, y=gbox.coords["y"].values
        ).drop_vars("spatial_ref", errors="ignore")
    grid = xr.Dataset(out)
    if bool(np.isnan(grid["VV"].values).all()):
        raise DataError(
            f"{label}: no data inside the requested bbox {tuple(gbox.extent.boundingbox)}"
        )
    if conv.units == "dB":
        for p in S1_POLARISATIONS:
            grid[p] = 10.0 * np.log10(grid[p])
    return grid
