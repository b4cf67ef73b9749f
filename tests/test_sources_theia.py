"""Theia/MAJA L2A reader on product folders built from theia_maja_facts.txt.

No real ``*_MTD_ALL.xml`` is available under a permissive licence, so the fixture writes one
with the element layout of the fact sheet (MUSCATE format: Geoposition_Informations,
Geometric_Informations/Mean_Value_List and Angles_Grids_List, Radiometric_Informations).
"""

from __future__ import annotations

from pathlib import Path

import dask.array as dsa
import numpy as np
import pytest

from conftest import write_geotiff
from releo.data.contracts import S2_BANDS
from releo.data.errors import DataError
from releo.data.sources import read_theia

# odc-geo's lazy reprojection: a shapely deprecation and rasterio's warning on its scratch dataset
pytestmark = [
    pytest.mark.filterwarnings("ignore:The 'shapely.ops.transform:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning"),
]

ULX, ULY = 300000.0, 4900020.0  # tile T31TCJ
NAME_A = "SENTINEL2A_20230610-105643-123_L2A_T31TCJ_C_V2-2"
NAME_B = "SENTINEL2B_20230615-105651-456_L2A_T31TCJ_C_V2-2"
THEIA = {b: ("B8A" if b == "B8A" else f"B{int(b[1:])}") for b in S2_BANDS}
R1 = ("B02", "B03", "B04", "B08")
NODE = (5, 5)  # window centred on this 5 km grid node (row, col)


def _values(grid: np.ndarray) -> str:
    return "".join(
        "<VALUES>" + " ".join("NaN" if np.isnan(v) else f"{v:.4f}" for v in row) + "</VALUES>"
        for row in grid
    )


def _angles(zenith: np.ndarray, azimuth: np.ndarray) -> str:
    steps = '<COL_STEP unit="m">5000</COL_STEP><ROW_STEP unit="m">5000</ROW_STEP>'
    return (
        f"<Zenith>{steps}<Values_List>{_values(zenith)}</Values_List></Zenith>"
        f"<Azimuth>{steps}<Values_List>{_values(azimuth)}</Values_List></Azimuth>"
    )


def sun_grids() -> tuple[np.ndarray, np.ndarray]:
    i, j = np.mgrid[0:23, 0:23].astype(float)
    return 30 + 0.01 * i + 0.02 * j, 150 + 0.05 * j


def view_grids(band: int, detector: int) -> tuple[np.ndarray, np.ndarray]:
    """Detector 1 sees columns 0-11, detector 2 columns 11-22; rows ≥ 18 seen by none."""
    i, j = np.mgrid[0:23, 0:23].astype(float)
    zen = 5 + 0.1 * j + 0.01 * band + (0.2 if detector == 2 else 0.0)
    az = np.full_like(zen, 100.0 if detector == 1 else 104.0)
    outside = (j > 11) if detector == 1 else (j < 11)
    outside |= i >= 18
    return np.where(outside, np.nan, zen), np.where(outside, np.nan, az)


def mtd_all(name: str, *, angles: bool = True) -> str:
    platform, date = name.split("_")[:2]
    acquired = (
        f"{date[:4]}-{date[4:6]}-{date[6:8]}T{date[9:11]}:{date[11:13]}:{date[13:15]}.{date[16:]}Z"
    )
    view = "".join(
        f'<Band_Viewing_Incidence_Angles_Grids_List band_id="{THEIA[b]}">'
        + "".join(
            f'<Viewing_Incidence_Angles_Grids detector_id="{d}">'
            + _angles(*view_grids(k, d))
            + "</Viewing_Incidence_Angles_Grids>"
            for d in (1, 2)
        )
        + "</Band_Viewing_Incidence_Angles_Grids_List>"
        for k, b in enumerate(S2_BANDS)
    )
    means = "".join(
        f'<Mean_Viewing_Incidence_Angle band_id="{THEIA[b]}"><ZENITH_ANGLE unit="deg">'
        f'{6 + 0.1 * k}</ZENITH_ANGLE><AZIMUTH_ANGLE unit="deg">102</AZIMUTH_ANGLE>'
        "</Mean_Viewing_Incidence_Angle>"
        for k, b in enumerate(S2_BANDS)
    )
    grids = (
        f"<Angles_Grids_List><Sun_Angles_Grids>{_angles(*sun_grids())}</Sun_Angles_Grids>"
        f"<Viewing_Incidence_Angles_Grids_List>{view}</Viewing_Incidence_Angles_Grids_List>"
        "</Angles_Grids_List>"
        if angles
        else ""
    )
    groups = "".join(
        f'<Group_Geopositioning group_id="{g}"><ULX>{ULX:.0f}</ULX><ULY>{ULY:.0f}</ULY>'
        f"<XDIM>{r}</XDIM><YDIM>-{r}</YDIM><NROWS>{n}</NROWS><NCOLS>{n}</NCOLS>"
        "</Group_Geopositioning>"
        for g, r, n in (("R1", 10, 10980), ("R2", 20, 5490))
    )
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Muscate_Metadata_Document>
  <Metadata_Identification>
    <METADATA_FORMAT version="1.16">METADATA_MUSCATE</METADATA_FORMAT>
  </Metadata_Identification>
  <Dataset_Identification>
    <IDENTIFIER>{name}</IDENTIFIER><AUTHORITY>THEIA</AUTHORITY><PRODUCER>MUSCATE</PRODUCER>
    <GEOGRAPHICAL_ZONE type="Tile">T31TCJ</GEOGRAPHICAL_ZONE>
  </Dataset_Identification>
  <Product_Characteristics>
    <ACQUISITION_DATE>{acquired}</ACQUISITION_DATE>
    <PRODUCT_VERSION>2.2</PRODUCT_VERSION><PLATFORM>{platform}</PLATFORM>
  </Product_Characteristics>
  <Geoposition_Informations>
    <Coordinate_Reference_System><GEO_TABLES version="1.0">EPSG</GEO_TABLES>
      <Horizontal_Coordinate_System><HORIZONTAL_CS_TYPE>PROJECTED</HORIZONTAL_CS_TYPE>
        <HORIZONTAL_CS_NAME>WGS 84 / UTM zone 31N</HORIZONTAL_CS_NAME>
        <HORIZONTAL_CS_CODE>32631</HORIZONTAL_CS_CODE></Horizontal_Coordinate_System>
    </Coordinate_Reference_System>
    <Geopositioning><Group_Geopositioning_List>{groups}</Group_Geopositioning_List></Geopositioning>
  </Geoposition_Informations>
  <Geometric_Informations>
    <Mean_Value_List>
      <Sun_Angles><ZENITH_ANGLE unit="deg">31.5</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">150.5</AZIMUTH_ANGLE></Sun_Angles>
      <Mean_Viewing_Incidence_Angle_List>{means}</Mean_Viewing_Incidence_Angle_List>
    </Mean_Value_List>
    {grids}
  </Geometric_Informations>
  <Radiometric_Informations>
    <REFLECTANCE_QUANTIFICATION_VALUE>10000</REFLECTANCE_QUANTIFICATION_VALUE>
    <WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE>20</WATER_VAPOR_CONTENT_QUANTIFICATION_VALUE>
    <AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE>200</AEROSOL_OPTICAL_THICKNESS_QUANTIFICATION_VALUE>
    <Special_Values_List>
      <SPECIAL_VALUE name="nodata">-10000</SPECIAL_VALUE>
      <SPECIAL_VALUE name="water_vapor_content_nodata">0</SPECIAL_VALUE>
      <SPECIAL_VALUE name="aerosol_optical_thickness_nodata">0</SPECIAL_VALUE>
    </Special_Values_List>
  </Radiometric_Informations>
</Muscate_Metadata_Document>
"""


def fre_dn(band: str) -> np.ndarray:
    n = 8 if band in R1 else 4
    return (100 + 50 * S2_BANDS.index(band) + np.arange(n * n).reshape(n, n)).astype(np.int16)


def masks() -> dict[str, np.ndarray]:
    r1 = {k: np.zeros((8, 8), np.uint8) for k in ("CLM_R1", "MG2_R1", "EDG_R1", "SAT_R1")}
    r2 = {k: np.zeros((4, 4), np.uint8) for k in ("EDG_R2", "SAT_R2", "CLM_R2", "MG2_R2")}
    clm, mg2 = r1["CLM_R1"], r1["MG2_R1"]
    clm[0, 2] = 1 | 2  # cloud
    clm[0, 3] = 1 | 32  # shadow of a cloud in the image
    clm[0, 4] = 1  # summary bit alone: cloud or shadow → counted as cloud
    clm[0, 5] = 16  # thinnest cloud without the summary bit: clear
    mg2[1, 0] = 8  # cloud shadow
    mg2[1, 1] = 16  # topographic shadow
    mg2[1, 2] = 4  # snow: masked like cloud
    mg2[1, 3] = 1  # water: clear
    mg2[1, 4] = 32  # hidden by relief: no data
    mg2[1, 5] = 64  # sun too low for the slope correction: shadow in FRE only
    r1["EDG_R1"][2, 0] = 1
    r1["SAT_R1"][2, 1] = 2  # B3 saturated
    r2["EDG_R2"][3, 3] = 1  # → 10 m pixels (6-7, 6-7)
    r2["SAT_R2"][3, 0] = 4  # B7 saturated → 10 m pixels (6-7, 0-1)
    return {**r1, **r2}


EXPECTED_MASK = np.zeros((8, 8), np.uint8)
EXPECTED_MASK[0, 2:5] = [1, 2, 1]
EXPECTED_MASK[1, :6] = [2, 2, 1, 0, 3, 2]
EXPECTED_MASK[2, :3] = [3, 3, 3]  # EDG, SAT, B3 nodata DN
EXPECTED_MASK[6:8, 6:8] = 3
EXPECTED_MASK[6:8, 0:2] = 3


def _write(path: Path, data: np.ndarray, res: int, ul: tuple[float, float], nodata=None) -> None:
    write_geotiff(path, data, "EPSG:32631", ul, res, nodata)


def make_theia(root: Path, name: str = NAME_A, *, node=NODE, angles: bool = True) -> Path:
    """A Theia product folder: FRE/SRE bands, MASKS, and an MTD_ALL.xml from the fact sheet."""
    product = root / name
    product.mkdir(parents=True)
    (product / f"{name}_MTD_ALL.xml").write_text(mtd_all(name, angles=angles), encoding="utf-8")
    ul = (ULX + node[1] * 5000 - 40, ULY - node[0] * 5000 + 40)
    for band in S2_BANDS:
        res = 10 if band in R1 else 20
        fre = fre_dn(band)
        if band == "B03":
            fre[2, 2] = -10000
        _write(product / f"{name}_FRE_{THEIA[band]}.tif", fre, res, ul, nodata=-10000)
        _write(product / f"{name}_SRE_{THEIA[band]}.tif", fre + 7, res, ul, nodata=-10000)
    for key, data in masks().items():
        _write(product / "MASKS" / f"{name}_{key}.tif", data, 10 if key.endswith("R1") else 20, ul)
    return product


def test_theia_values_masks_angles(tmp_path: Path) -> None:
    cube = read_theia(make_theia(tmp_path))
    assert dict(cube.sizes) == {"time": 1, "y": 8, "x": 8}
    assert cube.attrs["reflectance"] == "FRE"
    assert cube.rio.crs.to_epsg() == 32631
    assert str(cube.platform.values[0]) == "S2A"
    assert str(cube.time.values[0]).startswith("2023-06-10T10:56:43.123")
    assert isinstance(cube["B04"].data, dsa.Array)
    np.testing.assert_allclose(cube["B04"].values[0], fre_dn("B04") / 10000, rtol=1e-6)
    b11 = cube["B11"].values[0]
    np.testing.assert_allclose(b11, np.kron(fre_dn("B11"), np.ones((2, 2))) / 10000, rtol=1e-6)
    assert np.isnan(cube["B03"].values[0, 2, 2])
    np.testing.assert_array_equal(cube["mask"].values[0], EXPECTED_MASK)
    # node (5, 5): the grids are linear, so the mean over the centred window is the node value
    i, j = NODE
    assert float(cube["sun_zenith"][0]) == pytest.approx(30 + 0.01 * i + 0.02 * j, abs=1e-3)
    view = 5 + 0.1 * j + 0.01 * np.mean(range(len(S2_BANDS)))  # detector 1 only
    assert float(cube["view_zenith"][0]) == pytest.approx(view, abs=1e-3)
    assert float(cube["relative_azimuth"][0]) == pytest.approx(150 + 0.05 * j - 100, abs=1e-3)


def test_theia_sre_and_grazing_sun(tmp_path: Path) -> None:
    cube = read_theia(make_theia(tmp_path), reflectance="sre")
    assert cube.attrs["reflectance"] == "SRE"
    np.testing.assert_allclose(cube["B02"].values[0], (fre_dn("B02") + 7) / 10000, rtol=1e-6)
    assert cube["mask"].values[0, 1, 5] == 0  # slope-correction flag is irrelevant to SRE


def test_theia_detector_merge_and_mean_fallback(tmp_path: Path) -> None:
    cube = read_theia(make_theia(tmp_path / "a", node=(5, 11)))
    band_term = 0.01 * np.mean(range(len(S2_BANDS)))
    # column 11 is seen by both detectors: their values are averaged
    assert float(cube["view_zenith"][0]) == pytest.approx(5 + 1.1 + 0.1 + band_term, abs=0.01)
    cube = read_theia(make_theia(tmp_path / "b", node=(20, 5)))  # no detector there
    assert float(cube["view_zenith"][0]) == pytest.approx(6 + 0.1 * 4.5, abs=1e-6)


def test_theia_two_dates_bbox_and_period(tmp_path: Path) -> None:
    make_theia(tmp_path, NAME_A)
    make_theia(tmp_path, NAME_B)
    cube = read_theia(tmp_path)
    assert cube.sizes["time"] == 2
    assert [str(p) for p in cube.platform.values] == ["S2A", "S2B"]
    x0, y0 = ULX + NODE[1] * 5000 - 40, ULY - NODE[0] * 5000 + 40
    cube = read_theia(
        tmp_path, bbox=(x0 + 20, y0 - 50, x0 + 40, y0 - 20), period=("2023-06-12", None)
    )
    assert dict(cube.sizes) == {"time": 1, "y": 3, "x": 2}
    np.testing.assert_allclose(cube["B08"].values[0], fre_dn("B08")[2:5, 2:4] / 10000, rtol=1e-6)


def test_theia_errors(tmp_path: Path) -> None:
    no_grids = make_theia(tmp_path / "a", angles=False)
    with pytest.raises(DataError, match=r"_MTD_ALL\.xml: missing element Angles_Grids_List"):
        read_theia(no_grids)
    product = make_theia(tmp_path / "b")
    with pytest.raises(DataError, match="reflectance must be one of"):
        read_theia(product, reflectance="TOA")
    with pytest.raises(DataError, match=rf"outside every product: .*{NAME_A}"):
        read_theia(product, bbox=(0, 0, 10, 10))
    next((product / "MASKS").glob("*_EDG_R2.tif")).unlink()
    with pytest.raises(DataError, match=r"missing mask EDG_R2 \(MASKS/\*_EDG_R2\.tif\)"):
        read_theia(product)
    with pytest.raises(DataError, match="not a Theia L2A product"):
        read_theia(product / "MASKS")
