"""ESA SAFE L2A reader: real metadata XMLs with tiny band rasters written around them."""

from __future__ import annotations

import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from releo.data.contracts import S2_BANDS
from releo.data.errors import DataError
from releo.data.readers import NATIVE_RESOLUTION_M, relative_azimuth
from releo.data.sources import read_safe

# odc-geo's lazy reprojection: a shapely deprecation and rasterio's warning on its scratch dataset
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

REAL = Path(__file__).parent / "data" / "real_formats" / "s2_l2a_safe"
N0509 = "S2A_MSIL2A_20230625T234621_N0509_R073_T01WCS_20230626T022157.SAFE"
N0400 = "S2B_MSIL2A_20220413T150759_N0400_R025_T33XWJ_20220414T082126.SAFE"
N0214 = "S2B_MSIL2A_20210122T133229_N0214_R081_T22HBD_20210122T155500.SAFE"
TL_0509 = f"{N0509}/GRANULE/L2A_T01WCS_A041826_20230625T234624/MTD_TL.xml"
TL_0400 = f"{N0400}/GRANULE/L2A_T33XWJ_A026649_20220413T150756/MTD_TL.xml"
BAND_ID = {
    "B2": 1,
    "B3": 2,
    "B4": 3,
    "B5": 4,
    "B6": 5,
    "B7": 6,
    "B8": 7,
    "B8A": 8,
    "B11": 11,
    "B12": 12,
}
SCL = np.array([[4, 8, 3, 5], [9, 10, 2, 11], [0, 1, 6, 7], [4, 4, 4, 4]], dtype=np.uint8)
SCL_MASK = np.array([[0, 1, 2, 0], [1, 1, 2, 0], [3, 3, 0, 0], [0, 0, 0, 0]], dtype=np.uint8)


def _dn(band: str, shape: tuple[int, int]) -> np.ndarray:
    """Distinct DNs per band and pixel: 1000 + 300·band index + pixel index."""
    base = 1000 + 300 * S2_BANDS.index(band)
    return (base + np.arange(shape[0] * shape[1]).reshape(shape)).astype(np.uint16)


def _tile(tl: Path) -> dict:
    root = ET.parse(tl).getroot()
    geo = root.find(".//Geoposition[@resolution='10']")
    return {"ulx": float(geo.find("ULX").text), "uly": float(geo.find("ULY").text),
            "crs": root.find(".//HORIZONTAL_CS_CODE").text, "root": root}  # fmt: skip


def _grid(element: ET.Element, part: str) -> np.ndarray:
    rows = element.find(part).find("Values_List").findall("VALUES")
    return np.array([[float(v) for v in r.text.split()] for r in rows])


def _expected_angles(tl: Path, i: int, j: int) -> dict[str, float]:
    """Angles at grid node (row i, col j) straight from the XML: detectors then bands."""
    root = ET.parse(tl).getroot()
    sun = root.find(".//Sun_Angles_Grid")
    zen, az = [], []
    for band_id in BAND_ID.values():
        grids = root.findall(f".//Viewing_Incidence_Angles_Grids[@bandId='{band_id}']")
        z = [_grid(g, "Zenith")[i, j] for g in grids]
        a = [_grid(g, "Azimuth")[i, j] for g in grids]
        zen.append(np.nanmean(z))
        az.append(np.nanmean(a))
    sun_az, view_az = _grid(sun, "Azimuth")[i, j], float(np.mean(az))
    return {
        "sun_zenith": _grid(sun, "Zenith")[i, j],
        "view_zenith": float(np.mean(zen)),
        "relative_azimuth": float(relative_azimuth(sun_az, view_az)),
    }


def make_safe(
    root: Path,
    product: str,
    *,
    ul: tuple[float, float],
    size_m: int = 40,
    folder: str | None = None,
    tile_xml: str | None = None,
    edit_band: dict[str, np.ndarray] | None = None,
) -> Path:
    """A SAFE tree: the real MTD_MSIL2A.xml (+ MTD_TL.xml) and tiny rasters at ``ul``."""
    safe = root / (folder or product)
    safe.mkdir(parents=True)
    mtd = REAL / product / "MTD_MSIL2A.xml"
    shutil.copy(mtd, safe / "MTD_MSIL2A.xml")
    text = mtd.read_text(encoding="utf-8")
    ext = ".jp2" if 'imageFormat="JPEG2000"' in text else ".tif"
    files = re.findall(r"<IMAGE_FILE>([^<]+)</IMAGE_FILE>", text)
    granule = Path(files[0]).parts[1]
    tl = REAL / (
        tile_xml
        or next((REAL / product / "GRANULE").glob("*/MTD_TL.xml")).relative_to(REAL).as_posix()
    )
    (safe / "GRANULE" / granule).mkdir(parents=True)
    shutil.copy(tl, safe / "GRANULE" / granule / "MTD_TL.xml")
    crs = _tile(tl)["crs"]
    for name in files:
        match = re.search(r"_(B\d\d|B8A|SCL)_(\d\d)m$", name)
        if not match:
            continue
        band, res = match.group(1), int(match.group(2))
        if band == "SCL" and res == 20:
            n = size_m // 20
            data = np.tile(SCL, (n // 4 + 1, n // 4 + 1))[:n, :n].astype(np.uint8)
        elif band in S2_BANDS and res == NATIVE_RESOLUTION_M[band]:
            data = _dn(band, (size_m // res, size_m // res))
            if edit_band and band in edit_band:
                data = edit_band[band]
        else:
            continue
        path = safe / (name + ext)
        path.parent.mkdir(parents=True, exist_ok=True)
        options = {"QUALITY": "100", "REVERSIBLE": "YES"} if ext == ".jp2" else {}
        with rasterio.open(
            path, "w", driver="JP2OpenJPEG" if ext == ".jp2" else "GTiff",
            width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype, crs=crs,
            transform=from_origin(ul[0], ul[1], res, res), **options,
        ) as ds:  # fmt: skip
            ds.write(data, 1)
    return safe


def _node_ul(tl: Path, i: int, j: int, half: int = 20) -> tuple[float, float]:
    t = _tile(REAL / tl)
    return t["ulx"] + j * 5000 - half, t["uly"] - i * 5000 + half


# a node of T01WCS where every band has at least one detector (found from the XML)
NODE_0509 = (2, 20)


def test_safe_0509_values_mask_angles(tmp_path: Path) -> None:
    b02 = _dn("B02", (4, 4))
    b02[0, 0], b02[0, 1] = 0, 65535  # NODATA and SATURATED special values
    safe = make_safe(tmp_path, N0509, ul=_node_ul(TL_0509, *NODE_0509), edit_band={"B02": b02})
    cube = read_safe(safe)
    assert dict(cube.sizes) == {"time": 1, "y": 4, "x": 4}
    assert cube.rio.crs.to_epsg() == 32601
    assert cube.attrs["processing_baseline"] == ["05.09"]
    assert str(cube.platform.values[0]) == "S2A"
    for band in S2_BANDS:
        assert cube[band].dtype == np.float32
        assert isinstance(cube[band].data, dsa.Array)
    b = cube["B02"].values[0]
    assert np.isnan(b[0, 0]) and np.isnan(b[0, 1])  # DN 0 stays no data (not -0.1)
    np.testing.assert_allclose(b[1, 1], (1005 - 1000) / 10000, rtol=1e-6)
    # a 20 m band: each DN covers 2 × 2 pixels of the 10 m grid (nearest)
    b05 = cube["B05"].values[0]
    dn05 = _dn("B05", (2, 2))
    np.testing.assert_allclose(b05, (np.kron(dn05, np.ones((2, 2))) - 1000) / 10000, rtol=1e-6)
    expected_mask = np.kron(SCL_MASK[:2, :2], np.ones((2, 2), dtype=np.uint8))
    expected_mask[0, 0] = expected_mask[0, 1] = 3
    np.testing.assert_array_equal(cube["mask"].values[0], expected_mask)
    expected = _expected_angles(REAL / TL_0509, *NODE_0509)
    for name, value in expected.items():
        assert float(cube[name].values[0]) == pytest.approx(value, abs=0.02), name


def test_safe_0509_node_is_covered() -> None:
    root = ET.parse(REAL / TL_0509).getroot()
    for band_id in BAND_ID.values():
        grids = root.findall(f".//Viewing_Incidence_Angles_Grids[@bandId='{band_id}']")
        values = [_grid(g, "Zenith")[NODE_0509] for g in grids]
        assert np.isfinite(values).any(), band_id


def test_safe_0400_geotiff_offset_and_mean_fallback(tmp_path: Path) -> None:
    # node (20, 20) of this swath-edge tile lies outside the only detector: view grids are NaN
    safe = make_safe(tmp_path, N0400, ul=_node_ul(TL_0400, 20, 20))
    cube = read_safe(safe)
    np.testing.assert_allclose(
        cube["B11"].values[0, ::2, ::2], (_dn("B11", (2, 2)) - 1000) / 10000, rtol=1e-6
    )
    root = ET.parse(REAL / TL_0400).getroot()
    means = [
        float(el.find("ZENITH_ANGLE").text)
        for el in root.iter("Mean_Viewing_Incidence_Angle")
        if int(el.get("bandId")) in BAND_ID.values()
    ]
    assert float(cube["view_zenith"].values[0]) == pytest.approx(np.mean(means), abs=1e-4)
    assert cube.attrs["processing_baseline"] == ["04.00"]
    assert str(cube.platform.values[0]) == "S2B"


def test_safe_0214_has_no_offset(tmp_path: Path) -> None:
    safe = make_safe(tmp_path, N0214, ul=_node_ul(TL_0509, *NODE_0509), tile_xml=TL_0509)
    cube = read_safe(safe)
    np.testing.assert_allclose(cube["B04"].values[0], _dn("B04", (4, 4)) / 10000, rtol=1e-6)


def test_bbox_reads_a_lazy_window(tmp_path: Path) -> None:
    ulx, uly = _node_ul(TL_0509, *NODE_0509, half=320)
    safe = make_safe(tmp_path, N0509, ul=(ulx, uly), size_m=640)
    bbox = (ulx + 100, uly - 130, ulx + 140, uly - 100)
    cube = read_safe(safe, bbox=bbox)
    assert dict(cube.sizes) == {"time": 1, "y": 3, "x": 4}
    assert isinstance(cube["B08"].data, dsa.Array)
    dn = _dn("B08", (64, 64))[10:13, 10:14]
    np.testing.assert_allclose(cube["B08"].values[0], (dn - 1000) / 10000, rtol=1e-6)
    np.testing.assert_allclose(cube.x.values, ulx + 105 + 10 * np.arange(4))


def test_two_granules_of_one_day_make_one_time_step(tmp_path: Path) -> None:
    ulx, uly = _node_ul(TL_0509, *NODE_0509)
    west = _dn("B02", (4, 4))
    west[:, 2:] = 0  # the west granule's eastern half is outside its swath
    a = make_safe(tmp_path / "in", N0509, ul=(ulx, uly), edit_band={"B02": west})
    b = make_safe(
        tmp_path / "in", N0509, ul=(ulx + 20, uly),
        folder=N0509.replace("T01WCS", "T01WCT"),
    )  # fmt: skip
    cube = read_safe(tmp_path / "in")
    assert cube.sizes["time"] == 1 and dict(cube.sizes)["x"] == 6
    b02 = cube["B02"].values[0]
    east = (_dn("B02", (4, 4)) - 1000) / 10000
    np.testing.assert_allclose(b02[:, :2], (west[:, :2] - 1000) / 10000, rtol=1e-6)
    np.testing.assert_allclose(b02[:, 2:], east, rtol=1e-6)  # filled from the second granule
    assert sorted(cube.attrs["source"]) == sorted([a.name, b.name])


def test_period_selects_products_and_mixed_crs_needs_crs(tmp_path: Path) -> None:
    make_safe(tmp_path, N0509, ul=_node_ul(TL_0509, *NODE_0509))
    make_safe(tmp_path, N0400, ul=_node_ul(TL_0400, 0, 0))
    with pytest.raises(
        DataError, match=r"different CRSs.*32601.*32633|different CRSs.*32633.*32601"
    ):
        read_safe(tmp_path)
    cube = read_safe(tmp_path, period=("2023-01-01", "2023-06-25"))
    assert cube.attrs["source"] == [N0509]


def test_reprojection_to_another_crs(tmp_path: Path) -> None:
    safe = make_safe(tmp_path, N0400, ul=_node_ul(TL_0400, 0, 0, half=200), size_m=400)
    cube = read_safe(safe, crs="EPSG:32634")
    assert cube.rio.crs.to_epsg() == 32634
    values = cube["B02"].values[0]
    dns = _dn("B02", (40, 40))
    inside = np.isfinite(values)
    assert inside.sum() > 100
    assert np.isin(np.round(values[inside] * 10000 + 1000), dns).all()  # nearest: no new values
    assert (cube["mask"].values[0][~inside] == 3).all()


def _edited(tmp_path: Path, product: str, xml: str, edit) -> Path:
    tl = TL_0509 if product in (N0509, N0214) else TL_0400
    ul = _node_ul(tl, *NODE_0509) if product != N0400 else _node_ul(tl, 0, 0)
    safe = make_safe(tmp_path, product, ul=ul, tile_xml=tl)
    path = safe / xml if xml == "MTD_MSIL2A.xml" else next(safe.glob("GRANULE/*/MTD_TL.xml"))
    path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    return safe


def test_missing_angle_grids_is_an_error(tmp_path: Path) -> None:
    def drop(text: str) -> str:
        return re.sub(r"<Sun_Angles_Grid>.*?</Sun_Angles_Grid>", "", text, flags=re.S)

    safe = _edited(tmp_path, N0509, "MTD_TL.xml", drop)
    with pytest.raises(DataError, match=r"MTD_TL\.xml: missing element Sun_Angles_Grid"):
        read_safe(safe)


def test_baseline_errors(tmp_path: Path) -> None:
    def unknown(text: str) -> str:
        return text.replace(">05.09<", ">5.9b<")

    def no_offsets(text: str) -> str:
        return re.sub(
            r"<BOA_ADD_OFFSET_VALUES_LIST>.*?</BOA_ADD_OFFSET_VALUES_LIST>", "", text, flags=re.S
        )

    with pytest.raises(DataError, match=r"MTD_MSIL2A\.xml: unknown PROCESSING_BASELINE '5\.9b'"):
        read_safe(_edited(tmp_path / "a", N0509, "MTD_MSIL2A.xml", unknown))
    with pytest.raises(
        DataError, match=r"MTD_MSIL2A\.xml: PROCESSING_BASELINE 04\.00.*BOA_ADD_OFFSET"
    ):
        read_safe(_edited(tmp_path / "b", N0400, "MTD_MSIL2A.xml", no_offsets))


def test_bbox_outside_and_missing_files(tmp_path: Path) -> None:
    safe = make_safe(tmp_path, N0509, ul=_node_ul(TL_0509, *NODE_0509))
    with pytest.raises(DataError, match=rf"outside every product: .*{N0509}"):
        read_safe(safe, bbox=(0, 0, 100, 100))
    next(safe.rglob("*_B8A_20m.jp2")).unlink()
    with pytest.raises(DataError, match=r"_B8A_20m\.jp2: listed in .*MTD_MSIL2A\.xml"):
        read_safe(safe)
    with pytest.raises(DataError, match="not a SAFE L2A product"):
        read_safe(tmp_path / N0509 / "GRANULE")
