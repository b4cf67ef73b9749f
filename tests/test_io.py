"""Cube and table storage: round trips, determinism, atomicity, corruption detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from releo.data import io
from releo.data.contracts import MASK_CLOUD, MASK_NODATA, S2_ANGLES, S2_BANDS, S2_MASK
from releo.data.errors import DataError
from releo.data.io import open_cube, read_table, write_cube, write_table


@pytest.fixture
def cube() -> xr.Dataset:
    """A small S2 contract cube: 4 dates, 8x8 px at 10 m in EPSG:32631, with NaNs."""
    rng = np.random.default_rng(42)
    times = pd.to_datetime(
        ["2024-04-02T10:56:01", "2024-04-07T10:46", "2024-04-17", "2024-04-22"], format="ISO8601"
    )
    shape = (len(times), 8, 8)
    data = {b: (("time", "y", "x"), rng.uniform(0.0, 0.6, shape).astype("f4")) for b in S2_BANDS}
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1, :3, :3] = MASK_CLOUD
    mask[2, 5, 5] = MASK_NODATA
    for band in S2_BANDS:
        data[band][1][2, 5, 5] = np.nan
    data[S2_MASK] = (("time", "y", "x"), mask)
    for angle, value in zip(S2_ANGLES, (35.0, 5.0, 120.0), strict=True):
        data[angle] = ("time", np.full(len(times), value, dtype="f4"))
    ds = xr.Dataset(
        data,
        coords={
            "time": times,
            "y": 4_800_005.0 - 10.0 * np.arange(8),
            "x": 360_005.0 + 10.0 * np.arange(8),
            "platform": ("time", ["S2A", "S2B", "S2A", "S2B"]),
        },
        attrs={"site": "synthetic"},
    )
    return ds.rio.write_crs("EPSG:32631")


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_round_trip(cube: xr.Dataset, tmp_path: Path) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    back = open_cube(path)
    for band in S2_BANDS:
        assert back[band].dtype == np.float32
        assert back[band].dims == ("time", "y", "x")
        np.testing.assert_array_equal(np.isnan(back[band]), np.isnan(cube[band]))
        np.testing.assert_allclose(back[band], cube[band], atol=5e-5 + 1e-7, equal_nan=True)
    np.testing.assert_array_equal(back[S2_MASK], cube[S2_MASK])
    assert back[S2_MASK].dtype == np.uint8
    for angle in S2_ANGLES:
        np.testing.assert_allclose(back[angle], cube[angle])
    np.testing.assert_array_equal(back["time"], cube["time"])
    assert back["time"].dtype == np.dtype("datetime64[ns]")
    assert list(back["platform"].values) == ["S2A", "S2B", "S2A", "S2B"]
    assert back.rio.crs.to_epsg() == 32631
    assert back.rio.resolution() == (10.0, -10.0)
    assert back.rio.transform() == cube.rio.transform(recalc=True)
    assert back.attrs == {"site": "synthetic"}

    # sharded: each variable is its metadata plus one shard (coordinates: one chunk)
    files = [p for p in path.rglob("*") if p.is_file()]
    assert len(files) <= 2 * len(back.variables) + 1
    for band in S2_BANDS:
        assert len(list((path / band).rglob("*"))) <= 5
    meta = json.loads((path / "B04" / "zarr.json").read_text())
    assert meta["data_type"] == "uint16"
    assert meta["codecs"][0]["name"] == "sharding_indexed"
    assert meta["attributes"]["scale_factor"] == pytest.approx(1e-4)


def test_rewrite_is_byte_identical(cube: xr.Dataset, tmp_path: Path) -> None:
    first = _files(write_cube(cube, tmp_path / "a.zarr"))
    second = _files(write_cube(cube, tmp_path / "b.zarr"))
    assert first == second
    # re-writing a cube that was read back gives the same bytes too
    third = _files(write_cube(open_cube(tmp_path / "a.zarr"), tmp_path / "c.zarr"))
    assert third == first
    write_cube(cube, tmp_path / "a.zarr")  # replaces in place, no leftovers beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "b.zarr", "c.zarr"]


def test_failed_write_keeps_previous_cube(
    cube: xr.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    before = _files(path)

    def boom(root: Path) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io, "_write_manifest", boom)
    with pytest.raises(OSError, match="disk full"):
        write_cube(cube.isel(time=[0]), path)
    assert _files(path) == before
    assert open_cube(path).sizes["time"] == 4
    assert [p.name for p in tmp_path.iterdir()] == ["s2.zarr"]  # temporary dir cleaned up


def test_out_of_range_reflectance_is_kept_as_float(cube: xr.Dataset, tmp_path: Path) -> None:
    cube["B08"] = cube["B08"] * 10_000  # DN-scaled by mistake: uint16 packing would wrap it
    with pytest.warns(UserWarning, match="B08"):
        path = write_cube(cube, tmp_path / "dn.zarr")
    np.testing.assert_allclose(open_cube(path)["B08"], cube["B08"], rtol=1e-6)


def test_missing_shard_is_detected(cube: xr.Dataset, tmp_path: Path) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    (path / "B05" / "c" / "0" / "0" / "0").unlink()
    with pytest.raises(DataError, match=r"s2\.zarr.*B05/c/0/0/0 is missing"):
        open_cube(path)


def test_truncated_shard_is_detected(cube: xr.Dataset, tmp_path: Path) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    shard = path / "B11" / "c" / "0" / "0" / "0"
    shard.write_bytes(shard.read_bytes()[:100])
    with pytest.raises(DataError, match=r"s2\.zarr.*B11/c/0/0/0 has 100 bytes"):
        open_cube(path)


@pytest.mark.parametrize("meta", ["zarr.json", "B02/zarr.json"])
def test_cut_metadata_is_detected(cube: xr.Dataset, tmp_path: Path, meta: str) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    text = (path / meta).read_text()
    (path / meta).write_text(text[: len(text) // 2])
    with pytest.raises(DataError, match=r"s2\.zarr"):
        open_cube(path)


def test_checksums_catch_flipped_bytes(cube: xr.Dataset, tmp_path: Path) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    shard = path / "B03" / "c" / "0" / "0" / "0"
    raw = bytearray(shard.read_bytes())
    raw[10] ^= 0xFF
    shard.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="B03/c/0/0/0 fails its SHA-256 check"):
        open_cube(path, verify_checksums=True)


@pytest.mark.filterwarnings("ignore:.*does not have a Zarr V3 specification")
def test_missing_or_foreign_store(cube: xr.Dataset, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing directory"):
        open_cube(tmp_path / "nothing.zarr")
    cube.to_zarr(tmp_path / "plain.zarr", zarr_format=3, consolidated=False)
    with pytest.raises(DataError, match="not a releo cube"):
        open_cube(tmp_path / "plain.zarr")
    with pytest.raises(DataError, match="no CRS"):
        write_cube(cube.drop_vars("spatial_ref"), tmp_path / "nocrs.zarr")


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.csv.gz"])
def test_table_round_trip(tmp_path: Path, name: str) -> None:
    df = pd.DataFrame(
        {
            "point_id": ["p1", "p2"],
            "date": pd.to_datetime(["2024-05-01", "2024-05-11"]),
            "lai": [1.5, np.nan],
        }
    )
    path = write_table(df, tmp_path / name)
    back = read_table(path)
    pd.testing.assert_frame_equal(back, df, check_dtype=False)
    assert pd.api.types.is_datetime64_any_dtype(back["date"])
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_table_errors(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1]})
    with pytest.raises(DataError, match=r"t\.xlsx.*unknown table format"):
        write_table(df, tmp_path / "t.xlsx")
    with pytest.raises(DataError, match=r"t\.parquet.*not found"):
        read_table(tmp_path / "t.parquet")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"bad\.parquet.*cannot read parquet"):
        read_table(tmp_path / "bad.parquet")
