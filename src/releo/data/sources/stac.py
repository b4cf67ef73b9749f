"""STAC ItemCollections → S2 and S1 contract cubes, loaded lazily with odc-stac.

Conventions recognised (asset keys, offsets, angles) are those of Earth Search v1
(``sentinel-2-l2a``), Microsoft Planetary Computer (``sentinel-2-l2a``, ``sentinel-1-rtc``),
Copernicus Data Space (``B02_10m``… keys, ``processing:version``) and OPERA RTC-S1. Every
fact that changes a value (reflectance offset, backscatter quantity and units, angles, orbit)
comes from the item's metadata; when it is missing the reader raises a :class:`DataError`
naming the item and what is missing, instead of guessing.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from typing import Any, Literal

import fsspec
import numpy as np
import odc.stac
import pystac
import xarray as xr
from odc.geo.geobox import GeoBox
from pyproj import CRS

from releo.data.contracts import (
    MASK_NODATA,
    PLATFORM,
    S1_INCIDENCE,
    S1_ORBIT_DIRECTION,
    S1_POLARISATIONS,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
)
from releo.data.errors import DataError
from releo.data.readers import SCL_TO_MASK, relative_azimuth
from releo.data.sources import _angles
from releo.data.sources._stac_common import (
    DEFAULT_CHUNKS,
    Items,
    Period,
    group_times,
    item_datetime,
    load_items,
    output_geobox,
    platform_of,
    projected_crs,
    select_items,
    solar_day_groups,
)
from releo.data.sources.s1 import (
    UNITS,
    Backscatter,
    check_direction,
    conversion_note,
    incidence_layer,
    quantity_in_text,
    s1_cube,
    stated_or_error,
    to_sigma0_db,
)

__all__ = ["boa_offset", "read_stac_s1", "read_stac_s2"]

S2_ASSET_KEYS: dict[str, tuple[str, ...]] = {
    "B02": ("blue", "B02", "B02_10m"),
    "B03": ("green", "B03", "B03_10m"),
    "B04": ("red", "B04", "B04_10m"),
    "B05": ("rededge1", "B05", "B05_20m"),
    "B06": ("rededge2", "B06", "B06_20m"),
    "B07": ("rededge3", "B07", "B07_20m"),
    "B08": ("nir", "B08", "B08_10m"),
    "B8A": ("nir08", "B8A", "B8A_20m"),
    "B11": ("swir16", "B11", "B11_20m"),
    "B12": ("swir22", "B12", "B12_20m"),
    "SCL": ("scl", "SCL", "SCL_20m"),
}
"""Asset keys of each contract band: Earth Search v1, Planetary Computer, Copernicus Data Space
(native resolution). The ``*-jp2`` Earth Search assets are never used: they are the ESA
originals, to which ``boa_offset_applied`` does not refer."""
_NATIVE_M = {b: 10.0 if b in ("B02", "B03", "B04", "B08") else 20.0 for b in (*S2_BANDS, "SCL")}
QUANTIFICATION = 10000.0
"""L2A BOA_QUANTIFICATION_VALUE (all baselines)."""
ESA_BOA_ADD_OFFSET = -1000.0
"""L2A BOA_ADD_OFFSET of every band from baseline 04.00 on."""
_GRANULE_KEYS = ("granule_metadata", "granule-metadata", "granule_metadata_xml", "MTD_TL")
_BASELINE_RE = re.compile(r"_N(\d{2})(\d{2})_")


# ----------------------------------------------------------------------------------- S2


def boa_offset(item: pystac.Item) -> tuple[float, str]:
    """BOA offset (DN) to add before dividing by 10000, and why, from the item's metadata.

    Earth Search: ``earthsearch:boa_offset_applied`` (or ``sentinel:boa_offset_applied``)
    true ⇒ 0; false ⇒ −1000 from baseline 04.00 on. Items without the flag (Planetary
    Computer, Copernicus Data Space) hold the ESA DNs: −1000 from baseline 04.00 on. Baseline
    < 04.00 ⇒ 0. The ``raster:bands`` offset is ignored (−0.1 even where the flag is true).
    """
    props = item.properties
    baseline = processing_baseline(item)
    flag_key = next(
        (
            k
            for k in ("earthsearch:boa_offset_applied", "sentinel:boa_offset_applied")
            if k in props
        ),
        None,
    )
    flag = props.get(flag_key) if flag_key else None
    if flag_key is not None and not isinstance(flag, bool):
        raise DataError(f"item {item.id}: {flag_key}={flag!r} is not true/false")
    if flag is True:
        return 0.0, f"{flag_key}=true: offset already in the pixels"
    if baseline < 4.0:
        return 0.0, f"baseline {baseline:05.2f} < 04.00: no offset"
    if flag is False:
        return ESA_BOA_ADD_OFFSET, f"baseline {baseline:05.2f}, {flag_key}=false"
    if _is_earth_search(item):
        raise DataError(
            f"item {item.id}: Earth Search item with baseline {baseline:05.2f} but no "
            "earthsearch:boa_offset_applied flag: cannot tell whether -1000 is in the pixels"
        )
    return ESA_BOA_ADD_OFFSET, f"baseline {baseline:05.2f} >= 04.00, ESA pixels (no harmonisation)"


def processing_baseline(item: pystac.Item) -> float:
    """Processing baseline of an S2 item as a number, e.g. 4.0 for "04.00".

    Read from ``s2:processing_baseline``, else ``processing:version``, else ``N0xxx`` in the product
    name.
    """
    props = item.properties
    for key in ("s2:processing_baseline", "processing:version", "sentinel2:processing_baseline"):
        if props.get(key) not in (None, ""):
            try:
                return float(props[key])
            except (TypeError, ValueError) as err:
                raise DataError(f"item {item.id}: unreadable {key}={props[key]!r}") from err
    for text in (props.get("s2:product_uri"), props.get("sentinel:product_id"), item.id):
        match = _BASELINE_RE.search(str(text or ""))
        if match:
            return int(match.group(1)) + int(match.group(2)) / 100.0
    raise DataError(
        f"item {item.id}: no processing baseline (s2:processing_baseline, processing:version or "
        "N0xxx in s2:product_uri); the reflectance offset (-1000 from baseline 04.00) depends on it"
    )


def _is_earth_search(item: pystac.Item) -> bool:
    if any(k.startswith(("earthsearch:", "sentinel:")) for k in item.properties):
        return True
    return any("sentinel-cogs" in a.href for a in item.assets.values())


def _asset_key(item: pystac.Item, candidates: Sequence[str]) -> str | None:
    by_lower = {k.lower(): k for k in item.assets}
    return next((by_lower[c.lower()] for c in candidates if c.lower() in by_lower), None)


def _s2_keys(item: pystac.Item) -> tuple[tuple[str, str], ...]:
    out, missing = [], []
    for band, candidates in S2_ASSET_KEYS.items():
        key = _asset_key(item, candidates)
        if key is None:
            missing.append(band)
        else:
            out.append((band, key))
    if missing:
        raise DataError(
            f"item {item.id}: no asset for {', '.join(missing)} (looked for "
            f"{', '.join(S2_ASSET_KEYS[missing[0]])}…; the item has {', '.join(item.assets)})"
        )
    return tuple(out)


def read_stac_s2(
    items: Items,
    *,
    bbox: Sequence[float],
    crs: Any,
    period: Period = None,
    resolution: float = 10.0,
    bbox_crs: Any = None,
    chunks: dict[str, int] | None = None,
    patch_url: Callable[[str], str] | None = None,
    angles_from_metadata: bool = True,
) -> xr.Dataset:
    """Sentinel-2 L2A STAC items → the S2 contract cube (lazy, dask-backed).

    ``items``: a STAC ItemCollection JSON file (FeatureCollection, JSON list of items, a saved
    pystac-client search), a :class:`pystac.ItemCollection` or a list of items. ``bbox``
    (xmin, ymin, xmax, ymax) is in ``crs`` (or ``bbox_crs``, e.g. "EPSG:4326") and is snapped
    to a ``resolution`` grid in ``crs`` (projected). Items outside the bbox or ``period``
    (start, end) are dropped; items of one solar day are mosaicked (odc-stac
    ``groupby="solar_day"``). Reflectance = (DN + offset) / 10000 with the offset from
    :func:`boa_offset` per item; DN 0 is no data (NaN, mask 3). SCL gives the mask
    (:data:`releo.data.readers.SCL_TO_MASK`). Angles come from the item properties
    (``view:sun_elevation``/``view:sun_azimuth``, ``s2:mean_solar_zenith``/``_azimuth``,
    ``view:incidence_angle``/``view:azimuth``); those missing there are read from the item's
    granule metadata (MTD_TL.xml) sampled over the bbox when ``angles_from_metadata``.
    ``patch_url`` signs/edits asset URLs (e.g. ``planetary_computer.sign``).
    """
    all_items, source = load_items(items)
    target = projected_crs(crs, source)
    gbox = output_geobox(bbox, target, resolution, bbox_crs, source)
    chosen = select_items(all_items, gbox, period, source)
    groups = solar_day_groups(chosen, gbox)

    # Items differ in asset keys (provider) and offset: load each kind separately, then fuse.
    kinds: dict[tuple, list[pystac.Item]] = {}
    notes = []
    for item in chosen:
        offset, why = boa_offset(item)
        notes.append(f"{item.id}: {offset:+g} ({why})")
        kinds.setdefault((_s2_keys(item), offset), []).append(item)
    layers = []
    for (keys, offset), kind_items in kinds.items():
        layers.append(_load_s2_kind(kind_items, keys, offset, gbox, chunks, patch_url))
    cube = layers[0] if len(layers) == 1 else _fuse_days(layers, groups, gbox)
    cube = cube.assign_coords(time=group_times(groups))

    angles = [_group_angles(g, gbox, angles_from_metadata, patch_url) for g in groups]
    for name in S2_ANGLES:
        cube[name] = ("time", np.array([a[name] for a in angles], dtype=np.float32))
        cube[name].attrs = {"units": "degree"}
    platforms = [platform_of(g[0], "2") for g in groups]
    cube = cube.assign_coords({PLATFORM: ("time", np.array(platforms, dtype=str))})
    for band in S2_BANDS:
        cube[band].attrs = {"long_name": f"{band} bottom-of-atmosphere reflectance", "units": "1"}
    cube[S2_MASK].attrs = {"long_name": "0 clear, 1 cloud, 2 shadow, 3 no data"}
    cube.attrs = {
        "source": source,
        "items": [";".join(i.id for i in g) for g in groups],
        "reflectance": "(DN + boa_offset) / 10000 per item; DN 0 = no data",
        "boa_offsets": "; ".join(notes),
        "angle_sources": "; ".join(a["source"] for a in angles),
    }
    return _with_crs(cube, target)


def _with_crs(cube: xr.Dataset, crs: CRS) -> xr.Dataset:
    cube = cube.drop_vars("spatial_ref", errors="ignore")
    return cube.rio.write_crs(crs).rio.write_coordinate_system()


def _load_s2_kind(
    items: list[pystac.Item],
    keys: tuple[tuple[str, str], ...],
    offset: float,
    gbox: GeoBox,
    chunks: dict[str, int] | None,
    patch_url: Callable[[str], str] | None,
) -> xr.Dataset:
    """One kind of items (same keys and offset): reflectance (NaN = no data) and mask."""
    res = float(gbox.resolution.x)
    resampling = {
        key: ("average" if band != "SCL" and res > _NATIVE_M[band] else "nearest")
        for band, key in keys
    }
    try:
        raw = odc.stac.load(
            items,
            bands=[key for _, key in keys],
            geobox=gbox,
            groupby="solar_day",
            chunks=_load_chunks(chunks),
            dtype="uint16",  # SCL too: odc-stac takes one dtype for all bands when chunked
            nodata=0,
            resampling=resampling,
            patch_url=patch_url,
        )
    except Exception as err:  # odc-stac raises ValueError/KeyError/… on inconsistent items
        raise DataError(
            f"items {', '.join(i.id for i in items[:3])}: odc-stac cannot load them: "
            f"{type(err).__name__}: {err}"
        ) from err
    names = {key: band for band, key in keys}
    raw = raw.rename(names)
    ds = xr.Dataset(coords={"time": raw["time"], "y": raw["y"], "x": raw["x"]})
    nodata = None
    for band in S2_BANDS:
        dn = raw[band]
        valid = dn != 0
        refl = (dn.astype(np.float32) + np.float32(offset)) / np.float32(QUANTIFICATION)
        ds[band] = refl.where(valid).astype(np.float32)
        nodata = ~valid if nodata is None else nodata | ~valid
    lut = np.full(65536, MASK_NODATA, dtype=np.uint8)  # any code outside SCL_TO_MASK: no data
    for code, mask in SCL_TO_MASK.items():
        lut[code] = mask
    mask = xr.apply_ufunc(
        lambda scl: lut[scl], raw["SCL"], dask="parallelized", output_dtypes=[np.uint8]
    )
    ds[S2_MASK] = xr.where(nodata, np.uint8(MASK_NODATA), mask).astype(np.uint8)
    return ds


def _fuse_days(
    layers: list[xr.Dataset], groups: list[list[pystac.Item]], gbox: GeoBox
) -> xr.Dataset:
    """Several kinds of items on one solar day: the first valid pixel wins, as odc-stac fuses."""
    # Each layer's time slices are that kind's solar days in order; map them to the groups.
    days = [solar_day_of(g[0], gbox) for g in groups]
    slices = []
    for day in days:
        parts = []
        for layer in layers:
            layer_days = [solar_day_of_time(t, gbox) for t in layer["time"].values]
            if day in layer_days:
                parts.append(layer.isel(time=[layer_days.index(day)]).drop_vars("time"))
        merged = parts[0]
        for part in parts[1:]:
            bands = merged[list(S2_BANDS)].fillna(part[list(S2_BANDS)])
            mask = xr.where(merged[S2_MASK] == MASK_NODATA, part[S2_MASK], merged[S2_MASK])
            merged = bands.assign({S2_MASK: mask.astype(np.uint8)})
        slices.append(merged)
    return xr.concat(slices, dim="time")


def solar_day_of(item: pystac.Item, gbox: GeoBox) -> Any:
    return solar_day_of_time(np.datetime64(item_datetime(item).to_datetime64()), gbox)


def solar_day_of_time(time: Any, gbox: GeoBox) -> Any:
    ((lon, _),) = gbox.extent.centroid.to_crs("EPSG:4326").points
    shift = np.timedelta64(round(lon * 240.0 * 1e9), "ns")  # 240 s per degree
    return (np.datetime64(time, "ns") + shift).astype("datetime64[D]")


# ------------------------------------------------------------------------------- S2 angles


def _group_angles(
    group: list[pystac.Item],
    gbox: GeoBox,
    from_metadata: bool,
    patch_url: Callable[[str], str] | None,
) -> dict[str, Any]:
    """Mean angles of the items of one day (azimuths on the circle)."""
    per_item = [_item_angles(item, gbox, from_metadata, patch_url) for item in group]
    sun_az = _angles.circular_mean(a["sun_azimuth"] for a in per_item)
    view_az = _angles.circular_mean(a["view_azimuth"] for a in per_item)
    return {
        "sun_zenith": float(np.mean([a["sun_zenith"] for a in per_item])),
        "view_zenith": float(np.mean([a["view_zenith"] for a in per_item])),
        "relative_azimuth": float(relative_azimuth(sun_az, view_az)),
        "source": "; ".join(
            f"{item.id}: {a['source']}" for item, a in zip(group, per_item, strict=True)
        ),
    }


def _item_angles(
    item: pystac.Item,
    gbox: GeoBox,
    from_metadata: bool,
    patch_url: Callable[[str], str] | None,
) -> dict[str, Any]:
    p = item.properties
    found: dict[str, float] = {}
    if p.get("view:sun_elevation") is not None:
        found["sun_zenith"] = 90.0 - float(p["view:sun_elevation"])
    elif p.get("s2:mean_solar_zenith") is not None:
        found["sun_zenith"] = float(p["s2:mean_solar_zenith"])
    for name, keys in (
        ("sun_azimuth", ("view:sun_azimuth", "s2:mean_solar_azimuth")),
        ("view_zenith", ("view:incidence_angle",)),
        ("view_azimuth", ("view:azimuth",)),
    ):
        key = next((k for k in keys if p.get(k) is not None), None)
        if key is not None:
            found[name] = float(p[key])
    needed = ("sun_zenith", "sun_azimuth", "view_zenith", "view_azimuth")
    source = "item properties"
    missing = [n for n in needed if n not in found]
    if missing and from_metadata:
        href = _granule_href(item)
        if href is not None:
            xml = _granule_angles(item, href, gbox, patch_url)
            for name in missing:
                found[name] = xml[name]
            source = f"item properties + granule metadata ({', '.join(missing)})"
    missing = [n for n in needed if n not in found or not np.isfinite(found[n])]
    if missing:
        raise DataError(
            f"item {item.id}: no {', '.join(missing)} in its properties (view:sun_elevation, "
            "view:sun_azimuth, view:incidence_angle, view:azimuth, s2:mean_solar_zenith/azimuth)"
            + (
                " nor a granule metadata asset (MTD_TL.xml)"
                if from_metadata
                else " (angles_from_metadata=False)"
            )
        )
    found["source"] = source  # type: ignore[assignment]
    return found


def _granule_href(item: pystac.Item) -> str | None:
    key = _asset_key(item, _GRANULE_KEYS)
    if key is not None:
        return item.assets[key].href
    return next(
        (a.href for a in item.assets.values() if a.href.rsplit("/", 1)[-1] == "MTD_TL.xml"), None
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _granule_angles(
    item: pystac.Item, href: str, gbox: GeoBox, patch_url: Callable[[str], str] | None
) -> dict[str, float]:
    """Sun and view angles of a granule (MTD_TL.xml) sampled over the output grid's extent."""
    url = patch_url(href) if patch_url is not None else href
    try:
        with fsspec.open(url, "rb") as f:
            root = ET.parse(f).getroot()
    except Exception as err:  # fsspec/http/XML raise many types
        raise DataError(
            f"item {item.id}: cannot read its granule metadata {href}: {type(err).__name__}: {err}"
        ) from err
    nodes = {_local(e.tag): e for e in root.iter()}
    try:
        code = next(e.text for e in root.iter() if _local(e.tag) == "HORIZONTAL_CS_CODE")
        position = next(
            e for e in root.iter() if _local(e.tag) == "Geoposition" and e.get("resolution") == "10"
        )
        ulx = _child_float(position, "ULX")
        uly = _child_float(position, "ULY")
        sun = _grid(nodes["Sun_Angles_Grid"], ulx, uly)
        views = [
            _grid(e, ulx, uly)
            for e in root.iter()
            if _local(e.tag) == "Viewing_Incidence_Angles_Grids"
        ]
    except (StopIteration, KeyError, ValueError, TypeError) as err:
        raise DataError(f"item {item.id}: unreadable angle grids in {href}: {err}") from err
    bounds = gbox.extent.to_crs(CRS.from_user_input(code)).boundingbox
    box = (bounds.left, bounds.bottom, bounds.right, bounds.top)
    sun_zenith, sun_azimuth = sun.sample(box)
    view_zenith, view_azimuth = _angles.merge_grids(views).sample(box) if views else (np.nan,) * 2
    return {
        "sun_zenith": sun_zenith,
        "sun_azimuth": sun_azimuth,
        "view_zenith": view_zenith,
        "view_azimuth": view_azimuth,
    }


def _load_chunks(chunks: dict[str, int] | None) -> dict[str, int | Literal["auto"]]:
    """``chunks`` (default ``DEFAULT_CHUNKS``) as the dict type ``odc.stac.load`` declares."""
    return dict(chunks or DEFAULT_CHUNKS)


def _child_float(parent: ET.Element, tag: str) -> float:
    """The number in the first child ``tag`` of ``parent`` (StopIteration if there is none)."""
    text = next(c.text for c in parent if _local(c.tag) == tag)
    if text is None:
        raise ValueError(f"<{tag}> is empty")
    return float(text)


def _grid(element: ET.Element, ulx: float, uly: float) -> _angles.AngleGrid:
    parts = {}
    for child in element:
        name = _local(child.tag)
        if name in ("Zenith", "Azimuth"):
            fields = {_local(c.tag): c for c in child}
            rows = [v.text for v in fields["Values_List"]]
            parts[name] = (
                _angles.parse_values(rows),
                float(fields["COL_STEP"].text or "nan"),
                float(fields["ROW_STEP"].text or "nan"),
            )
    zenith, col_step, row_step = parts["Zenith"]
    return _angles.AngleGrid(zenith, parts["Azimuth"][0], ulx, uly, col_step, row_step)


# ----------------------------------------------------------------------------------- S1

_S1_INCIDENCE_KEYS = ("incidence_angle", "local_incidence_angle", "incidence", "lia")


def _s1_convention(item: pystac.Item, key: str) -> Backscatter | None:
    """Quantity/units of an item's backscatter assets from its metadata, if it says."""
    collection = str(item.collection_id or "")
    if collection == "sentinel-1-rtc":
        return Backscatter(
            "gamma0_T",
            "linear",
            "Planetary Computer sentinel-1-rtc: terrain-flattened gamma0, linear power",
        )
    if "OPERA_L2_RTC-S1" in f"{collection} {item.id}".upper():
        return Backscatter(
            "gamma0_T", "linear", "OPERA RTC-S1 product specification (gamma0 RTC, linear power)"
        )
    asset = item.assets[key]
    bands = asset.extra_fields.get("raster:bands") or [{}]
    unit = bands[0].get("unit") if isinstance(bands[0], dict) else None
    text = f"{asset.title or ''} {asset.description or ''}".lower()
    units = UNITS.get(str(unit).lower()) if unit else None
    if units is None and "linear" in text:
        units = "linear"
    quantity = quantity_in_text(text)
    if quantity and units:
        return Backscatter(quantity, units, f"asset {key!r} raster:bands unit / description")
    return None


def _opera_track(item: pystac.Item) -> int | None:
    match = re.search(r"OPERA_L2_RTC-S1_T(\d{3})-", item.id, re.IGNORECASE)
    return int(match.group(1)) if match else None


def read_stac_s1(
    items: Items,
    *,
    bbox: Sequence[float],
    crs: Any,
    period: Period = None,
    resolution: float = 10.0,
    incidence_angle: float | None = None,
    bbox_crs: Any = None,
    chunks: dict[str, int] | None = None,
    patch_url: Callable[[str], str] | None = None,
    quantity: str | None = None,
    units: str | None = None,
    to_sigma0: bool = True,
) -> xr.Dataset:
    """Sentinel-1 backscatter STAC items → the S1 contract cube (lazy, dask-backed).

    Items: Planetary Computer ``sentinel-1-rtc``, OPERA RTC-S1, or σ0/γ0 GeoTIFFs described by
    STAC (assets ``vv``/``vh``, optional ``incidence_angle``/``local_incidence_angle``).
    Grid, ``period`` and ``bbox`` as in :func:`read_stac_s2`; slices of one pass (same solar day,
    orbit direction and relative orbit) are mosaicked. Quantity and units come from the
    metadata (PC rtc and OPERA: γ0 terrain-flattened, linear power; else the asset's
    ``raster:bands`` unit and title/description), else from ``quantity=``/``units=``. Nodata
    (the asset's ``nodata``, e.g. −32768, and NaN, and ≤ 0 in linear power) becomes NaN.
    The incidence angle comes from an angle asset, else ``incidence_angle=`` (degrees,
    constant, recorded as user-stated), else an error. Orbit direction from
    ``sat:orbit_state``, relative orbit from ``sat:relative_orbit`` (OPERA: the track in the
    id); an unknown orbit is coded by time slot (see :mod:`releo.data.sources.s1`).
    """
    all_items, source = load_items(items)
    target = projected_crs(crs, source)
    gbox = output_geobox(bbox, target, resolution, bbox_crs, source)
    chosen = select_items(all_items, gbox, period, source)

    kinds: dict[tuple, list[pystac.Item]] = {}
    conventions = []
    for item in chosen:
        pol_keys = []
        for pol in S1_POLARISATIONS:
            key = _asset_key(item, (pol.lower(), pol))
            if key is None:
                raise DataError(
                    f"item {item.id}: no {pol} asset (the item has {', '.join(item.assets)}); "
                    "the S1 contract needs both VV and VH"
                )
            pol_keys.append(key)
        inc_key = _asset_key(item, _S1_INCIDENCE_KEYS)
        conv = stated_or_error(
            _s1_convention(item, pol_keys[0]), quantity, units, f"item {item.id}"
        )
        conventions.append(conv)
        direction = item.properties.get("sat:orbit_state")
        if direction is None:
            raise DataError(f"item {item.id}: no sat:orbit_state (orbit direction)")
        direction = check_direction(direction, f"item {item.id}")
        orbit = item.properties.get("sat:relative_orbit", _opera_track(item))
        nodata = _asset_nodata(item, pol_keys)
        kind = (tuple(pol_keys), inc_key, conv, direction, orbit, nodata)
        kinds.setdefault(kind, []).append(item)

    parts, orbits = [], []
    user_incidence = False
    for (pol_keys, inc_key, conv, direction, orbit, nodata), kind_items in kinds.items():
        bands = [*pol_keys, *([inc_key] if inc_key else [])]
        try:
            raw = odc.stac.load(
                kind_items,
                bands=bands,
                geobox=gbox,
                groupby="solar_day",
                chunks=_load_chunks(chunks),
                dtype="float32",
                resampling="nearest" if gbox.resolution.x <= 10.0 else "average",
                patch_url=patch_url,
            )
        except Exception as err:  # odc-stac raises ValueError/KeyError/… on inconsistent items
            raise DataError(
                f"items {', '.join(i.id for i in kind_items[:3])}: odc-stac cannot load them: "
                f"{type(err).__name__}: {err}"
            ) from err
        groups = solar_day_groups(kind_items, gbox)
        raw = raw.assign_coords(time=group_times(groups))
        where = f"item {kind_items[0].id}"
        if inc_key:
            theta = raw[inc_key].where(np.isfinite(raw[inc_key]) & (raw[inc_key] > 0))
        else:
            theta = incidence_layer(raw[pol_keys[0]], incidence_angle, where)
            user_incidence = True
        part = xr.Dataset(
            {
                pol: to_sigma0_db(raw[key], conv, theta, nodata, to_sigma0)
                for pol, key in zip(S1_POLARISATIONS, pol_keys, strict=True)
            }
        )
        part[S1_INCIDENCE] = theta.astype(np.float32)
        part[S1_ORBIT_DIRECTION] = ("time", np.array([direction] * len(groups), dtype=str))
        part = part.assign_coords(
            {PLATFORM: ("time", np.array([platform_of(g[0], "1") for g in groups], dtype=str))}
        )
        parts.append(part.drop_vars("spatial_ref", errors="ignore"))
        orbits.extend([int(orbit) if orbit is not None else None] * len(groups))
    attrs = {
        "source": source,
        "items": [i.id for i in chosen],
        "backscatter": conversion_note(conventions, to_sigma0),
        "incidence_angle_source": (
            f"user-stated: {float(incidence_angle)} degrees, constant"
            if user_incidence and incidence_angle is not None
            else "product layer"
        ),
    }
    return s1_cube(parts, orbits, attrs, target)


def _asset_nodata(item: pystac.Item, keys: Sequence[str]) -> float | None:
    for key in keys:
        bands = item.assets[key].extra_fields.get("raster:bands") or []
        if bands and isinstance(bands[0], dict) and bands[0].get("nodata") is not None:
            return float(bands[0]["nodata"])
    return None
