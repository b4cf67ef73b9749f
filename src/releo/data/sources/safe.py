"""ESA SAFE Sentinel-2 L2A products (Sen2Cor; also the ESRI/Planetary Computer GeoTIFF SAFEs).

Everything that changes reflectance or masks comes from the product's own metadata:
``MTD_MSIL2A.xml`` (processing baseline, ``BOA_QUANTIFICATION_VALUE``, per-band
``BOA_ADD_OFFSET``, special values, image file names and format) and the granule's
``MTD_TL.xml`` (CRS, tile origin, sensing time, sun and viewing angle grids).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox

from releo.data.contracts import MASK_NODATA, S2_BANDS
from releo.data.errors import DataError
from releo.data.readers import NATIVE_RESOLUTION_M, SCL_TO_MASK, platform_of
from releo.data.sources import _xml
from releo.data.sources._angles import (
    AngleGrid,
    TileAngles,
    grid_from_xml,
    mean_of_pairs,
    mean_pair,
    merge_grids,
)
from releo.data.sources._mosaic import (
    Granule,
    PathLike,
    as_paths,
    build_cube,
    lookup,
    open_on_grid,
    parse_crs,
)

__all__ = ["read_safe"]

PRODUCT_MTD = "MTD_MSIL2A.xml"
_EXTENSIONS = {"JPEG2000": ".jp2", "GeoTIFF": ".tif"}
"""``imageFormat`` of a granule → extension of its ``IMAGE_FILE`` entries."""

_PSD_BAND_IDS = {
    "B1": 0, "B2": 1, "B3": 2, "B4": 3, "B5": 4, "B6": 5, "B7": 6,
    "B8": 7, "B8A": 8, "B9": 9, "B10": 10, "B11": 11, "B12": 12,
}  # fmt: skip
"""ESA band ids (PSD), used only when a product lacks its ``Spectral_Information_List``."""

_BASELINE_RE = re.compile(r"^(\d{2})\.(\d{2})$")
_IMAGE_RE = re.compile(r"_(B\d{2}|B8A|SCL)_(\d{2})m$")

_SCL_LUT = np.full(256, MASK_NODATA, dtype=np.uint8)  # unknown classes cannot vouch for a pixel
for _code, _mask in SCL_TO_MASK.items():
    _SCL_LUT[_code] = _mask


def read_safe(
    paths: PathLike | Sequence[PathLike],
    *,
    bbox: Sequence[float] | None = None,
    crs: Any = None,
    period: tuple[Any, Any] | None = None,
) -> xr.Dataset:
    """Read ESA SAFE L2A product folders into the S2 contract cube (lazy, 10 m).

    ``paths``: one or many ``*.SAFE`` folders (unzipped), or folders holding them.
    ``bbox``: (xmin, ymin, xmax, ymax) in ``crs`` (or the products' CRS when ``crs`` is None);
    only that window is read. ``crs``: output CRS; products in another one are reprojected
    (nearest). Without it, all products must share one CRS. ``period``: (start, end) dates,
    inclusive, to keep only some acquisitions.

    Reflectance = (DN + BOA_ADD_OFFSET[band]) / BOA_QUANTIFICATION_VALUE as the product's
    metadata says; DN NODATA (0) and SATURATED (65535) become NaN with mask 3; the SCL gives
    cloud (1) and shadow (2). Granules of one solar day are mosaicked into one time step. Angles
    are the MTD_TL grids averaged over the area read (viewing: detectors merged, bands averaged).
    """
    roots = as_paths(paths, "read_safe")
    products = [p for root in roots for p in _products(root)]
    granules = [g for product in products for g in _granules(product)]
    source = ", ".join(str(p) for p in products)
    box = tuple(bbox) if bbox is not None else None
    cube = build_cube(granules, bbox=box, crs=crs, period=period, source=source)  # type: ignore[arg-type]
    used = [g for g in granules if g.name in cube.attrs["source"]]
    cube.attrs.update(
        {
            "reader": "releo.data.sources.read_safe",
            "product_format": "ESA SAFE L2A",
            "processing_baseline": sorted({g.attrs["processing_baseline"] for g in used}),
        }
    )
    return cube


def _products(root: Path) -> list[Path]:
    if root.suffix.lower() == ".zip":
        raise DataError(f"{root}: zipped SAFE products are not read; unzip it first")
    if (root / PRODUCT_MTD).is_file():
        return [root]
    if root.is_dir():
        found = sorted(p for p in root.iterdir() if (p / PRODUCT_MTD).is_file())
        if found:
            return found
    raise DataError(f"{root}: not a SAFE L2A product (no {PRODUCT_MTD}) nor a folder holding one")


@dataclass(frozen=True)
class _Radiometry:
    baseline: str
    quantification: float
    offsets: dict[str, float]
    nodata: int
    saturated: int


def _radiometry(root: Any, mtd: Path) -> _Radiometry:
    baseline = _xml.text(root, "PROCESSING_BASELINE", mtd)
    match = _BASELINE_RE.match(baseline)
    if not match:
        raise DataError(f"{mtd}: unknown PROCESSING_BASELINE {baseline!r} (expected NN.NN)")
    major = int(match.group(1))
    quantification = _xml.number(root, "BOA_QUANTIFICATION_VALUE", mtd)
    offset_list = root.find(".//{*}BOA_ADD_OFFSET_VALUES_LIST")
    if offset_list is None:
        if major >= 4:
            raise DataError(
                f"{mtd}: PROCESSING_BASELINE {baseline} (≥ 04.00) but no "
                "BOA_ADD_OFFSET_VALUES_LIST: the radiometric offset cannot be known"
            )
        offsets = dict.fromkeys(S2_BANDS, 0.0)  # before 04.00 the DNs carry no offset
    else:
        by_id = {}
        for element in _xml.find_all(offset_list, "BOA_ADD_OFFSET"):
            try:
                by_id[int(element.get("band_id", ""))] = float(element.text or "")
            except ValueError as err:
                raise DataError(
                    f"{mtd}: unreadable BOA_ADD_OFFSET {element.attrib}: {err}"
                ) from err
        ids = _band_ids(root)
        missing = [b for b in S2_BANDS if ids[b] not in by_id]
        if missing:
            raise DataError(f"{mtd}: BOA_ADD_OFFSET missing for band(s) {', '.join(missing)}")
        offsets = {b: by_id[ids[b]] for b in S2_BANDS}
    special = {}
    for element in _xml.find_all(root, "Special_Values"):
        name = _xml.optional_text(element, "SPECIAL_VALUE_TEXT")
        index = _xml.optional_text(element, "SPECIAL_VALUE_INDEX")
        if name and index:
            special[name.upper()] = int(index)
    for name in ("NODATA", "SATURATED"):
        if name not in special:
            raise DataError(f"{mtd}: missing element Special_Values for {name}")
    return _Radiometry(baseline, quantification, offsets, special["NODATA"], special["SATURATED"])


def _band_ids(root: Any) -> dict[str, int]:
    """Contract band → ESA band id, from ``Spectral_Information`` (B8A is 8, B9 is 9)."""
    ids = {
        el.get("physicalBand", ""): int(el.get("bandId", "-1"))
        for el in _xml.find_all(root, "Spectral_Information")
    } or _PSD_BAND_IDS
    out = {}
    for band in S2_BANDS:
        physical = "B8A" if band == "B8A" else f"B{int(band[1:])}"
        out[band] = ids.get(physical, _PSD_BAND_IDS[physical])
    return out


def _granules(safe: Path) -> list[Granule]:
    mtd = safe / PRODUCT_MTD
    root = _xml.parse(mtd)
    radiometry = _radiometry(root, mtd)
    spacecraft = _xml.optional_text(root, "SPACECRAFT_NAME") or ""
    platform = platform_of(safe.name) or platform_of(spacecraft)
    if platform is None:
        raise DataError(f"{mtd}: no platform in the product name nor in SPACECRAFT_NAME")
    elements = _xml.find_all(root, "Granule_List/Granule")
    if not elements:
        raise DataError(f"{mtd}: missing element Granule_List/Granule")
    return [
        _granule(safe, mtd, element, radiometry, platform, i) for i, element in enumerate(elements)
    ]


def _granule(
    safe: Path, mtd: Path, element: Any, radiometry: _Radiometry, platform: str, index: int
) -> Granule:
    image_format = element.get("imageFormat")
    if image_format not in _EXTENSIONS:
        raise DataError(
            f"{mtd}: Granule imageFormat {image_format!r} unknown "
            f"(expected {' or '.join(_EXTENSIONS)})"
        )
    images: dict[tuple[str, int], Path] = {}
    granule_dir = None
    for entry in _xml.find_all(element, "IMAGE_FILE"):
        name = (entry.text or "").strip()
        match = _IMAGE_RE.search(name)
        if match:
            images[(match.group(1), int(match.group(2)))] = safe / (
                name + _EXTENSIONS[image_format]
            )
            granule_dir = granule_dir or safe.joinpath(*Path(name).parts[:2])
    files = {}
    for band in S2_BANDS:
        key = (band, int(NATIVE_RESOLUTION_M[band]))
        if key not in images:
            raise DataError(f"{mtd}: no IMAGE_FILE for {band} at {key[1]} m")
        files[band] = images[key]
    if ("SCL", 20) not in images:
        raise DataError(f"{mtd}: no IMAGE_FILE for SCL at 20 m")
    files["SCL"] = images[("SCL", 20)]
    for file in files.values():
        if not file.is_file():
            raise DataError(f"{file}: listed in {mtd} (IMAGE_FILE) but not found")
    assert granule_dir is not None
    tile = _Tile.read(granule_dir / "MTD_TL.xml")
    with rasterio.open(files["B02"]) as ds:
        bounds, file_crs = tuple(ds.bounds), ds.crs
    if file_crs is None or parse_crs(file_crs, str(files["B02"])) != tile.crs:
        raise DataError(
            f"{files['B02']}: CRS {file_crs} differs from {tile.file}'s HORIZONTAL_CS_CODE "
            f"{tile.crs.to_string()}"
        )

    def load(geobox: GeoBox) -> tuple[dict[str, xr.DataArray], xr.DataArray]:
        dn = {b: open_on_grid(files[b], geobox, fill=radiometry.nodata) for b in S2_BANDS}
        invalid = {b: (d == radiometry.nodata) | (d == radiometry.saturated) for b, d in dn.items()}
        reflectance = {
            b: ((dn[b].astype(np.float32) + np.float32(radiometry.offsets[b]))
                / np.float32(radiometry.quantification)).where(~invalid[b])
            for b in S2_BANDS
        }  # fmt: skip
        # SCL 0 is Sen2Cor's own "no data" class: outside the file counts as that
        mask = lookup(open_on_grid(files["SCL"], geobox, fill=0), _SCL_LUT)
        bad = reduce(lambda a, b: a | b, invalid.values())
        return reflectance, xr.where(bad, np.uint8(MASK_NODATA), mask).astype(np.uint8)

    name = safe.name if index == 0 else f"{safe.name}/{granule_dir.name}"
    return Granule(
        name=name,
        path=safe,
        time=tile.time,
        platform=platform,
        crs=tile.crs,
        bounds=bounds,
        load=load,
        angles=tile.angles.over,
        attrs={"processing_baseline": radiometry.baseline},
    )


@dataclass(frozen=True)
class _Tile:
    """What a granule's ``MTD_TL.xml`` says: CRS, sensing time and angle grids."""

    file: Path
    crs: Any
    time: pd.Timestamp
    angles: TileAngles

    @classmethod
    def read(cls, file: Path) -> _Tile:
        root = _xml.parse(file)
        crs = parse_crs(_xml.text(root, "Tile_Geocoding/HORIZONTAL_CS_CODE", file), str(file))
        time = _xml.utc_time(root, "SENSING_TIME", file)
        geo = _xml.find(root, "Tile_Geocoding/Geoposition[@resolution='10']", file)
        ulx, uly = _xml.number(geo, "ULX", file), _xml.number(geo, "ULY", file)
        tile_angles = _xml.find(root, "Tile_Angles", file)
        sun_element = _xml.find(tile_angles, "Sun_Angles_Grid", file)
        sun = grid_from_xml(sun_element, ulx, uly, file, "Sun_Angles_Grid")
        ids = set(_band_ids(root).values())
        per_band: dict[int, list[AngleGrid]] = {}
        for element in _xml.find_all(tile_angles, "Viewing_Incidence_Angles_Grids"):
            band_id = int(element.get("bandId", "-1"))
            where = (
                f"Viewing_Incidence_Angles_Grids[bandId={band_id}, "
                f"detectorId={element.get('detectorId')}]"
            )
            per_band.setdefault(band_id, []).append(grid_from_xml(element, ulx, uly, file, where))
        # detectors first (NaN outside each footprint), then the cube's bands
        bands = [merge_grids(grids) for band_id, grids in per_band.items() if band_id in ids]
        if not bands:
            raise DataError(
                f"{file}: missing element Tile_Angles/Viewing_Incidence_Angles_Grids "
                "(no viewing grid for the bands B02-B12)"
            )
        means = [
            pair
            for element in _xml.find_all(tile_angles, "Mean_Viewing_Incidence_Angle")
            if int(element.get("bandId", "-1")) in ids
            and (pair := mean_pair(element, ".", file)) is not None
        ]
        angles = TileAngles(
            file=file,
            sun=sun,
            view=merge_grids(bands),
            mean_sun=mean_pair(tile_angles, "Mean_Sun_Angle", file),
            mean_view=mean_of_pairs(means),
            mean_sun_element="Mean_Sun_Angle",
            mean_view_element="Mean_Viewing_Incidence_Angle_List",
        )
        return cls(file, crs, time, angles)
