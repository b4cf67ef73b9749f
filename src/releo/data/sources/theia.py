"""Theia/MAJA (MUSCATE format) Sentinel-2 L2A products.

A product folder ``SENTINEL2A_YYYYMMDD-HHMMSS-mmm_L2A_T31TCJ_C_V2-2/`` holds one int16 GeoTIFF
per band (``*_FRE_B2.tif`` flat, slope-corrected reflectance, or ``*_SRE_B2.tif``), bit-field
masks under ``MASKS/`` (CLM clouds, MG2 geophysical, SAT saturation, EDG edges; ``_R1`` 10 m,
``_R2`` 20 m) and ``*_MTD_ALL.xml``. Reflectance = DN / REFLECTANCE_QUANTIFICATION_VALUE with
no additive offset (MAJA handles the ESA 04.00 offset itself); the nodata DN is -10000.
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

from releo.data.contracts import MASK_CLEAR, MASK_CLOUD, MASK_NODATA, MASK_SHADOW, S2_BANDS
from releo.data.errors import DataError
from releo.data.readers import platform_of
from releo.data.sources import _xml
from releo.data.sources._angles import (
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
    open_on_grid,
    parse_crs,
)

__all__ = ["REFLECTANCES", "read_theia"]

REFLECTANCES = ("FRE", "SRE")
"""Theia reflectance products: FRE (slope-corrected, Theia's advice in relief) or SRE."""

_MTD_GLOB = "*_MTD_ALL.xml"
_NAME_RE = re.compile(r"^SENTINEL2[A-D]_\d{8}-\d{6}-\d{3}_L2A_T\w{5}_[A-Z](_V\d+-\d+)?$")

# CLM bits (0-based): bit 0 summarises "any cloud or shadow"; 1-4 and 7 are clouds, 5-6 shadows.
_CLM_ANY = 1 << 0
_CLM_CLOUD = (1 << 1) | (1 << 2) | (1 << 3) | (1 << 4) | (1 << 7)
_CLM_SHADOW = (1 << 5) | (1 << 6)
# MG2 bits: 3 cloud shadow, 4 topographic shadow, 5 hidden by relief (never seen by the sensor),
# 6-7 sun too low / tangent to the slope (the FRE slope correction is unreliable there).
_MG2_SNOW = 1 << 2  # masked like cloud: no canopy PROSAIL or SNAP explains (as SCL 11)
_MG2_CLOUD_SHADOW = 1 << 3
_MG2_TOPO_SHADOW = 1 << 4
_MG2_HIDDEN = 1 << 5
_MG2_GRAZING = (1 << 6) | (1 << 7)


def read_theia(
    paths: PathLike | Sequence[PathLike],
    *,
    bbox: Sequence[float] | None = None,
    crs: Any = None,
    period: tuple[Any, Any] | None = None,
    reflectance: str = "FRE",
) -> xr.Dataset:
    """Read Theia/MAJA L2A product folders into the S2 contract cube (lazy, 10 m).

    ``paths``: one or many unzipped product folders, or folders holding them. ``bbox``,
    ``crs`` and ``period`` work as in :func:`releo.data.sources.read_safe`. ``reflectance``:
    ``"FRE"`` (default, slope-corrected, as Theia recommends in relief) or ``"SRE"``; the
    choice is recorded in the cube's ``reflectance`` attribute.

    Mask: EDG, SAT (any band), MG2 "hidden by relief" and nodata DNs → 3; CLM clouds and MG2
    snow → 1;
    CLM/MG2 cloud shadows and MG2 topographic shadow (and, for FRE, grazing sun) → 2.
    Angles come from the MTD_ALL grids over the area read (tile means where the grids are empty).
    """
    kind = str(reflectance).upper()
    if kind not in REFLECTANCES:
        raise DataError(
            f"read_theia: reflectance must be one of {REFLECTANCES}, not {reflectance!r}"
        )
    roots = as_paths(paths, "read_theia")
    products = [p for root in roots for p in _products(root)]
    granules = [_granule(p, kind) for p in products]
    source = ", ".join(str(p) for p in products)
    box = tuple(bbox) if bbox is not None else None
    cube = build_cube(granules, bbox=box, crs=crs, period=period, source=source)  # type: ignore[arg-type]
    cube.attrs.update(
        {
            "reader": "releo.data.sources.read_theia",
            "product_format": "Theia/MAJA L2A (MUSCATE)",
            "reflectance": kind,
        }
    )
    return cube


def _products(root: Path) -> list[Path]:
    if root.suffix.lower() == ".zip":
        raise DataError(f"{root}: zipped Theia products are not read; unzip it first")
    if root.is_dir() and any(root.glob(_MTD_GLOB)):
        return [root]
    if root.is_dir():
        found = sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob(_MTD_GLOB)))
        if found:
            return found
    raise DataError(f"{root}: not a Theia L2A product (no {_MTD_GLOB}) nor a folder holding one")


def _one(folder: Path, pattern: str, product: Path, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if not found:
        raise DataError(f"{product}: missing {what} ({folder.name}/{pattern})")
    return found[0]


def _granule(product: Path, kind: str) -> Granule:
    mtd = _one(product, _MTD_GLOB, product, "metadata file")
    meta = _Metadata.read(mtd)
    files = {}
    for band in S2_BANDS:
        pattern = f"*_{kind}_{_theia_band(band)}.tif"
        files[band] = _one(product, pattern, product, f"{kind} band {band}")
    masks = product / "MASKS"
    for name in ("CLM_R1", "MG2_R1", "EDG_R1", "SAT_R1", "EDG_R2", "SAT_R2"):
        files[name] = _one(masks, f"*_{name}.tif", product, f"mask {name}")
    with rasterio.open(files["B02"]) as ds:
        bounds, file_crs = tuple(ds.bounds), ds.crs
        tag_nodata = ds.nodata
    if file_crs is None:
        raise DataError(f"{files['B02']}: raster has no CRS")
    crs = parse_crs(file_crs, str(files["B02"]))
    if meta.crs is not None and meta.crs != crs:
        raise DataError(
            f"{files['B02']}: CRS {crs.to_string()} differs from {mtd}'s HORIZONTAL_CS_CODE "
            f"{meta.crs.to_string()}"
        )
    nodata = meta.nodata if meta.nodata is not None else tag_nodata
    if nodata is None:
        raise DataError(
            f"{mtd}: missing element Special_Values_List/SPECIAL_VALUE[@name='nodata'] "
            f"(and {files['B02'].name} declares no nodata)"
        )
    platform = platform_of(product.name) or platform_of(meta.platform or "")
    if platform is None:
        raise DataError(f"{mtd}: no platform in the product name nor in PLATFORM")
    scale = np.float32(meta.quantification)
    fill = nodata

    def load(geobox: GeoBox) -> tuple[dict[str, xr.DataArray], xr.DataArray]:
        dn = {b: open_on_grid(files[b], geobox, fill=fill) for b in S2_BANDS}
        reflectance = {b: (d.astype(np.float32) / scale).where(d != nodata) for b, d in dn.items()}
        clm = open_on_grid(files["CLM_R1"], geobox, fill=0)
        mg2 = open_on_grid(files["MG2_R1"], geobox, fill=0)
        # outside the product counts as edge (EDG = 1 means outside the image)
        edge = (open_on_grid(files["EDG_R1"], geobox, fill=1) != 0) | (
            open_on_grid(files["EDG_R2"], geobox, fill=1) != 0
        )
        saturated = (open_on_grid(files["SAT_R1"], geobox, fill=0) != 0) | (
            open_on_grid(files["SAT_R2"], geobox, fill=0) != 0
        )
        nodata_px = reduce(lambda a, b: a | b, (d == nodata for d in dn.values()))
        nodata_px = nodata_px | edge | saturated | ((mg2 & _MG2_HIDDEN) != 0)
        flagged = (clm & _CLM_ANY) != 0
        cloud_shadow_only = ((clm & _CLM_SHADOW) != 0) & ((clm & _CLM_CLOUD) == 0)
        # bit 0 with no detail bit is still "cloud or shadow": call it cloud, the safer side
        cloud = (flagged & ~cloud_shadow_only) | ((mg2 & _MG2_SNOW) != 0)
        shadow_bits = _MG2_CLOUD_SHADOW | _MG2_TOPO_SHADOW | (_MG2_GRAZING if kind == "FRE" else 0)
        shadow = (flagged & cloud_shadow_only) | ((mg2 & shadow_bits) != 0)
        mask = xr.where(
            nodata_px,
            np.uint8(MASK_NODATA),
            xr.where(
                cloud,
                np.uint8(MASK_CLOUD),
                xr.where(shadow, np.uint8(MASK_SHADOW), np.uint8(MASK_CLEAR)),
            ),
        )
        return reflectance, mask.astype(np.uint8)

    return Granule(
        name=product.name,
        path=product,
        time=meta.time,
        platform=platform,
        crs=crs,
        bounds=bounds,
        load=load,
        angles=meta.angles.over,
        attrs={},
    )


@dataclass(frozen=True)
class _Metadata:
    """What ``*_MTD_ALL.xml`` says: time, platform, CRS, radiometry and angle grids."""

    file: Path
    time: pd.Timestamp
    platform: str | None
    crs: Any
    quantification: float
    nodata: float | None
    angles: TileAngles

    @classmethod
    def read(cls, file: Path) -> _Metadata:
        root = _xml.parse(file)
        time = _xml.utc_time(root, "Product_Characteristics/ACQUISITION_DATE", file)
        platform = _xml.optional_text(root, "Product_Characteristics/PLATFORM")
        code = _xml.optional_text(root, "Horizontal_Coordinate_System/HORIZONTAL_CS_CODE")
        crs = None
        if code:
            crs = parse_crs(f"EPSG:{code}" if code.isdigit() else code, str(file))
        quantification = _xml.number(root, "REFLECTANCE_QUANTIFICATION_VALUE", file)
        nodata_text = next(
            (
                (element.text or "").strip()
                for element in _xml.find_all(root, "Special_Values_List/SPECIAL_VALUE")
                if element.get("name", "").lower() == "nodata"
            ),
            None,
        )
        try:
            nodata = float(nodata_text) if nodata_text else None
        except ValueError as err:
            raise DataError(f"{file}: unreadable nodata SPECIAL_VALUE {nodata_text!r}") from err
        geo = _xml.find(root, "Group_Geopositioning[@group_id='R1']", file)
        ulx, uly = _xml.number(geo, "ULX", file), _xml.number(geo, "ULY", file)
        grids = _xml.find(root, "Angles_Grids_List", file)
        sun_element = _xml.find(grids, "Sun_Angles_Grids", file)
        sun = grid_from_xml(sun_element, ulx, uly, file, "Sun_Angles_Grids")
        wanted = {_theia_band(b) for b in S2_BANDS}
        per_band = []
        for band_list in _xml.find_all(grids, "Band_Viewing_Incidence_Angles_Grids_List"):
            band = band_list.get("band_id", "")
            where = f"Band_Viewing_Incidence_Angles_Grids_List[band_id={band}]"
            detectors = [
                grid_from_xml(element, ulx, uly, file, where)
                for element in _xml.find_all(band_list, "Viewing_Incidence_Angles_Grids")
            ]
            if detectors and band in wanted:
                per_band.append(merge_grids(detectors))
        if not per_band:
            raise DataError(
                f"{file}: missing element Angles_Grids_List/Viewing_Incidence_Angles_Grids_List "
                "(no viewing grid for the bands B2-B12)"
            )
        means = [
            pair
            for element in _xml.find_all(root, "Mean_Viewing_Incidence_Angle")
            if element.get("band_id", element.get("bandId")) in wanted
            and (pair := mean_pair(element, ".", file)) is not None
        ]
        angles = TileAngles(
            file=file,
            sun=sun,
            view=merge_grids(per_band),
            mean_sun=mean_pair(root, "Mean_Value_List/Sun_Angles", file),
            mean_view=mean_of_pairs(means),
            mean_sun_element="Mean_Value_List/Sun_Angles",
            mean_view_element="Mean_Value_List/Mean_Viewing_Incidence_Angle_List",
        )
        return cls(file, time, platform, crs, quantification, nodata, angles)


def _theia_band(band: str) -> str:
    """Contract band name → Theia's (B02 → B2, B8A stays)."""
    return band if band == "B8A" else f"B{int(band[1:])}"
