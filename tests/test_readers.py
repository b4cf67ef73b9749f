"""Readers: real S2 L2A sample, other cube layouts, pixel tables and field surveys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from pyproj import Transformer

from releo.data.contracts import (
    MASK_CLEAR,
    MASK_CLOUD,
    MASK_NODATA,
    MASK_SHADOW,
    PIXEL_TABLE_COLUMNS,
    PLATFORM,
    RELATIVE_AZIMUTH_RANGE,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
    SUN_ZENITH_RANGE,
    SURVEY_COLUMNS,
    VIEW_ZENITH_RANGE,
)
from releo.data.errors import DataError
from releo.data.io import write_cube, write_table
from releo.data.readers import read_field_survey, read_pixel_table, read_s2_l2a

SAMPLE = Path(__file__).parent / "data" / "real_s2_l2a_sample"
SAMPLE_10M = SAMPLE / "test_aws_10m.nc"
SAMPLE_20M = SAMPLE / "test_aws_20m.nc"


def _assert_contract(cube: xr.Dataset, n_times: int) -> None:
    for band in S2_BANDS:
        assert cube[band].dims == ("time", "y", "x")
        assert cube[band].dtype == np.float32
    assert cube[S2_MASK].dtype == np.uint8
    assert set(np.unique(cube[S2_MASK])) <= {MASK_CLEAR, MASK_CLOUD, MASK_SHADOW, MASK_NODATA}
    for angle in S2_ANGLES:
        assert cube[angle].dims == ("time",)
    assert cube.sizes["time"] == n_times
    assert cube["time"].dtype == np.dtype("datetime64[ns]")
    assert cube.rio.resolution() == (10.0, -10.0)


# ---------------------------------------------------------------------------- real sample


@pytest.fixture(scope="module")
def sample() -> xr.Dataset:
    return read_s2_l2a(SAMPLE_10M)


def test_real_sample_reads_into_contract(sample: xr.Dataset) -> None:
    _assert_contract(sample, n_times=3)
    assert sample.sizes == {"time": 3, "y": 22, "x": 23}
    assert sample.rio.crs.to_epsg() == 32634
    assert list(sample[PLATFORM].values) == ["S2A", "S2B", "S2B"]
    valid = sample[S2_MASK] == MASK_CLEAR
    assert int(valid.isel(time=0).sum()) == 22 * 23 - 262  # AOI pixels; the rest is no data
    for band in S2_BANDS:
        values = sample[band].where(valid)
        assert float(values.min()) > 0.0 and float(values.max()) < 1.0
        assert bool(sample[band].isnull().equals(sample[S2_MASK] == MASK_NODATA))
    for angle, (lo, hi) in zip(
        S2_ANGLES, (SUN_ZENITH_RANGE, VIEW_ZENITH_RANGE, RELATIVE_AZIMUTH_RANGE), strict=True
    ):
        assert ((sample[angle] >= lo) & (sample[angle] <= hi)).all()
    raw = xr.open_dataset(SAMPLE_10M)
    expected = np.abs(raw["sun_azimuth"] - raw["view_azimuth"]).values
    np.testing.assert_allclose(sample["relative_azimuth"], expected, rtol=1e-6)
    np.testing.assert_allclose(sample["B8A"], raw["band_data"].sel(band="B8A"), rtol=1e-6)


def test_real_sample_native_bands_from_both_files(sample: xr.Dataset) -> None:
    cube = read_s2_l2a([SAMPLE_10M, SAMPLE_20M])
    _assert_contract(cube, n_times=3)
    assert cube.sizes == sample.sizes
    np.testing.assert_array_equal(cube["B04"], sample["B04"])  # 10 m band: the 10 m file
    raw20 = xr.open_dataset(SAMPLE_20M)["band_data"].sel(band="B11")
    # 20 m band: the measured 20 m value repeated over its four 10 m pixels (not interpolated)
    nearest = raw20.sel(x=cube["x"], y=cube["y"], method="nearest").values
    valid = np.isfinite(cube["B11"].values)
    np.testing.assert_allclose(cube["B11"].values[valid], nearest[valid], rtol=1e-6)
    assert np.allclose(cube["B11"].values[valid] * 1e4, np.round(cube["B11"].values[valid] * 1e4))


def test_real_sample_through_a_releo_cube(sample: xr.Dataset, tmp_path: Path) -> None:
    back = read_s2_l2a(write_cube(sample, tmp_path / "sample.zarr"))
    _assert_contract(back, n_times=3)
    np.testing.assert_allclose(back["B05"], sample["B05"], atol=5e-5 + 1e-7)
    np.testing.assert_array_equal(back[S2_MASK], sample[S2_MASK])


@pytest.mark.filterwarnings("ignore:.*does not have a Zarr V3 specification")
def test_real_sample_reprojected_and_from_generic_zarr(tmp_path: Path) -> None:
    cube = read_s2_l2a(SAMPLE_10M, crs="EPSG:32635")
    _assert_contract(cube, n_times=3)
    assert cube.rio.crs.to_epsg() == 32635
    n_valid = int((cube[S2_MASK] == MASK_CLEAR).isel(time=0).sum())
    assert abs(n_valid - 244) < 25  # same field, resampled onto a rotated grid
    with xr.open_dataset(SAMPLE_20M) as raw:
        raw.load().to_zarr(tmp_path / "generic.zarr", zarr_format=3, consolidated=False)
    cube = read_s2_l2a(tmp_path / "generic.zarr")
    _assert_contract(cube, n_times=3)
    assert cube.sizes == {"time": 3, "y": 22, "x": 22}  # 20 m upsampled to 10 m


# ------------------------------------------------------------------------- other layouts


def _grid(n: int, res: float) -> dict[str, np.ndarray]:
    return {
        "y": 4_800_000.0 - res * (np.arange(n) + 0.5),
        "x": 360_000.0 + res * (np.arange(n) + 0.5),
    }


def test_per_band_dn_netcdf_with_scl(tmp_path: Path) -> None:
    """One uint16 variable per band, L2A packing declared in attrs, SCL, azimuths, no CRS."""
    times = pd.to_datetime(["2024-05-01T10:30", "2024-05-06T10:30"])
    dn = np.full((2, 4, 4), 1000 + 2500, dtype=np.uint16)  # reflectance 0.25 at baseline 04.00
    data = {f"B{int(b[1:]) if b != 'B8A' else '8A'}": (("time", "y", "x"), dn) for b in S2_BANDS}
    scl = np.full((2, 4, 4), 4, dtype=np.uint8)
    scl[0, 0, 0], scl[0, 0, 1], scl[1, 3, 3] = 9, 3, 0
    data["SCL"] = (("time", "y", "x"), scl)
    data["SZA"] = ("time", [40.0, 41.0])
    data["VZA"] = ("time", [2.0, 9.0])
    data["sun_azimuth"] = ("time", [160.0, 350.0])
    data["view_azimuth"] = ("time", [290.0, 10.0])
    data["product_id"] = ("time", ["S2B_MSIL2A_20240501", "S2C_MSIL2A_20240506"])
    ds = xr.Dataset(
        data,
        coords={"time": times, **_grid(4, 10.0)},
        attrs={"BOA_QUANTIFICATION_VALUE": 10000, "BOA_ADD_OFFSET": -1000},
    )
    ds.to_netcdf(tmp_path / "dn.nc")

    with pytest.raises(DataError, match=r"dn\.nc.*no CRS"):
        read_s2_l2a(tmp_path / "dn.nc")
    cube = read_s2_l2a(tmp_path / "dn.nc", crs="EPSG:32631")
    _assert_contract(cube, n_times=2)
    np.testing.assert_allclose(cube["B12"], 0.25, rtol=1e-6)
    assert cube[S2_MASK].values[0, 0, 0] == MASK_CLOUD
    assert cube[S2_MASK].values[0, 0, 1] == MASK_SHADOW
    assert cube[S2_MASK].values[1, 3, 3] == MASK_NODATA
    assert int((cube[S2_MASK] == MASK_CLEAR).sum()) == 32 - 3
    np.testing.assert_allclose(cube["relative_azimuth"], [130.0, 20.0])  # folded to [0, 180]
    np.testing.assert_allclose(cube["sun_zenith"], [40.0, 41.0])
    assert list(cube[PLATFORM].values) == ["S2B", "S2C"]
    assert cube.rio.crs.to_epsg() == 32631


def test_dn_without_declared_scale_is_left_for_the_gates(tmp_path: Path) -> None:
    ds = xr.open_dataset(SAMPLE_10M).load()
    ds["band_data"] = ds["band_data"] * 10_000
    ds.to_netcdf(tmp_path / "dn.nc")
    assert float(read_s2_l2a(tmp_path / "dn.nc")["B04"].max()) > 100


def test_missing_band_and_angles(tmp_path: Path) -> None:
    ds = xr.open_dataset(SAMPLE_10M).load()
    ds.drop_sel(band=["B5", "B12"]).to_netcdf(tmp_path / "nine.nc")
    with pytest.raises(DataError, match=r"nine\.nc.*band\(s\) B05, B12 not found"):
        read_s2_l2a(tmp_path / "nine.nc")
    ds.drop_vars(["view_zenith"]).to_netcdf(tmp_path / "noangle.nc")
    with pytest.raises(DataError, match=r"noangle\.nc.*no view_zenith"):
        read_s2_l2a(tmp_path / "noangle.nc")


def test_geotiff_stacks(tmp_path: Path) -> None:
    """Per-date multi-band files with band descriptions, and per-band 10 m / 20 m files."""
    rng = np.random.default_rng(1)
    dates = ["20240501", "20240511"]
    multi = tmp_path / "multi"
    multi.mkdir()
    stack = {}
    for date in dates:
        values = rng.uniform(0.01, 0.5, (len(S2_BANDS), 4, 4)).astype("f4")
        da = xr.DataArray(
            values,
            dims=("band", "y", "x"),
            coords={"band": np.arange(1, 11), **_grid(4, 10.0)},
            attrs={"long_name": S2_BANDS},
        ).rio.write_crs("EPSG:32631")
        da.rio.write_nodata(np.nan, encoded=True, inplace=True)
        da.rio.to_raster(multi / f"S2A_{date}.tif")
        stack[date] = values
    pd.DataFrame(
        {
            "date": ["2024-05-01", "2024-05-11"],
            "sun_zenith": [35.0, 33.0],
            "view_zenith": [4.0, 6.0],
            "relative_azimuth": [100.0, 95.0],
            "platform": ["S2A", "S2B"],
        }
    ).to_csv(multi / "angles.csv", index=False)
    cube = read_s2_l2a(multi)
    _assert_contract(cube, n_times=2)
    np.testing.assert_allclose(cube["B03"].isel(time=1), stack["20240511"][1])
    assert list(cube[PLATFORM].values) == ["S2A", "S2B"]
    np.testing.assert_allclose(cube["view_zenith"], [4.0, 6.0])

    per_band = tmp_path / "per_band"
    per_band.mkdir()
    for date in dates:
        for band in S2_BANDS:
            res = 10.0 if band in ("B02", "B03", "B04", "B08") else 20.0
            n = int(40 / res)
            da = xr.DataArray(
                np.full((1, n, n), 0.1 + S2_BANDS.index(band) / 100, dtype="f4"),
                dims=("band", "y", "x"),
                coords={"band": [1], **_grid(n, res)},
            ).rio.write_crs("EPSG:32631")
            da.rio.to_raster(
                per_band / f"T31TCJ_{date}T105031_{band}.tif",
                tags={"SUN_ZENITH": 40.0, "VIEW_ZENITH": 5.0, "RELATIVE_AZIMUTH": 80.0},
            )
    cube = read_s2_l2a(per_band)
    _assert_contract(cube, n_times=2)
    assert cube.sizes["x"] == cube.sizes["y"] == 4
    np.testing.assert_allclose(cube["B11"], 0.1 + 8 / 100, rtol=1e-6)
    assert pd.Timestamp(cube["time"].values[0]) == pd.Timestamp("2024-05-01T10:50:31")
    np.testing.assert_allclose(cube["sun_zenith"], [40.0, 40.0])


# ---------------------------------------------------------------------------- pixel tables


def _pixel_rows() -> pd.DataFrame:
    rows = []
    for point in ("p2", "p1"):
        for date in ("2024-06-11", "2024-06-01"):
            row = {"ID": point, "acq_date": date, "SZA": 30.0, "VZA": 5.0, "RAA": 120.0}
            row |= {f"refl_{b}": 0.1 for b in S2_BANDS}
            row |= {"cloudy": date == "2024-06-11", "VV": -12.0, "x": 1.0, "y": 2.0}
            rows.append(row)
    return pd.DataFrame(rows)


PIXEL_MAP = {
    "ID": "point_id",
    "acq_date": "date",
    "SZA": "sun_zenith",
    "VZA": "view_zenith",
    "RAA": "relative_azimuth",
    "cloudy": "cloud_mask",
    **{f"refl_{b}": b for b in S2_BANDS},
}


@pytest.mark.parametrize("name", ["pixels.csv", "pixels.parquet"])
def test_pixel_table(tmp_path: Path, name: str) -> None:
    path = write_table(_pixel_rows(), tmp_path / name)
    df = read_pixel_table(path, column_map=PIXEL_MAP)
    assert set(PIXEL_TABLE_COLUMNS) <= set(df.columns)
    assert {"VV", "x", "y"} <= set(df.columns)
    assert list(df["point_id"]) == ["p1", "p1", "p2", "p2"]
    assert df["date"].dtype == np.dtype("datetime64[ns]")
    assert list(df["date"].dt.day) == [1, 11, 1, 11]
    assert df["cloud_mask"].dtype == np.uint8
    assert list(df["cloud_mask"]) == [0, 1, 0, 1]
    assert (df["B8A"] == 0.1).all()


@pytest.mark.parametrize("name", ["campaign.csv", "campaign.parquet"])
def test_pixel_table_empty_cells_of_cloudy_rows(tmp_path: Path, name: str) -> None:
    rows = _pixel_rows()
    bands = [f"refl_{b}" for b in S2_BANDS]
    rows[bands] = rows[bands].astype(object)
    rows.loc[0, bands] = ""  # a cloudy row left empty (Parquet: empty strings)
    rows.loc[2, bands[:3]] = [" ", None, -10000.0]  # blank, empty and no-data cells
    requested = {"ID": "p3", "acq_date": "2024-06-05", "cloudy": None}  # no acquisition
    rows = pd.concat([rows, pd.DataFrame([requested])], ignore_index=True)
    if name.endswith(".parquet"):
        rows[bands] = rows[bands].astype("string")  # a text column: Parquet has no mixed ones
    df = read_pixel_table(write_table(rows, tmp_path / name), column_map=PIXEL_MAP)
    assert len(df) == 5 and df["B02"].dtype == np.float64
    assert list(df["cloud_mask"]) == [0, 1, 0, 1, 1]  # an empty flag is not a clear sky
    # sorted by point and date: rows 0 and 2 of the file are now 3 and 1
    assert df.loc[3, list(S2_BANDS)].isna().all()
    assert df.loc[1, ["B02", "B03"]].isna().all() and df.loc[1, "B04"] == -10000.0
    requested_row = df.iloc[4]
    assert requested_row[[*S2_BANDS, "sun_zenith", "VV"]].isna().all()
    rows.loc[0, "refl_B03"] = "cloud"  # text that is not a number is still an error
    with pytest.raises(DataError, match=r"campaign.*'B03'.*\['cloud'\]"):
        read_pixel_table(write_table(rows, tmp_path / name), column_map=PIXEL_MAP)


def test_pixel_table_errors(tmp_path: Path) -> None:
    path = write_table(_pixel_rows().drop(columns=["VZA"]), tmp_path / "pixels.csv")
    without_vza = {k: v for k, v in PIXEL_MAP.items() if k != "VZA"}
    with pytest.raises(DataError, match=r"pixels\.csv.*missing.*'view_zenith'"):
        read_pixel_table(path, column_map=without_vza)
    with pytest.raises(DataError, match=r"pixels\.csv.*unknown column\(s\) \['zenith'\]"):
        read_pixel_table(path, column_map={**without_vza, "SZA": "zenith"})
    with pytest.raises(DataError, match=r"pixels\.csv.*\['VZA'\].*does not have"):
        read_pixel_table(path, column_map=PIXEL_MAP)
    with pytest.raises(DataError, match=r"pixels\.csv.*missing.*'point_id'"):
        read_pixel_table(path)


# --------------------------------------------------------------------------- field surveys


def _survey() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "point_id": ["b", "a", "c"],
            "date": ["2024-06-02", "2024-06-01", "2024-06-01"],
            "x": [1.4442, 1.4000, 362_500.0],
            "y": [43.6047, 43.6000, 4_830_000.0],
            "crs": ["EPSG:4326", "EPSG:4326", "EPSG:32631"],
            "land_cover": ["maize", "winter_wheat", "grassland"],
            "lai": [2.5, 3.1, 1.2],
            "lai_std": [0.3, 0.4, 0.2],
            "method": ["LAI-2200", "hemispherical photos", "LAI-2200"],
            "campaign": ["2024"] * 3,
        }
    )


def test_field_survey_reprojected(tmp_path: Path) -> None:
    path = write_table(_survey(), tmp_path / "survey.parquet")
    df = read_field_survey(path, "EPSG:32631")
    assert list(df.columns) == list(SURVEY_COLUMNS)
    assert list(df["point_id"]) == ["a", "b", "c"]
    assert (df["crs"] == "EPSG:32631").all()
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32631", always_xy=True).transform(
        1.4442, 43.6047
    )
    b = df.set_index("point_id").loc["b"]
    assert b["x"] == pytest.approx(x, abs=1e-6) and b["y"] == pytest.approx(y, abs=1e-6)
    assert 300_000 < b["x"] < 400_000 and 4_800_000 < b["y"] < 4_900_000  # near Toulouse
    c = df.set_index("point_id").loc["c"]
    assert (c["x"], c["y"]) == (362_500.0, 4_830_000.0)
    assert df["date"].dtype == np.dtype("datetime64[ns]")


def test_field_survey_column_map_and_errors(tmp_path: Path) -> None:
    path = write_table(_survey().rename(columns={"lai": "LAI_eff"}), tmp_path / "survey.csv")
    df = read_field_survey(path, "EPSG:32631", column_map={"LAI_eff": "lai"})
    assert list(df["lai"]) == [3.1, 2.5, 1.2]
    with pytest.raises(DataError, match=r"survey\.csv.*missing.*\['lai'\]"):
        read_field_survey(path, "EPSG:32631")
    bad = _survey()
    bad.loc[0, "crs"] = "EPSG:999999"
    path = write_table(bad, tmp_path / "badcrs.csv")
    with pytest.raises(DataError, match=r"badcrs\.csv.*invalid CRS 'EPSG:999999'"):
        read_field_survey(path, "EPSG:32631")
