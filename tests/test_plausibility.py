"""Wrong data inside every range is caught (unit mix-ups, exchanged bands, unmasked clouds,
ambiguous dates), and every valid input still passes: the tiny simulated site, the real
Finnish sample and both real Belgian series (snowy and cloudy winter dates included)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from conftest import REAL_SERIES, TINY_SITE
from releo.data import contracts as c
from releo.data.errors import DataError
from releo.data.io import open_cube, read_table
from releo.data.readers import read_field_survey, read_pixel_table, read_s2_l2a
from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.site import simulate_site
from releo.quality import QualityGateError, check_s1_cube, check_s2_cube

SAMPLE = Path(__file__).parent / "data" / "real_s2_l2a_sample"
BELGIAN = sorted(REAL_SERIES.glob("worldcereal_*"))


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("plausibility") / "gx"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny test site of the end-to-end tests (300 m, April-June 2025), simulated."""
    out = tmp_path_factory.mktemp("tiny") / "data"
    simulate_site(SimulationConfig.model_validate(TINY_SITE), out, progress=False)
    return out


def _s2(tiny: Path) -> xr.Dataset:
    return open_cube(tiny / "s2_l2a.zarr").load().copy(deep=True)


def _s1(tiny: Path) -> xr.Dataset:
    return open_cube(tiny / "s1_grd.zarr").load().copy(deep=True)


def _fails(check, ds: xr.Dataset, source: str, gx_root: Path, expected: list[str]) -> str:
    with pytest.raises(QualityGateError) as info:
        check(ds, source, context_root=gx_root)
    message = str(info.value)
    for text in [source, *expected]:
        assert text in message, f"{text!r} not in:\n{message}"
    return message


# ------------------------------------------------------------------------------ valid inputs


def test_the_tiny_simulated_site_passes(tiny: Path, gx_root: Path) -> None:
    check_s2_cube(open_cube(tiny / "s2_l2a.zarr"), tiny / "s2_l2a.zarr", context_root=gx_root)
    check_s1_cube(open_cube(tiny / "s1_grd.zarr"), tiny / "s1_grd.zarr", context_root=gx_root)


def test_the_real_finnish_sample_passes(gx_root: Path) -> None:
    files = sorted(SAMPLE.glob("*.nc"))
    check_s2_cube(read_s2_l2a(files), SAMPLE, context_root=gx_root)


@pytest.mark.parametrize("folder", BELGIAN, ids=lambda p: p.name[-4:])
def test_the_real_belgian_series_pass(folder: Path, gx_root: Path) -> None:
    """Every date, snowy and cloudy winter ones included (S2 as read; S1 on a 10 m grid)."""
    from releo.data.sources.s1 import read_s1_files

    s2 = read_s2_l2a(sorted(folder.glob("S2_L2A_*.nc")))
    s2 = s2.assign_coords({c.PLATFORM: ("time", ["S2A"] * s2.sizes["time"])})
    check_s2_cube(s2, folder, context_root=gx_root)
    s1 = read_s1_files(
        sorted(folder.glob("S1_GRD*.nc")),
        crs=s2.rio.crs,
        bbox=tuple(s2.rio.bounds()),
        incidence_angle=39.0,
    )
    check_s1_cube(s1, folder, context_root=gx_root)


# ------------------------------------------------------------------------- unit confusions


def test_backscatter_in_linear_power_is_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s1(tiny)
    for pol in c.S1_POLARISATIONS:
        ds[pol] = 10 ** (ds[pol] / 10)  # linear power, inside [-50, 30] "dB"
    _fails(check_s1_cube, ds, "tiny/s1_grd.zarr", gx_root, ["VV_median", "VH_spread", "=0.0"])


def test_sun_zenith_in_radians_is_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s2(tiny)
    ds["sun_zenith"] = np.deg2rad(ds["sun_zenith"])
    message = _fails(
        check_s2_cube, ds, "tiny/s2_l2a.zarr", gx_root, ["sun_zenith_outside_expected_deg"]
    )
    first = float(ds["sun_zenith"][0])
    assert f"sun_zenith={first:.6g}" in message


def test_nodata_written_as_zero_with_a_clear_mask_is_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s2(tiny)
    day = int(np.argmax((ds[c.S2_MASK] == c.MASK_CLEAR).sum(("y", "x")).values))
    for band in c.S2_BANDS:
        ds[band][day, :, :5] = 0.0  # a stripe of no data, mask left clear
    _fails(check_s2_cube, ds, "tiny/s2_l2a.zarr", gx_root, ["zero_spectrum_clear_share"])


# ------------------------------------------------------------------ implausible clear spectra


def test_exchanged_red_and_nir_bands_are_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s2(tiny)
    ds["B04"], ds["B08"] = ds["B08"].copy(), ds["B04"].copy()
    _fails(check_s2_cube, ds, "tiny/s2_l2a.zarr", gx_root, ["ndvi_B08_B04_negative_share"])


def test_clouds_marked_clear_are_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s2(tiny)
    mask = ds[c.S2_MASK].values
    assert (mask == c.MASK_CLOUD).any()
    mask[mask == c.MASK_CLOUD] = c.MASK_CLEAR  # the cloud mask lost
    ds[c.S2_MASK] = (ds[c.S2_MASK].dims, mask)
    _fails(check_s2_cube, ds, "tiny/s2_l2a.zarr", gx_root, ["haze_clear_share"])


def test_saturated_pixels_marked_clear_are_caught(tiny: Path, gx_root: Path) -> None:
    ds = _s2(tiny)
    day = int(np.argmax((ds[c.S2_MASK] == c.MASK_CLEAR).sum(("y", "x")).values))
    for band in ("B02", "B03", "B04"):
        ds[band][day, :3, :] = 1.0  # clipped at 1, still "in range"
    _fails(check_s2_cube, ds, "tiny/s2_l2a.zarr", gx_root, ["saturated_clear_share"])


# --------------------------------------------------------------------------- ambiguous dates


def _pixel_csv(path: Path, dates: list[str]) -> Path:
    rows = {"point_id": "P1", "date": dates, **dict.fromkeys(c.S2_BANDS, 0.1)}
    table = pd.DataFrame({**rows, "sun_zenith": 40.0, "view_zenith": 5.0})
    table["relative_azimuth"], table["cloud_mask"] = 120.0, 0
    table.to_csv(path, index=False)
    return path


def test_day_month_dates_without_a_format_are_an_error(tmp_path: Path) -> None:
    path = _pixel_csv(tmp_path / "pixels.csv", ["06/01/2025", "11/01/2025", "16/01/2025"])
    with pytest.raises(DataError) as info:
        read_pixel_table(path)
    message = str(info.value)
    assert str(path) in message and "'date'" in message and "'06/01/2025'" in message
    assert "date_format" in message


def test_a_named_date_format_reads_day_first(tmp_path: Path) -> None:
    path = _pixel_csv(tmp_path / "pixels.csv", ["06/01/2025", "11/01/2025", "16/01/2025"])
    expected = pd.to_datetime(["2025-01-06", "2025-01-11", "2025-01-16"])
    for table in (
        read_pixel_table(path, date_format="%d/%m/%Y"),
        read_pixel_table(path, {"date_format": "%d/%m/%Y"}),  # a column map's key
        read_pixel_table(path, {"%d/%m/%Y": "date_format"}),  # inverted, as releo lai passes
    ):
        assert list(table["date"]) == list(expected)
    with pytest.raises(DataError, match="date_format"):
        read_pixel_table(path, date_format="%Y-%m-%d")


def test_iso_dates_always_pass(tmp_path: Path) -> None:
    path = _pixel_csv(tmp_path / "pixels.csv", ["2025-01-06", "2025-01-11T10:56:00", "2025-01-16"])
    assert read_pixel_table(path)["date"].dt.month.tolist() == [1, 1, 1]


def test_ambiguous_survey_and_meteo_dates_are_errors(tmp_path: Path) -> None:
    survey = pd.DataFrame(
        {
            "point_id": ["P1", "P1"],
            "date": ["03/05/2025", "13/05/2025"],
            "x": 360_100.0,
            "y": 4_829_900.0,
            "crs": "EPSG:32631",
            "land_cover": "maize",
            "lai": 1.0,
            "lai_std": 0.1,
            "method": "LAI-2200",
            "campaign": "c",
        }
    )
    survey.to_csv(tmp_path / "survey.csv", index=False)
    with pytest.raises(DataError, match="'03/05/2025'"):
        read_field_survey(tmp_path / "survey.csv", "EPSG:32631")
    read = read_field_survey(tmp_path / "survey.csv", "EPSG:32631", date_format="%d/%m/%Y")
    assert read["date"].dt.month.tolist() == [5, 5]
    meteo = pd.DataFrame({"date": ["01.02.2025", "02.02.2025"], "rainfall_mm": [0.0, 1.0]})
    meteo.to_csv(tmp_path / "meteo.csv", index=False)
    with pytest.raises(DataError, match=r"meteo.csv: column 'date'.*'01.02.2025'"):
        read_table(tmp_path / "meteo.csv")
