"""S1 backscatter files: the real Belgian WorldCereal series and small σ0/γ0 GeoTIFFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REAL_SERIES, write_geotiff
from releo.data.errors import DataError
from releo.data.sources import read_s1_files
from releo.data.sources.s1 import relative_orbit_codes

SITE_A = next(REAL_SERIES.glob("worldcereal_00002806639B424A/S1_GRD-ASCENDING_20m_*.nc"))


def write_tif(path: Path, data: np.ndarray, x0: float, y0: float, res: float, nodata, **tags):
    write_geotiff(path, data, "EPSG:32631", (x0, y0), res, nodata, **tags)


def test_belgian_worldcereal_series():
    cube = read_s1_files(SITE_A, incidence_angle=39.0)
    assert cube.sizes == {"time": 159, "y": 64, "x": 64}  # 20 m → 10 m
    assert cube.rio.crs.to_epsg() == 32631
    assert float(abs(cube.rio.resolution()[0])) == 10.0
    assert cube["VV"].dtype == np.float32
    # README: VV median -8.6 dB, VH -16.3 dB (sigma0, no conversion applied)
    assert float(np.nanmedian(cube["VV"].values)) == pytest.approx(-8.6, abs=0.15)
    assert float(np.nanmedian(cube["VH"].values)) == pytest.approx(-16.3, abs=0.15)
    assert set(cube["orbit_direction"].values) == {"ascending"}
    assert "sigma0 dB" in cube.attrs["backscatter"]
    assert cube.attrs["incidence_angle_source"].startswith("user-stated: 39.0")
    # two unknown orbits, coded by time slot (17:32 and 17:40 UTC), never as real numbers
    orbit = cube["relative_orbit"]
    assert set(orbit.values) == {-1, -2}
    assert orbit.attrs["relative_orbit_known"] == "false"
    assert "-1: ascending passes at 17:32" in orbit.attrs["unknown_orbit_slots"]
    assert "-2: ascending passes at 17:40" in orbit.attrs["unknown_orbit_slots"]
    minutes = pd.DatetimeIndex(cube["time"].values).minute
    assert set(minutes[orbit.values == -1]) <= {31, 32, 33}
    assert set(minutes[orbit.values == -2]) <= {39, 40, 41}
    assert set(cube["platform"].values) == {"unknown"}


def test_belgian_series_without_incidence_is_an_error():
    with pytest.raises(DataError, match=r"S1_GRD-ASCENDING.*no incidence angle.*incidence_angle="):
        read_s1_files(SITE_A)


def test_geotiffs_need_stated_convention_then_convert(tmp_path):
    """20 m σ0 linear files without metadata: the caller states what they hold."""
    x0, y0 = 500000.0, 5630000.0
    for date, value in (("20230105T172233", 0.05), ("20230111T172233", 0.2)):
        vv = np.full((3, 3), value, dtype=np.float32)
        vv[0, 0] = 0.0  # no data in linear power
        write_tif(tmp_path / f"S1A_{date}_VV.tif", vv, x0, y0, 20.0, 0.0)
        vh = np.full((3, 3), value / 10, dtype=np.float32)
        write_tif(tmp_path / f"S1A_{date}_VH.tif", vh, x0, y0, 20.0, 0.0)
    with pytest.raises(DataError, match="state quantity and units"):
        read_s1_files(tmp_path, incidence_angle=35.0)
    with pytest.raises(DataError, match="orbit_direction="):
        read_s1_files(tmp_path, incidence_angle=35.0, quantity="sigma0", units="linear")
    cube = read_s1_files(
        tmp_path,
        incidence_angle=35.0,
        quantity="sigma0",
        units="linear",
        orbit_direction="descending",
        relative_orbit=139,
    )
    assert cube.sizes == {"time": 2, "y": 6, "x": 6}
    vv = cube["VV"].values
    assert np.isnan(vv[:, :2, :2]).all()  # the 20 m no-data pixel covers 2 × 2 10 m pixels
    np.testing.assert_allclose(vv[0, 2:, 2:], 10 * np.log10(0.05), rtol=1e-5)
    np.testing.assert_allclose(vv[1, 2:, 2:], 10 * np.log10(0.2), rtol=1e-5)
    np.testing.assert_allclose(cube["VH"].values[1, 2:, 2:], 10 * np.log10(0.02), rtol=1e-5)
    assert list(cube["relative_orbit"].values) == [139, 139]
    assert list(cube["platform"].values) == ["S1A", "S1A"]
    assert cube.attrs["relative_orbit_source"] == "user-stated: 139"


def test_geotiff_tags_give_the_convention_and_a_product_incidence(tmp_path):
    x0, y0 = 500000.0, 5630000.0
    tags = {"units": "dB", "quantity": "gamma0 (ellipsoid)", "orbit_direction": "ascending"}
    write_tif(
        tmp_path / "20230105_VV.tif", np.full((4, 4), -10.0, np.float32), x0, y0, 10, None, **tags
    )
    write_tif(
        tmp_path / "20230105_VH.tif", np.full((4, 4), -20.0, np.float32), x0, y0, 10, None, **tags
    )
    write_tif(
        tmp_path / "20230105_incidence_angle.tif",
        np.full((4, 4), 40.0, np.float32),
        x0,
        y0,
        10,
        None,
    )
    cube = read_s1_files(tmp_path)
    np.testing.assert_allclose(cube["incidence_angle"].values, 40.0)
    expected = -10.0 + 10 * np.log10(np.cos(np.deg2rad(40.0)))  # γ0 → σ0
    np.testing.assert_allclose(cube["VV"].values, expected, rtol=1e-5)
    assert cube.attrs["incidence_angle_source"] == "product layer"
    assert "sigma0 = gamma0 * cos(incidence_angle)" in cube.attrs["backscatter"]
    with pytest.raises(DataError, match="metadata says gamma0 in dB"):
        read_s1_files(tmp_path, quantity="sigma0")


def test_opera_names_give_quantity_orbit_and_platform(tmp_path):
    x0, y0 = 500000.0, 5630000.0
    stem = "OPERA_L2_RTC-S1_T088-187001-IW2_20230105T173215Z_20230106T000000Z_S1A_30_v1.0"
    for pol, value in (("VV", 0.1), ("VH", 0.01)):
        write_tif(
            tmp_path / f"{stem}_{pol}.tif", np.full((2, 2), value, np.float32), x0, y0, 30, None
        )
    cube = read_s1_files(
        tmp_path, incidence_angle=38.0, orbit_direction="ascending", bbox=(x0, y0 - 60, x0 + 60, y0)
    )
    assert cube.sizes == {"time": 1, "y": 6, "x": 6}
    assert list(cube["relative_orbit"].values) == [88]
    assert list(cube["platform"].values) == ["S1A"]
    assert "gamma0_T linear" in cube.attrs["backscatter"]
    expected = 10 * np.log10(0.1 * np.cos(np.deg2rad(38.0)))
    np.testing.assert_allclose(cube["VV"].values, expected, rtol=1e-5)


def test_relative_orbit_codes_mix_known_and_unknown():
    times = pd.to_datetime(
        ["2018-01-01T17:32:10", "2018-01-06T17:40:40", "2018-01-07T17:32:36", "2018-01-08T05:50:00"]
    ).values
    codes, attrs = relative_orbit_codes(
        times, ["ascending", "ascending", "ascending", "descending"], [None, None, None, 37]
    )
    assert list(codes) == [-1, -2, -1, 37]
    assert attrs["relative_orbit_known"] == "false"
    assert "(2 dates)" in attrs["unknown_orbit_slots"]


def test_missing_polarisation_file_is_an_error(tmp_path):
    write_tif(tmp_path / "20230105_VV.tif", np.ones((2, 2), np.float32), 0.0, 20.0, 10, None)
    with pytest.raises(DataError, match="no VH file"):
        read_s1_files(tmp_path, incidence_angle=30)
