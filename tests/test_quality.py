"""Quality gates: valid inputs pass, each contract violation is caught and named."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyproj
import pytest
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr

from releo.data import contracts as c
from releo.data import spill
from releo.quality import (
    GateResult,
    QualityGateError,
    check_field_survey,
    check_pixel_table,
    check_reference_product,
    check_s1_cube,
    check_s2_cube,
    summaries,
)
from releo.quality import gates as gates_module
from releo.quality.specs import S2_CUBE

CRS = "EPSG:32631"
X0, Y0, N = 500_000.0, 4_800_000.0, 16
SITE_BOUNDS = (X0, Y0 - 10 * N, X0 + 10 * N, Y0)
PERIOD = ("2024-04-01", "2024-09-30")
S2_DATES = pd.to_datetime(["2024-04-02", "2024-04-07", "2024-04-17", "2024-04-22"])
S1_DATES = pd.to_datetime(["2024-04-03", "2024-04-09", "2024-04-15"])


@pytest.fixture(scope="module")
def gx_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One GE context for the whole module: registering suites is the slow part."""
    return tmp_path_factory.mktemp("quality") / "gx"


def _grid(res: float = 10.0) -> dict[str, np.ndarray]:
    # Pixel centres, north-up: y decreases.
    return {"y": Y0 - res / 2 - res * np.arange(N), "x": X0 + res / 2 + res * np.arange(N)}


SOIL = (0.08, 0.11, 0.14, 0.17, 0.2, 0.22, 0.24, 0.25, 0.32, 0.27)
LEAF = (0.03, 0.07, 0.04, 0.12, 0.3, 0.4, 0.45, 0.46, 0.24, 0.11)
"""Reflectance of bare soil and of a dense crop in the order of ``c.S2_BANDS``."""


def make_s2(res: float = 10.0) -> xr.Dataset:
    rng = np.random.default_rng(1)
    shape = (len(S2_DATES), N, N)
    mask = np.zeros(shape, dtype="uint8")
    mask[1, :5, :5] = c.MASK_CLOUD
    mask[2, 10:, 10:] = c.MASK_SHADOW
    mask[3, :, 0] = c.MASK_NODATA
    data = {}
    # Plausible clear spectra (the plausibility suite judges them): a mix of soil and crop.
    crop = rng.uniform(0.0, 1.0, shape)
    for band, soil, leaf in zip(c.S2_BANDS, SOIL, LEAF, strict=True):
        values = soil + crop * (leaf - soil) + rng.normal(0.0, 0.005, shape)
        values = values.clip(0.005, 0.9).astype("float32")
        values[mask != c.MASK_CLEAR] = np.nan  # NaN only under the mask: legal
        data[band] = (("time", "y", "x"), values)
    data[c.S2_MASK] = (("time", "y", "x"), mask)
    data["sun_zenith"] = ("time", [42.0, 39.5, 35.1, 33.0])
    data["view_zenith"] = ("time", [3.2, 8.9, 2.5, 11.0])
    data["relative_azimuth"] = ("time", [150.0, 30.0, 162.5, 20.0])
    coords = {"time": S2_DATES, **_grid(res), c.PLATFORM: ("time", ["S2A", "S2B", "S2A", "S2B"])}
    return xr.Dataset(data, coords=coords).rio.write_crs(CRS)


def make_s1() -> xr.Dataset:
    rng = np.random.default_rng(2)
    shape = (len(S1_DATES), N, N)
    incidence = np.broadcast_to(np.linspace(30.0, 45.0, N), shape).astype("float32")
    data = {
        "VV": (("time", "y", "x"), rng.uniform(-20.0, -5.0, shape).astype("float32")),
        "VH": (("time", "y", "x"), rng.uniform(-28.0, -12.0, shape).astype("float32")),
        c.S1_INCIDENCE: (("time", "y", "x"), incidence.copy()),
        c.S1_ORBIT_DIRECTION: ("time", ["ascending", "descending", "ascending"]),
        c.S1_RELATIVE_ORBIT: ("time", np.array([30, 110, 30], dtype="int16")),
    }
    coords = {"time": S1_DATES, **_grid(), c.PLATFORM: ("time", ["S1A", "S1A", "S1C"])}
    return xr.Dataset(data, coords=coords).rio.write_crs(CRS)


def make_reference() -> xr.Dataset:
    s2 = make_s2()
    lai = np.random.default_rng(3).uniform(0.0, 6.0, s2["B04"].shape).astype("float32")
    lai[s2[c.S2_MASK].values != c.MASK_CLEAR] = np.nan  # gaps under clouds
    ds = xr.Dataset({c.REFERENCE_LAI: (("time", "y", "x"), lai)}, coords=s2[["B04"]].coords)
    return ds.rio.write_crs(CRS)


def _lonlat(x: float, y: float) -> tuple[float, float]:
    return pyproj.Transformer.from_crs(CRS, "EPSG:4326", always_xy=True).transform(x, y)


def make_survey() -> pd.DataFrame:
    lon, lat = _lonlat(X0 + 75.0, Y0 - 75.0)  # inside the site once reprojected
    rows = [
        ("P01", "2024-04-05", X0 + 15.0, Y0 - 15.0, CRS, "winter_wheat", 1.8, 0.2),
        ("P01", "2024-05-20", X0 + 15.0, Y0 - 15.0, CRS, "winter_wheat", 4.1, 0.3),
        ("P02", "2024-05-20", X0 + 140.0, Y0 - 120.0, CRS, "maize", 0.6, 0.1),
        ("P03", "2024-06-11", lon, lat, "EPSG:4326", "grassland", 2.5, 0.25),
    ]
    df = pd.DataFrame(rows, columns=list(c.SURVEY_COLUMNS[:8]))
    df["date"] = pd.to_datetime(df["date"]) + pd.Timedelta(hours=10)  # with a time of day
    df["method"] = ["LAI-2200", "LAI-2200", "hemispherical photos", "LAI-2200"]
    df["campaign"] = "2024-spring"
    return df


def make_pixels() -> pd.DataFrame:
    rng = np.random.default_rng(4)
    points, dates = ["A", "B", "C"], S2_DATES
    df = pd.DataFrame([(p, d) for p in points for d in dates], columns=["point_id", "date"]).astype(
        {"point_id": "str"}
    )
    for band in c.S2_BANDS:
        df[band] = rng.uniform(0.01, 0.6, len(df))
    df["sun_zenith"] = 40.0
    df["view_zenith"] = 5.0
    df["relative_azimuth"] = 120.0
    df["cloud_mask"] = 0
    df.loc[4, "cloud_mask"] = 1
    df.loc[4, list(c.S2_BANDS)] = np.nan  # NaN reflectance under cloud: legal
    return df


def _fails(
    check: Callable[..., GateResult], data: object, source: str, expected: list[str], **kwargs
) -> QualityGateError:
    """Run a gate that must fail; check the message names the source and the expectations."""
    with pytest.raises(QualityGateError) as info:
        check(data, source, **kwargs)
    message = str(info.value)
    assert info.value.source == source
    assert source in message
    for text in expected:
        assert text in message, f"{text!r} not in:\n{message}"
    return info.value


def _assert_docs(err: QualityGateError) -> None:
    assert err.docs_path is not None and err.docs_path.name == "index.html"
    assert err.docs_path.is_file()
    assert str(err.docs_path) in str(err)
    assert err.pages and all(page.is_file() for page in err.pages)


# ---------------------------------------------------------------------------------------------
# Lazy import


def test_importing_quality_does_not_import_great_expectations() -> None:
    code = "import sys, releo.quality; assert 'great_expectations' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Summary tables (no GE)


def test_summaries_stream_over_dates_and_sample_deterministically(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ds = _nan_on_clear(make_s2())
    whole = summaries.cube_tables(ds, S2_CUBE)
    monkeypatch.setattr(spill, "BLOCK_VALUES", N * N)  # one date per block
    streamed = summaries.cube_tables(ds, S2_CUBE)
    for name in whole:
        pd.testing.assert_frame_equal(whole[name], streamed[name])
    bands = whole["bands"].set_index(["variable", "time"])
    assert bands.loc[("B03", S2_DATES[0]), "nan_clear_fraction"] == 1 / (N * N)
    assert bands.loc[("B02", S2_DATES[1]), "nan_clear_fraction"] == 0.0  # NaN under cloud only
    assert bands.loc[("B02", S2_DATES[1]), "nan_fraction"] == 25 / (N * N)
    assert bands.loc[("B02", S2_DATES[1]), "valid_fraction"] == 1 - 25 / (N * N)
    assert bands.loc[("mask", S2_DATES[1]), "valid_fraction"] == 1.0  # the mask: every pixel
    acquisitions = whole["acquisitions"]
    assert acquisitions["cloud_fraction"].tolist() == [0.0, 25 / (N * N), 0.0, 0.0]
    meta = whole["metadata"].iloc[0]
    assert (meta["crs"], meta["res_x"], meta["res_y"], meta["crs_projected"]) == (CRS, 10, 10, True)
    sample = whole["sample"]
    picked = ds["B04"].sel(time=sample["time"][0], y=sample["y"][0], x=sample["x"][0]).item()
    assert sample["B04"][0] == picked  # the sample holds the cube's values at its coordinates


def test_band_statistics_are_over_clear_pixels() -> None:
    ds = _under_the_mask(make_s2())
    bands = summaries.cube_tables(ds, S2_CUBE)["bands"].set_index(["variable", "time"])
    clear = ds[c.S2_MASK].values[1] == c.MASK_CLEAR
    b04 = ds["B04"].values[1][clear]
    row = bands.loc[("B04", S2_DATES[1])]
    assert (row["min"], row["max"]) == (b04.min(), b04.max())  # not -10000, not 1.3
    assert row["mean"] == pytest.approx(b04.mean(dtype="float64"))
    assert bands.loc[("mask", S2_DATES[1]), "max"] == c.MASK_CLOUD  # the mask itself: all pixels
    full = make_s2()
    full[c.S2_MASK].values[0] = c.MASK_CLOUD  # a fully cloudy date: nothing to judge
    row = summaries.cube_tables(full, S2_CUBE)["bands"].set_index(["variable", "time"])
    row = row.loc[("B02", S2_DATES[0])]
    assert np.isnan(row["min"]) and np.isnan(row["max"]) and row["valid_fraction"] == 0.0


# ---------------------------------------------------------------------------------------------
# Valid inputs pass


def test_valid_s2_cube_passes(gx_root: Path) -> None:
    result = check_s2_cube(make_s2(), "data/s2.zarr", context_root=gx_root)
    assert result.success and result.contract == "s2_cube"
    assert result.statistics["unsuccessful_expectations"] == 0
    assert result.statistics["evaluated_expectations"] > 30
    assert result.rows["s2_cube.bands"] == len(S2_DATES) * (len(c.S2_BANDS) + 1)
    assert result.rows["s2_cube.sample"] == min(4000, len(S2_DATES) * N * N)
    assert result.docs_path == gx_root / "uncommitted" / "data_docs" / "local_site" / "index.html"
    assert result.docs_path.is_file()


def test_valid_s1_cube_passes(gx_root: Path) -> None:
    result = check_s1_cube(make_s1(), "data/s1.zarr", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0


def test_valid_reference_product_passes(gx_root: Path) -> None:
    result = check_reference_product(make_reference(), "data/snap.zarr", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0


def test_valid_survey_passes_after_reprojection(gx_root: Path) -> None:
    result = check_field_survey(
        make_survey(),
        "data/survey.csv",
        site_bounds=SITE_BOUNDS,
        period=PERIOD,
        site_crs=CRS,
        context_root=gx_root,
    )
    assert result.success and result.rows == {"field_survey.table": 4}


def test_valid_pixel_table_passes(gx_root: Path) -> None:
    result = check_pixel_table(make_pixels(), "data/pixels.parquet", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0


@pytest.mark.filterwarnings("ignore:The data type .* does not have a Zarr V3 specification")
@pytest.mark.parametrize("decode_coords", ["all", True])
def test_cube_read_back_from_zarr_passes(gx_root: Path, tmp_path: Path, decode_coords) -> None:
    # A lazily opened store: text coordinates come back from Zarr, and without
    # decode_coords="all" spatial_ref comes back as a data variable.
    path = tmp_path / "s2.zarr"
    make_s2().to_zarr(path, zarr_format=3, consolidated=False)
    with xr.open_dataset(
        path, engine="zarr", consolidated=False, decode_coords=decode_coords
    ) as ds:
        assert check_s2_cube(ds, path, context_root=gx_root).success


# ---------------------------------------------------------------------------------------------
# S2 corruptions


def _nan_on_clear(ds: xr.Dataset) -> xr.Dataset:
    ds["B03"].values[0, 7, 7] = np.nan  # date 0 is fully clear
    return ds


def _scaled(ds: xr.Dataset) -> xr.Dataset:
    for band in c.S2_BANDS:
        ds[band] = ds[band] * 10000
    return ds


def _under_the_mask(ds: xr.Dataset) -> xr.Dataset:
    """What real L2A holds where it is masked: > 1 (cloud, snow), < 0, NaN, 0 and -10000."""
    mask = ds[c.S2_MASK].values
    for band, value in zip(c.S2_BANDS, (1.3, -0.1, -10000.0, 0.0, 1.7) * 2, strict=True):
        ds[band].values[mask == c.MASK_CLOUD] = value
        ds[band].values[mask == c.MASK_SHADOW] = 1.3
        ds[band].values[mask == c.MASK_NODATA] = -10000.0 if band < "B08" else np.nan
    return ds


def _duplicated_dates(ds: xr.Dataset) -> xr.Dataset:
    return ds.assign_coords(time=S2_DATES[[0, 1, 1, 2]])


def _unsorted_dates(ds: xr.Dataset) -> xr.Dataset:
    return ds.isel(time=[0, 2, 1, 3])


def _view_zenith_out_of_range(ds: xr.Dataset) -> xr.Dataset:
    ds["view_zenith"].values[2] = 25.0
    return ds


def _bad_mask_value(ds: xr.Dataset) -> xr.Dataset:
    ds[c.S2_MASK].values[0, 0, 0] = 7
    return ds


S2_CORRUPTIONS = {
    "nan_on_clear_pixels": (
        _nan_on_clear,
        [
            "[s2_cube.bands] expect_column_values_to_be_between(column='nan_clear_fraction'",
            "variable=B03",
        ],
    ),
    "reflectance_x10000": (
        _scaled,
        ["[s2_cube.bands] expect_column_values_to_be_between(column='max'", "max_value=1"],
    ),
    "duplicated_dates": (
        _duplicated_dates,
        ["[s2_cube.acquisitions] expect_column_values_to_be_unique(column='time')", "2024-04-07"],
    ),
    "unsorted_dates": (
        _unsorted_dates,
        ["[s2_cube.acquisitions] expect_column_values_to_be_increasing(column='time'"],
    ),
    "view_zenith_out_of_range": (
        _view_zenith_out_of_range,
        [
            "[s2_cube.acquisitions] expect_column_values_to_be_between(column='view_zenith'",
            "view_zenith=25",
        ],
    ),
    "mask_value_out_of_set": (
        _bad_mask_value,
        ["[s2_cube.bands] expect_column_values_to_be_between(column='max'", "variable=mask"],
    ),
    "geographic_crs": (
        lambda ds: ds.rio.write_crs("EPSG:4326"),
        ["[s2_cube.metadata] expect_column_values_to_be_in_set(column='crs_projected'"],
    ),
}


@pytest.mark.parametrize("name", list(S2_CORRUPTIONS))
def test_s2_corruption_is_caught(name: str, gx_root: Path) -> None:
    corrupt, expected = S2_CORRUPTIONS[name]
    source = f"data/s2_{name}.zarr"
    err = _fails(check_s2_cube, corrupt(make_s2()), source, expected, context_root=gx_root)
    _assert_docs(err)


def test_s2_values_under_the_mask_pass(gx_root: Path) -> None:
    result = check_s2_cube(_under_the_mask(make_s2()), "data/s2_masked.zarr", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0
    assert result.rows["s2_cube.sample"] == len(S2_DATES) * N * N  # every pixel was sampled


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.3, ["expect_column_values_to_be_between(column='max'", "variable=B04 -> max=1.3"]),
        (-0.1, ["expect_column_values_to_be_between(column='min'", "variable=B04 -> min=-0.1"]),
        (
            np.nan,
            [
                "expect_column_values_to_be_between(column='nan_clear_fraction'",
                "variable=B04 -> nan_clear_fraction=0.004329",  # 1 of the date's 231 clear
            ],
        ),
    ],
)
def test_s2_the_same_value_on_a_clear_pixel_fails(gx_root: Path, value: float, expected) -> None:
    ds = _under_the_mask(make_s2())
    assert ds[c.S2_MASK].values[1, 8, 8] == c.MASK_CLEAR
    ds["B04"].values[1, 8, 8] = value
    source = f"data/s2_clear_{value}.zarr"
    err = _fails(check_s2_cube, ds, source, ["[s2_cube.bands]", *expected], context_root=gx_root)
    sample = [f for f in err.failures if f.table == "s2_cube.sample"]
    assert [f.column for f in sample] == ["B04"]  # the clear pixel, not the masked ones
    assert "where mask == 0" in sample[0].detail and "1/" in sample[0].detail
    assert {f.column for f in err.failures if f.table == "s2_cube.bands"} <= {
        "min",
        "max",
        "nan_clear_fraction",
    }
    assert "time=2024-04-07" in str(err)
    _assert_docs(err)


def test_s2_unsorted_dates_are_not_reported_as_duplicates(gx_root: Path) -> None:
    err = _fails(
        check_s2_cube,
        make_s2().isel(time=[1, 0, 2, 3]),
        "data/s2_swapped.zarr",
        ["expect_column_values_to_be_increasing(column='time'"],
        context_root=gx_root,
    )
    assert "expect_column_values_to_be_unique" not in str(err)
    assert [f.table for f in err.failures] == ["s2_cube.acquisitions"]


def test_s2_wrong_resolution_is_caught(gx_root: Path) -> None:
    err = _fails(
        check_s2_cube,
        make_s2(res=20.0),
        "data/s2_20m.zarr",
        ["[s2_cube.metadata] expect_column_values_to_be_between(column='res_x'", "20"],
        context_root=gx_root,
    )
    assert {f.column for f in err.failures} == {"res_x", "res_y"}
    _assert_docs(err)


def _without_crs(ds: xr.Dataset) -> xr.Dataset:
    out = ds.drop_vars("spatial_ref")
    for var in out.variables.values():
        var.attrs.pop("grid_mapping", None)
        var.encoding.pop("grid_mapping", None)
    return out


STRUCTURAL = {
    "missing_band": (
        lambda ds: ds.drop_vars("B8A"),
        ["expect_variable_to_exist(variable='B8A'"],
    ),
    "missing_crs": (_without_crs, ["expect_crs_to_exist"]),
    "wrong_dims": (
        lambda ds: ds.transpose("time", "x", "y"),
        ["expect_variable_dims_to_equal(variable='B02'"],
    ),
}


@pytest.mark.parametrize("name", list(STRUCTURAL))
def test_s2_structural_problem_is_caught_before_ge(name: str, tmp_path: Path) -> None:
    corrupt, expected = STRUCTURAL[name]
    root = tmp_path / "gx"
    err = _fails(
        check_s2_cube, corrupt(make_s2()), f"data/s2_{name}.zarr", expected, context_root=root
    )
    assert err.docs_path is None and not root.exists()  # no GE run needed for these


# ---------------------------------------------------------------------------------------------
# S1 and reference product corruptions


def test_s1_backscatter_above_range_is_caught(gx_root: Path) -> None:
    ds = make_s1()
    ds["VV"].values[1, 3, 4] = 45.0  # beyond any double bounce: a unit or scale error
    err = _fails(
        check_s1_cube,
        ds,
        "data/s1_vv45.zarr",
        [
            "[s1_cube.bands] expect_column_values_to_be_between(column='max'",
            "variable=VV -> max=45",
            "min_value=-50, max_value=30",
        ],
        context_root=gx_root,
    )
    _assert_docs(err)


def test_s1_non_finite_backscatter_is_no_data(gx_root: Path) -> None:
    ds = make_s1()
    ds["VV"].values[0, :4, :4] = -np.inf  # 10 log10(0): no signal, not a value
    ds["VH"].values[1, 5, :] = np.nan
    ds[c.S1_INCIDENCE].values[2, 0, 0] = np.nan
    result = check_s1_cube(ds, "data/s1_nodata.zarr", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0


def test_s1_acquisition_metadata_is_checked(gx_root: Path) -> None:
    ds = make_s1()
    ds[c.S1_ORBIT_DIRECTION].values[1] = "sideways"
    ds[c.S1_RELATIVE_ORBIT].values[2] = 200
    ds[c.S1_INCIDENCE].values[0, 0, :] = 65.0
    _fails(
        check_s1_cube,
        ds,
        "data/s1_meta.zarr",
        [
            "expect_column_values_to_be_in_set(column='orbit_direction'",
            "sideways",
            "expect_column_values_to_be_between(column='relative_orbit'",
            "variable=incidence_angle -> max=65",
        ],
        context_root=gx_root,
    )


def test_reference_lai_out_of_range_and_duplicate_dates(gx_root: Path) -> None:
    ds = make_reference().assign_coords(time=S2_DATES[[0, 1, 2, 2]])
    ds[c.REFERENCE_LAI].values[0, 1, 1] = 20.0
    _fails(
        check_reference_product,
        ds,
        "data/snap_bad.zarr",
        [
            "[reference_product.bands] expect_column_values_to_be_between(column='max'",
            "variable=lai -> max=20",
            "expect_column_values_to_be_unique(column='time')",
        ],
        context_root=gx_root,
    )


# ---------------------------------------------------------------------------------------------
# Tables


def test_survey_problems_are_caught(gx_root: Path) -> None:
    df = make_survey()
    df.loc[1, "x"] = X0 + 5_000.0  # 5 km east of the site
    df.loc[2, "date"] = pd.Timestamp("2023-12-01")  # before the data period
    df.loc[3, "lai_std"] = 0.0
    df = pd.concat([df, df.iloc[[0]]], ignore_index=True)  # duplicate (point_id, date)
    err = _fails(
        check_field_survey,
        df,
        "data/survey_bad.csv",
        [
            "expect_column_values_to_be_between(column='x_site'",
            "point_id=P01, date=2024-05-20 -> x_site=505000",
            "expect_column_values_to_be_between(column='date'",
            "2023-12-01",
            "expect_compound_columns_to_be_unique(column='point_id,date'",
            "expect_column_values_to_be_between(column='lai_std'",
        ],
        site_bounds=SITE_BOUNDS,
        period=PERIOD,
        site_crs=CRS,
        context_root=gx_root,
    )
    assert "y_site" not in str(err)  # only x moved
    _assert_docs(err)


def test_survey_in_wrong_crs_falls_outside_the_site(gx_root: Path) -> None:
    df = make_survey()
    df["crs"] = "EPSG:32630"  # same numbers, neighbouring UTM zone: ~500 km away
    _fails(
        check_field_survey,
        df,
        "data/survey_zone30.csv",
        ["expect_column_values_to_be_between(column='x_site'", "4/4 rows unexpected"],
        site_bounds=SITE_BOUNDS,
        period=PERIOD,
        site_crs=CRS,
        context_root=gx_root,
    )


def test_survey_with_unknown_crs_is_caught(gx_root: Path) -> None:
    df = make_survey()
    df.loc[2, "crs"] = "EPSG:99999"
    _fails(
        check_field_survey,
        df,
        "data/survey_badcrs.csv",
        [
            "expect_column_values_to_not_be_null(column='x_site'",
            "point_id=P02, date=2024-05-20",
        ],
        site_bounds=SITE_BOUNDS,
        period=PERIOD,
        site_crs=CRS,
        context_root=gx_root,
    )


def test_survey_missing_column_is_structural(tmp_path: Path) -> None:
    err = _fails(
        check_field_survey,
        make_survey().drop(columns="lai_std"),
        "data/survey_nostd.csv",
        ["expect_column_to_exist(column='lai_std'"],
        site_bounds=SITE_BOUNDS,
        period=PERIOD,
        site_crs=CRS,
        context_root=tmp_path / "gx",
    )
    assert err.docs_path is None and not (tmp_path / "gx").exists()


def test_pixel_table_problems_are_caught(gx_root: Path) -> None:
    df = make_pixels()
    df.loc[0, "cloud_mask"] = 2
    df.loc[1, "B05"] = np.nan  # clear row without reflectance
    df.loc[2, "sun_zenith"] = 95.0
    df.loc[3, "date"] = df.loc[2, "date"]  # rows 2 and 3 are both point A: a duplicate
    err = _fails(
        check_pixel_table,
        df,
        "data/pixels_bad.parquet",
        [
            "expect_column_values_to_be_in_set(column='cloud_mask'",
            "expect_column_values_to_not_be_null(column='B05'",
            "where cloud_mask == 0",
            "expect_column_values_to_be_between(column='sun_zenith'",
            "expect_compound_columns_to_be_unique(column='point_id,date'",
        ],
        context_root=gx_root,
    )
    _assert_docs(err)


def _campaign_pixels() -> pd.DataFrame:
    """A real campaign's table: cloudy rows with any values, and requested dates."""
    df = make_pixels()
    cloudy = [5, 6, 7]
    df.loc[cloudy, "cloud_mask"] = 1
    df.loc[5, list(c.S2_BANDS)] = 1.42  # bright cloud
    df.loc[6, list(c.S2_BANDS)] = -10000.0  # no data
    df.loc[7, ["B02", "B03"]] = [0.0, np.nan]  # partly empty
    requested = pd.DataFrame(
        {"point_id": ["A", "C"], "date": pd.to_datetime(["2024-05-02", "2024-04-30"])}
    )
    requested["cloud_mask"] = 1  # no acquisition: no bands, no angles
    return pd.concat([df, requested], ignore_index=True).sort_values(["point_id", "date"])


def test_pixel_table_cloudy_rows_and_requested_dates_pass(gx_root: Path) -> None:
    df = _campaign_pixels()
    assert df[list(c.S2_BANDS)].isna().all(axis=1).sum() == 3  # row 4 and the two requested
    result = check_pixel_table(df, "data/campaign.csv", context_root=gx_root)
    assert result.success and result.statistics["unsuccessful_expectations"] == 0


def test_pixel_table_clear_row_out_of_range_or_empty_fails(gx_root: Path) -> None:
    df = _campaign_pixels()
    df.loc[0, "B04"] = 1.7  # point A, 2024-04-02, clear
    df.loc[1, "view_zenith"] = np.nan  # clear rows need their geometry
    err = _fails(
        check_pixel_table,
        df,
        "data/campaign_bright.csv",
        [
            "expect_column_values_to_be_between(column='B04'",
            "where cloud_mask == 0",
            "1/",
            "point_id=A, date=2024-04-02 -> B04=1.7",
            "expect_column_values_to_not_be_null(column='view_zenith'",
            "point_id=A, date=2024-04-07",
        ],
        context_root=gx_root,
    )
    assert {f.column for f in err.failures} == {"B04", "view_zenith"}  # cloudy rows: not judged
    _assert_docs(err)


def test_campaign_csv_reads_and_passes_the_gate(gx_root: Path, tmp_path: Path) -> None:
    from releo.data.readers import read_pixel_table

    path = tmp_path / "campaign.csv"
    _campaign_pixels().to_csv(path, index=False, na_rep="")
    text = path.read_text().splitlines()
    # A blank cell and an empty cloud flag, as hand-made tables have them.
    last = text[-1].split(",")
    last[-1] = " "
    text[-1] = ",".join(last)
    path.write_text("\n".join(text) + "\n")
    df = read_pixel_table(path)
    assert df["cloud_mask"].tolist().count(1) == 6  # an empty flag counts as cloudy
    assert check_pixel_table(df, path, context_root=gx_root).success


# ---------------------------------------------------------------------------------------------
# Context handling


def test_rerun_in_a_fresh_process_state_reuses_the_context(gx_root: Path) -> None:
    # Forget the in-process cache: every GE object is found on disk and updated in place.
    gates_module._CONTEXTS.clear()
    gates_module._CHECKPOINTS.clear()
    assert check_pixel_table(make_pixels(), "data/pixels.parquet", context_root=gx_root).success
    assert (gx_root / "checkpoints" / "pixel_table.table.json").is_file()


def test_default_context_root_is_cwd_gx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = check_pixel_table(make_pixels(), "data/pixels.parquet")
    assert (
        result.docs_path
        == tmp_path / "gx" / "uncommitted" / "data_docs" / "local_site" / "index.html"
    )
    assert result.docs_path.is_file()
