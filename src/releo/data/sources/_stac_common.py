"""Shared plumbing of the STAC readers: item collections, the output grid, grouping by day."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pystac
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from pyproj import CRS
from pyproj.exceptions import CRSError

from releo.data.errors import DataError

PathLike = str | os.PathLike[str]
Items = PathLike | pystac.ItemCollection | Sequence[pystac.Item] | Sequence[dict]
Period = tuple[Any, Any] | str | None

DEFAULT_CHUNKS: dict[str, int] = {"x": 2048, "y": 2048}
"""Dask chunks of a lazily loaded cube (one acquisition per time chunk)."""

_PLATFORM_RE = re.compile(r"sentinel[-_ ]?([12])([a-d])\b", re.IGNORECASE)


def load_items(items: Items) -> tuple[list[pystac.Item], str]:
    """The items of ``items`` and a label naming their source for error messages.

    ``items`` is a JSON file (FeatureCollection, list of items, one item), an ItemCollection or a
    list of items/dicts.

    Relative asset hrefs in a file are resolved against the file's folder.
    """
    if isinstance(items, pystac.ItemCollection):
        return list(items), "ItemCollection"
    if isinstance(items, str | os.PathLike):
        path = Path(items)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as err:
            raise DataError(f"{path}: not found") from err
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable JSON file: {err}") from err
        out = [_local_hrefs(_item(d, path), path.parent) for d in _features(data, path)]
        return out, str(path)
    out = [i.clone() if isinstance(i, pystac.Item) else _item(i, "items") for i in items]
    return [_local_hrefs(i, Path.cwd()) for i in out], "items"


def _local_hrefs(item: pystac.Item, folder: Path) -> pystac.Item:
    """Make local-path asset hrefs absolute, relative ones against ``folder``.

    Also drops the item's remote ``self`` link, against which pystac would otherwise resolve them.
    """
    local = [a for a in item.assets.values() if "://" not in a.href]
    if not local:
        return item
    for asset in local:
        href = Path(asset.href)
        asset.href = str(href if href.is_absolute() else (folder / href).resolve())
    item.remove_links("self")
    return item


def _features(data: Any, source: Path) -> list[dict]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        return list(data.get("features", []))
    if isinstance(data, dict) and "features" in data:  # a saved pystac-client page
        return list(data["features"])
    if isinstance(data, dict) and data.get("type") == "Feature":
        return [data]
    raise DataError(
        f"{source}: not a STAC ItemCollection (expected a FeatureCollection, a list of items "
        "or one item)"
    )


def _item(data: Any, source: Any) -> pystac.Item:
    try:
        return pystac.Item.from_dict(data, preserve_dict=False)
    except Exception as err:  # pystac raises several types for malformed items
        raise DataError(f"{source}: not a STAC item: {type(err).__name__}: {err}") from err


def projected_crs(crs: Any, source: str) -> CRS:
    try:
        out = CRS.from_user_input(crs)
    except CRSError as err:
        raise DataError(f"{source}: invalid CRS {crs!r}: {err}") from err
    if not out.is_projected:
        raise DataError(f"{source}: CRS {crs!r} is not projected; pass e.g. crs='EPSG:32631'")
    return out


def output_geobox(
    bbox: Sequence[float], crs: CRS, resolution: float, bbox_crs: Any, source: str
) -> GeoBox:
    """The output pixel grid: ``bbox`` snapped to ``resolution``.

    ``bbox`` is in ``bbox_crs`` (default ``crs``); pixel edges fall on multiples of ``resolution``.
    """
    if len(bbox) != 4 or not bbox[0] < bbox[2] or not bbox[1] < bbox[3]:
        raise DataError(f"{source}: bbox must be (xmin, ymin, xmax, ymax), got {tuple(bbox)}")
    if resolution <= 0:
        raise DataError(f"{source}: resolution must be positive, got {resolution}")
    xmin, ymin, xmax, ymax = map(float, bbox)
    area = box(xmin, ymin, xmax, ymax, crs=bbox_crs if bbox_crs is not None else crs)
    if bbox_crs is not None:
        area = area.to_crs(crs)
    return GeoBox.from_bbox(area.boundingbox, crs=crs, resolution=resolution)


def select_items(
    items: list[pystac.Item], gbox: GeoBox, period: Period, source: str
) -> list[pystac.Item]:
    """Items whose footprint meets the grid and whose date falls in ``period``."""
    if not items:
        raise DataError(f"{source}: no STAC items")
    start, end = _period(period, source)
    area = gbox.extent.to_crs("EPSG:4326")
    kept, outside = [], []
    for item in items:
        when = item_datetime(item)
        if (start is not None and when < start) or (end is not None and when > end):
            continue
        if item.geometry is None:
            raise DataError(f"{source}: item {item.id} has no geometry")
        if Geometry(item.geometry, crs="EPSG:4326").intersects(area):
            kept.append(item)
        else:
            outside.append(item.id)
    if not kept:
        lon = [b for i in items if i.bbox for b in (i.bbox[0], i.bbox[2])]
        lat = [b for i in items if i.bbox for b in (i.bbox[1], i.bbox[3])]
        span = ""
        if lon:
            span = f"; the items span lon {min(lon):.3f}..{max(lon):.3f}, "
            span += f"lat {min(lat):.3f}..{max(lat):.3f}"
        where = area.boundingbox
        raise DataError(
            f"{source}: no item covers the requested bbox (lon {where.left:.3f}..{where.right:.3f},"
            f" lat {where.bottom:.3f}..{where.top:.3f}) in period {period}{span}"
        )
    return kept


def _period(period: Period, source: str) -> tuple[pd.Timestamp | None, pd.Timestamp | None]:
    if period is None:
        return None, None
    parts = period.split("/") if isinstance(period, str) else list(period)
    if len(parts) != 2:
        raise DataError(f"{source}: period must be (start, end) or 'start/end', got {period!r}")
    try:
        start, end = (None if p in (None, "", "..") else pd.Timestamp(p) for p in parts)
    except (ValueError, TypeError) as err:
        raise DataError(f"{source}: unparsable period {period!r}: {err}") from err
    start = _naive_utc(start) if start is not None else None
    end = _naive_utc(end) if end is not None else None
    if end is not None and end == end.normalize():
        end = end + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)  # a date: whole day
    return start, end


def _naive_utc(t: pd.Timestamp) -> pd.Timestamp:
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def item_datetime(item: pystac.Item) -> pd.Timestamp:
    """Nominal acquisition time (naive UTC); ``start_datetime`` when ``datetime`` is null."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise DataError(f"item {item.id}: no datetime")
    return _naive_utc(pd.Timestamp(when))


def solar_day_groups(items: list[pystac.Item], gbox: GeoBox) -> list[list[pystac.Item]]:
    """Items grouped and ordered as ``odc.stac.load(groupby="solar_day")`` groups them.

    Items are grouped by local solar date at the grid's centre longitude, then ordered by time and
    id within a day.
    """
    ((lon, _),) = gbox.extent.centroid.to_crs("EPSG:4326").points
    shift = pd.Timedelta(seconds=lon * 86400.0 / 360.0)

    def key(item: pystac.Item) -> tuple[dt.date, pd.Timestamp, str]:
        return ((item_datetime(item) + shift).date(), item_datetime(item), item.id)

    groups: dict[dt.date, list[pystac.Item]] = {}
    for item in sorted(items, key=key):
        groups.setdefault(key(item)[0], []).append(item)
    return list(groups.values())


def platform_of(item: pystac.Item, mission: str) -> str:
    """``S2A``/``S1B``… from the ``platform`` property (or the item id), else ``unknown``."""
    for text in (item.properties.get("platform"), item.id):
        match = _PLATFORM_RE.search(str(text or "")) or re.search(
            rf"\b(S{mission})([A-D])_", str(text or "")
        )
        if match and match.group(1)[-1] == mission:
            return f"S{mission}{match.group(2).upper()}"
    return "unknown"


def group_times(groups: Iterable[list[pystac.Item]]) -> np.ndarray:
    """Time label of each group: its first item's time, as odc-stac labels it."""
    return np.array([item_datetime(g[0]) for g in groups], dtype="datetime64[ns]")
