"""STAC readers on real Earth Search / Planetary Computer items pointed at tiny local GeoTIFFs."""

from __future__ import annotations

import copy
import datetime
import json
from pathlib import Path

import dask.array as da
import numpy as np
import pystac
import pytest
from odc.geo.geobox import GeoBox
from pyproj import Transformer
from shapely.geometry import shape

from conftest import write_geotiff
from releo.data.contracts import MASK_CLEAR, MASK_CLOUD, MASK_NODATA, MASK_SHADOW, S2_BANDS
from releo.data.errors import DataError
from releo.data.sources import read_stac_s1, read_stac_s2
from releo.data.sources.stac import S2_ASSET_KEYS, _granule_angles, boa_offset

DATA = Path(__file__).parent / "data" / "real_formats" / "stac"
ES_0509 = DATA / "earth_search_v1" / "S2A_32TMS_20221207_0_L2A.json"
ES_0400 = DATA / "earth_search_v1" / "S2B_33TWN_20220226_0_L2A.json"
ES_0300 = DATA / "earth_search_v1" / "S2A_33TWN_20210629_0_L2A.json"
PC_S2 = (
    DATA
    / "planetary_computer"
    / ("sentinel-2-l2a_S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251.json")
)
PC_S1 = DATA / "planetary_computer" / "sentinel-1-rtc_4items.json"
MTD_TL = (
    Path(__file__).parent
    / "data/real_formats/s2_l2a_safe/S2A_MSIL2A_20230625T234621_N0509_R073_T01WCS_20230626T022157"
    ".SAFE/GRANULE/L2A_T01WCS_A041826_20230625T234624/MTD_TL.xml"
)

SIZE_M = 60.0
BAND_DN = {band: 2000 + 100 * i for i, band in enumerate(S2_BANDS)}
SCL_20M = np.array([[4, 9, 3], [8, 10, 5], [6, 2, 11]], dtype=np.uint8)
MASK_20M = np.array(
    [
        [MASK_CLEAR, MASK_CLOUD, MASK_SHADOW],
        [MASK_CLOUD, MASK_CLOUD, MASK_CLEAR],
        [MASK_CLEAR, MASK_SHADOW, MASK_CLOUD],  # SCL 11, snow: masked like cloud
    ],
    dtype=np.uint8,
)
VIEW_ZENITH, VIEW_AZIMUTH = 6.0, 100.0


def write_tif(path: Path, data: np.ndarray, epsg: int, x0: float, y0: float, res: float, nodata):
    write_geotiff(path, data, f"EPSG:{epsg}", (x0, y0), res, nodata)


def site(item: dict, epsg: int, step: float = SIZE_M) -> tuple[float, float]:
    """Upper-left corner of a small window at the footprint's centre, snapped to ``step``."""
    centre = shape(item["geometry"]).centroid
    x, y = Transformer.from_crs(4326, epsg, always_xy=True).transform(centre.x, centre.y)
    return float(np.floor(x / step) * step), float(np.floor(y / step) * step)


def mtd_tl(path: Path, epsg: int, ulx: float, uly: float) -> Path:
    """A granule metadata file with constant angle grids (view zenith 6°, azimuth 100°)."""
    values = "\n".join("<VALUES>" + " ".join(["{v}"] * 23) + "</VALUES>" for _ in range(23))

    def grid(zen: float, az: float) -> str:
        return (
            f"<Zenith><COL_STEP>5000</COL_STEP><ROW_STEP>5000</ROW_STEP><Values_List>"
            f"{values.format(v=zen)}</Values_List></Zenith>"
            f"<Azimuth><COL_STEP>5000</COL_STEP><ROW_STEP>5000</ROW_STEP><Values_List>"
            f"{values.format(v=az)}</Values_List></Azimuth>"
        )

    path.write_text(
        f"""<?xml version="1.0"?><n1:Level-2A_Tile_ID xmlns:n1="urn:x"><n1:Geometric_Info>
<Tile_Geocoding><HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
<Geoposition resolution="10"><ULX>{ulx}</ULX><ULY>{uly}</ULY></Geoposition></Tile_Geocoding>
<Tile_Angles><Sun_Angles_Grid>{grid(50.0, 160.0)}</Sun_Angles_Grid>
<Viewing_Incidence_Angles_Grids bandId="1" detectorId="3">{grid(VIEW_ZENITH, VIEW_AZIMUTH)}
</Viewing_Incidence_Angles_Grids></Tile_Angles></n1:Geometric_Info></n1:Level-2A_Tile_ID>""",
        encoding="utf-8",
    )
    return path


def s2_item(tmp: Path, source: Path, name: str = "a", b02: np.ndarray | None = None) -> dict:
    """The real item with its band assets pointed at 60 m × 60 m GeoTIFFs at its centre."""
    item = json.loads(source.read_text(encoding="utf-8"))
    epsg = item["properties"]["proj:epsg"]
    x0, y0 = site(item, epsg)
    folder = tmp / f"{item['id']}_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    keys = {k.lower(): k for k in item["assets"]}
    for band, candidates in S2_ASSET_KEYS.items():
        key = next(keys[c.lower()] for c in candidates if c.lower() in keys)
        res = 10.0 if band in ("B02", "B03", "B04", "B08") else 20.0
        n = int(SIZE_M / res)
        if band == "SCL":
            data = SCL_20M
        elif band == "B02" and b02 is not None:
            data = b02
        else:
            data = np.full((n, n), BAND_DN[band], dtype=np.uint16)
            if band == "B02":
                data[0, 0] = 0  # no data
        path = folder / f"{band}.tif"
        write_tif(path, data, epsg, x0, y0, res, 0)
        item["assets"][key]["href"] = str(path)
    tile = item["assets"][keys.get("red", keys.get("b04"))]["proj:transform"]
    xml = mtd_tl(folder / "MTD_TL.xml", epsg, tile[2], tile[5])
    for key in ("granule_metadata", "granule-metadata"):
        if key in item["assets"]:
            item["assets"][key]["href"] = str(xml)
    return item


def dump(tmp: Path, items: list[dict] | dict, name: str = "items.json") -> Path:
    path = tmp / name
    path.write_text(json.dumps(items), encoding="utf-8")
    return path


def bbox_of(item: dict) -> tuple[float, float, float, float]:
    x0, y0 = site(item, item["properties"]["proj:epsg"])
    return (x0, y0 - SIZE_M, x0 + SIZE_M, y0)


def expected_mask() -> np.ndarray:
    mask = np.kron(MASK_20M, np.ones((2, 2), dtype=np.uint8))
    mask[0, 0] = MASK_NODATA  # B02 DN 0
    return mask


@pytest.mark.parametrize(
    ("source", "offset"),
    [(ES_0509, 0.0), (ES_0400, -1000.0), (ES_0300, 0.0), (PC_S2, -1000.0)],
    ids=["es-05.09-flag-true", "es-04.00-flag-false", "es-03.00", "pc-04.00"],
)
def test_offset_mask_and_angles_per_convention(tmp_path, source, offset):
    item = s2_item(tmp_path, source)
    epsg = item["properties"]["proj:epsg"]
    fc = {"type": "FeatureCollection", "features": [item]}
    cube = read_stac_s2(dump(tmp_path, fc), bbox=bbox_of(item), crs=f"EPSG:{epsg}")

    assert cube.sizes == {"time": 1, "y": 6, "x": 6}
    assert cube.rio.crs.to_epsg() == epsg
    assert float(abs(cube.rio.resolution()[0])) == 10.0
    assert isinstance(cube["B04"].data, da.Array)  # lazy
    for band in S2_BANDS:
        assert cube[band].dtype == np.float32
        expected = np.float32((BAND_DN[band] + offset) / 10000.0)
        values = cube[band].values[0]
        if band == "B02":
            assert np.isnan(values[0, 0])  # DN 0 is no data, not -0.1
            values = values.ravel()[1:]
        np.testing.assert_allclose(values, expected, rtol=1e-6)
    np.testing.assert_array_equal(cube["mask"].values[0], expected_mask())
    assert cube["mask"].dtype == np.uint8

    props = item["properties"]
    sun_zenith = (
        90.0 - props["view:sun_elevation"]
        if "view:sun_elevation" in props
        else props["s2:mean_solar_zenith"]
    )
    sun_azimuth = props.get("view:sun_azimuth", props.get("s2:mean_solar_azimuth"))
    assert cube["sun_zenith"].values[0] == pytest.approx(sun_zenith, abs=1e-4)
    assert cube["view_zenith"].values[0] == pytest.approx(VIEW_ZENITH, abs=1e-4)
    raa = abs(sun_azimuth - VIEW_AZIMUTH) % 360.0
    assert cube["relative_azimuth"].values[0] == pytest.approx(min(raa, 360 - raa), abs=1e-4)
    assert str(cube["platform"].values[0]) == "S2" + props["platform"][-1].upper()
    assert item["id"] in cube.attrs["boa_offsets"]


def test_raster_bands_offset_is_not_applied_blindly():
    item = pystac.Item.from_dict(json.loads(ES_0509.read_text()))
    assert item.assets["red"].extra_fields["raster:bands"][0]["offset"] == -0.1
    assert boa_offset(item)[0] == 0.0  # the flag says the offset is already in the pixels


def test_solar_day_groups_two_items_of_one_day(tmp_path):
    first = s2_item(tmp_path, ES_0400, "first")
    second = s2_item(tmp_path, ES_0400, "second", b02=np.full((6, 6), 3000, dtype=np.uint16))
    second["id"] += "_later"
    second["properties"]["datetime"] = "2022-02-26T09:57:40.000000Z"
    path = dump(tmp_path, [second, first])  # a JSON list, out of time order
    cube = read_stac_s2(path, bbox=bbox_of(first), crs="EPSG:32633")
    assert cube.sizes["time"] == 1
    b02 = cube["B02"].values[0]
    # the earlier item wins where it has data; its no-data pixel is filled by the later one
    assert b02[0, 0] == pytest.approx(0.2, abs=1e-6)
    np.testing.assert_allclose(b02.ravel()[1:], 0.1, rtol=1e-6)
    assert cube["mask"].values[0, 0, 0] == MASK_CLEAR  # SCL 4, and B02 is now valid
    assert str(cube["time"].values[0]).startswith("2022-02-26T09:57:32")


def test_one_day_items_with_different_offsets_are_fused(tmp_path):
    """Same day, one item with the offset already applied: each keeps its own offset."""
    first = s2_item(tmp_path, ES_0400, "first")
    second = s2_item(tmp_path, ES_0400, "second", b02=np.full((6, 6), 3000, dtype=np.uint16))
    second["id"] += "_harmonised"
    second["properties"]["datetime"] = "2022-02-26T09:57:40.000000Z"
    second["properties"]["earthsearch:boa_offset_applied"] = True
    cube = read_stac_s2(dump(tmp_path, [first, second]), bbox=bbox_of(first), crs="EPSG:32633")
    assert cube.sizes["time"] == 1
    b02 = cube["B02"].values[0]
    assert b02[0, 0] == pytest.approx(0.3, abs=1e-6)  # from the second item, DN/10000
    np.testing.assert_allclose(b02.ravel()[1:], 0.1, rtol=1e-6)  # first item, (DN-1000)/10000
    np.testing.assert_array_equal(cube["mask"].values[0, 0, 1:], expected_mask()[0, 1:])


def test_period_and_bbox_crs(tmp_path):
    item = s2_item(tmp_path, ES_0300)
    path = dump(tmp_path, [item])
    xmin, ymin, xmax, ymax = bbox_of(item)
    to_lonlat = Transformer.from_crs(32633, 4326, always_xy=True)
    lon0, lat0 = to_lonlat.transform(xmin + 1, ymin + 1)
    lon1, lat1 = to_lonlat.transform(xmax - 1, ymax - 1)
    cube = read_stac_s2(
        path,
        bbox=(lon0, lat0, lon1, lat1),
        bbox_crs="EPSG:4326",
        crs="EPSG:32633",
        period=("2021-06-29", "2021-06-29"),
    )
    assert cube.sizes["time"] == 1
    with pytest.raises(DataError, match="no item covers"):
        read_stac_s2(path, bbox=bbox_of(item), crs="EPSG:32633", period="2022-01-01/2022-12-31")


def test_item_without_processing_baseline_is_an_error(tmp_path):
    item = s2_item(tmp_path, ES_0400)
    del item["properties"]["s2:processing_baseline"]
    del item["properties"]["s2:product_uri"]
    with pytest.raises(DataError, match=rf"{item['id']}.*processing baseline"):
        read_stac_s2(dump(tmp_path, [item]), bbox=bbox_of(item), crs="EPSG:32633")


def test_item_without_angles_is_an_error(tmp_path):
    item = s2_item(tmp_path, PC_S2)
    del item["properties"]["s2:mean_solar_zenith"]
    del item["assets"]["granule-metadata"]
    with pytest.raises(DataError, match=rf"{item['id']}: no sun_zenith, view_zenith"):
        read_stac_s2(dump(tmp_path, [item]), bbox=bbox_of(item), crs="EPSG:32624")


def test_bbox_outside_the_items_is_an_error(tmp_path):
    item = s2_item(tmp_path, ES_0509)
    with pytest.raises(DataError, match="no item covers the requested bbox"):
        read_stac_s2(dump(tmp_path, [item]), bbox=(0.0, 0.0, 60.0, 60.0), crs="EPSG:32632")


def test_granule_metadata_angles_of_a_real_mtd_tl():
    """The real 05.09 tile metadata (EPSG:32601) sampled over a 1 km box inside the tile."""
    gbox = GeoBox.from_bbox((374500, 7629500, 375500, 7630500), crs="EPSG:32601", resolution=10)
    item = pystac.Item("x", None, None, datetime.datetime(2023, 6, 25), {})
    angles = _granule_angles(item, str(MTD_TL), gbox, None)
    assert angles["sun_zenith"] == pytest.approx(45.6, abs=1.5)  # tile mean 45.59
    assert angles["view_zenith"] == pytest.approx(10.48, abs=0.3)  # merged grid node (14, 15)
    assert 0.0 <= angles["view_azimuth"] < 360.0


# --------------------------------------------------------------------------------- S1


def s1_item(
    tmp: Path,
    index: int = 0,
    vv: float = 0.1,
    vh: float = 0.01,
    epsg: int | None = None,
    name: str = "a",
    incidence: float | None = None,
    nodata_pixel: bool = True,
) -> tuple[dict, tuple[float, float, float, float]]:
    """A real PC sentinel-1-rtc item on float32 GeoTIFFs (nodata -32768) around its centre;
    the returned bbox (60 m) is in the item's published CRS."""
    items = json.loads(PC_S1.read_text(encoding="utf-8"))
    item = copy.deepcopy(items[index])
    published = item["properties"]["proj:epsg"]
    x0, y0 = site(item, published)
    bbox = (x0, y0 - SIZE_M, x0 + SIZE_M, y0)
    epsg = epsg or published
    # a 200 m margin so that a reprojected file still covers the whole bbox
    gx, gy = Transformer.from_crs(published, epsg, always_xy=True).transform(x0, y0)
    gx, gy = np.floor(gx / 10) * 10 - 200, np.floor(gy / 10) * 10 + 200
    folder = tmp / f"s1_{name}"
    folder.mkdir(parents=True, exist_ok=True)
    for key, value in (("vv", vv), ("vh", vh)):
        data = np.full((46, 46), value, dtype=np.float32)
        if nodata_pixel:
            data[20, 20] = -32768.0  # the bbox's upper-left pixel
        write_tif(folder / f"{key}.tif", data, epsg, gx, gy, 10.0, -32768.0)
        item["assets"][key]["href"] = str(folder / f"{key}.tif")
    if incidence is not None:
        data = np.full((46, 46), incidence, dtype=np.float32)
        write_tif(folder / "lia.tif", data, epsg, gx, gy, 10.0, -32768.0)
        item["assets"]["local_incidence_angle"] = {
            "href": str(folder / "lia.tif"),
            "type": "image/tiff",
            "raster:bands": [{"nodata": -32768, "data_type": "float32"}],
        }
    # the item now describes the tiny files, as a real item describes its assets
    item["properties"].update(
        {"proj:epsg": epsg, "proj:shape": [46, 46], "proj:transform": [10, 0, gx, 0, -10, gy]}
    )
    item["properties"].pop("proj:bbox", None)
    return item, bbox


def test_s1_rtc_gamma0_linear_to_sigma0_db(tmp_path):
    item, bbox = s1_item(tmp_path)
    cube = read_stac_s1(dump(tmp_path, [item]), bbox=bbox, crs="EPSG:32633", incidence_angle=40.0)
    assert cube.sizes == {"time": 1, "y": 6, "x": 6}
    assert isinstance(cube["VV"].data, da.Array)
    cos = np.cos(np.deg2rad(40.0))
    vv = cube["VV"].values[0]
    assert cube["VV"].dtype == np.float32
    assert np.isnan(vv[0, 0]) and np.isnan(cube["VH"].values[0, 0, 0])  # -32768 is no data
    np.testing.assert_allclose(vv.ravel()[1:], 10 * np.log10(0.1 * cos), rtol=1e-5)
    np.testing.assert_allclose(
        cube["VH"].values[0].ravel()[1:], 10 * np.log10(0.01 * cos), rtol=1e-5
    )
    assert (cube["incidence_angle"].values == 40.0).all()
    assert "user-stated: 40.0 degrees" in cube.attrs["incidence_angle_source"]
    assert "gamma0_T linear" in cube.attrs["backscatter"]
    assert list(cube["orbit_direction"].values) == ["descending"]
    assert list(cube["relative_orbit"].values) == [51]
    assert cube["relative_orbit"].attrs["relative_orbit_known"] == "true"
    assert list(cube["platform"].values) == ["S1A"]

    kept = read_stac_s1(
        dump(tmp_path, [item]), bbox=bbox, crs="EPSG:32633", incidence_angle=40.0, to_sigma0=False
    )
    np.testing.assert_allclose(kept["VV"].values[0].ravel()[1:], -10.0, rtol=1e-6)  # 10·log10(0.1)


def test_s1_incidence_from_the_product(tmp_path):
    item, bbox = s1_item(tmp_path, incidence=33.0)
    cube = read_stac_s1(dump(tmp_path, [item]), bbox=bbox, crs="EPSG:32633")
    assert (cube["incidence_angle"].values == 33.0).all()
    cos = np.cos(np.deg2rad(33.0))
    np.testing.assert_allclose(cube["VV"].values[0, 1], 10 * np.log10(0.1 * cos), rtol=1e-5)
    assert cube.attrs["incidence_angle_source"] == "product layer"


def test_s1_without_incidence_is_an_error(tmp_path):
    item, bbox = s1_item(tmp_path)
    with pytest.raises(DataError, match=rf"{item['id']}: no incidence angle.*incidence_angle="):
        read_stac_s1(dump(tmp_path, [item]), bbox=bbox, crs="EPSG:32633")


def test_s1_mixed_crs_reprojected(tmp_path):
    a, bbox = s1_item(tmp_path, vv=0.1, name="a")
    b, _ = s1_item(tmp_path, vv=0.2, epsg=32634, name="b", nodata_pixel=False)
    b["id"] += "_next"
    b["properties"]["datetime"] = "2024-05-01T04:59:10Z"
    cube = read_stac_s1(dump(tmp_path, [a, b]), bbox=bbox, crs="EPSG:32633", incidence_angle=40)
    assert cube.sizes["time"] == 2
    cos = np.cos(np.deg2rad(40.0))
    vv = cube["VV"].values
    np.testing.assert_allclose(vv[0].ravel()[1:], 10 * np.log10(0.1 * cos), rtol=1e-5)
    assert np.isfinite(vv[1]).all()  # the EPSG:32634 file covers the bbox after reprojection
    np.testing.assert_allclose(vv[1], 10 * np.log10(0.2 * cos), rtol=1e-5)


def test_s1_item_list_of_real_pc_items_loads_one_pass(tmp_path):
    """Two adjacent slices of one pass are one acquisition (same solar day and orbit)."""
    a, bbox = s1_item(tmp_path, index=0, name="a")
    b, _ = s1_item(tmp_path, index=1, name="b")
    cube = read_stac_s1(dump(tmp_path, [a, b]), bbox=bbox, crs="EPSG:32633", incidence_angle=40)
    assert cube.sizes["time"] == 1
