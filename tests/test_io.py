"""Cube and table storage: round trips, determinism, atomicity, corruption detection."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
import zarr.storage

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

    monkeypatch.setattr(io, "write_manifest", boom)
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


# --- Layout aligned with releo's chunks, and fast decoding ------------------------------------


class RecordingStore(zarr.storage.LocalStore):
    """A local store that records every read: (key, byte range, bytes returned)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, read_only=True)
        self.reads: list[tuple[str, object, int]] = []

    async def get(self, key, prototype=None, byte_range=None):
        buf = await super().get(key, prototype, byte_range)
        self.reads.append((key, byte_range, 0 if buf is None else len(buf)))
        return buf

    async def get_partial_values(self, prototype, key_ranges):
        key_ranges = list(key_ranges)
        bufs = await super().get_partial_values(prototype, key_ranges)
        for (key, byte_range), buf in zip(key_ranges, bufs, strict=True):
            self.reads.append((key, byte_range, 0 if buf is None else len(buf)))
        return bufs


def _site_cube(n: int = 300, dates: int = 6) -> xr.Dataset:
    """A 3 km x 3 km S2-like cube at 10 m (3 x 3 chunks of 1 km) with noisy reflectance."""
    rng = np.random.default_rng(7)
    times = pd.date_range("2025-05-01", periods=dates, freq="5D")
    shape = (dates, n, n)
    data = {
        "B04": (("time", "y", "x"), np.round(rng.uniform(0, 0.5, shape), 4).astype("f4")),
        S2_MASK: (("time", "y", "x"), rng.integers(0, 3, shape, dtype=np.uint8)),
    }
    coords = {
        "time": times,
        "y": 4_830_005.0 - 10.0 * np.arange(n),
        "x": 360_005.0 + 10.0 * np.arange(n),
    }
    return xr.Dataset(data, coords=coords).rio.write_crs("EPSG:32631")


def test_inner_chunks_are_chunk_windows_of_all_dates(tmp_path: Path) -> None:
    path = write_cube(_site_cube(), tmp_path / "s2.zarr")
    for name in ("B04", S2_MASK):
        meta = json.loads((path / name / "zarr.json").read_text())
        sharding = meta["codecs"][0]
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [6, 300, 300]  # one shard
        assert sharding["configuration"]["chunk_shape"] == [6, 100, 100]  # 1 km x all dates
        assert len(list((path / name / "c").rglob("*"))) == 3  # c/0/0/0: a single shard file
    # another chunk size: 500 m windows of 50 px
    path = write_cube(_site_cube(), tmp_path / "s2_500.zarr", chunk_m=500.0)
    meta = json.loads((path / "B04" / "zarr.json").read_text())
    assert meta["codecs"][0]["configuration"]["chunk_shape"] == [6, 50, 50]


def test_reading_one_chunk_reads_only_its_inner_chunk(tmp_path: Path) -> None:
    path = write_cube(_site_cube(), tmp_path / "s2.zarr")
    shard = path / "B04" / "c" / "0" / "0" / "0"
    store = RecordingStore(path)
    array = zarr.open_array(store, path="B04", mode="r")
    window = array[:, 100:200, 200:300]  # chunk (row 1, column 2)
    assert window.shape == (6, 100, 100)
    data_reads = [r for r in store.reads if r[0] == "B04/c/0/0/0"]
    # the shard index (a few bytes at the end) and exactly one inner chunk's byte range
    assert len(data_reads) == 2
    read_bytes = sum(r[2] for r in data_reads)
    assert read_bytes < shard.stat().st_size / 8  # 1 of 9 inner chunks, plus the index
    whole = RecordingStore(path)
    zarr.open_array(whole, path="B04", mode="r")[...]
    assert sum(r[2] for r in whole.reads if r[0] == "B04/c/0/0/0") >= shard.stat().st_size - 16


def test_fast_decoding_is_bit_identical_to_xarrays(tmp_path: Path) -> None:
    """open_cube's float32 reflectance equals xarray's CF decoding cast to float32, for every
    one of the 65,536 stored values (NaN for the fill value)."""
    stored = np.arange(2**16, dtype=np.uint16).reshape(1, 256, 256)
    ds = xr.Dataset(
        {"B04": (("time", "y", "x"), stored)},
        coords={
            "time": pd.to_datetime(["2025-05-01"]),
            "y": 4_830_005.0 - 10.0 * np.arange(256),
            "x": 360_005.0 + 10.0 * np.arange(256),
        },
    ).rio.write_crs("EPSG:32631")
    ds.B04.attrs.update(scale_factor=1e-4, add_offset=-0.1)  # stored as is: raw uint16
    encoding = {"B04": {"_FillValue": 65535}}
    ds.to_zarr(tmp_path / "raw.zarr", zarr_format=3, consolidated=False, encoding=encoding)
    raw = xr.open_zarr(tmp_path / "raw.zarr", chunks=None, zarr_format=3, consolidated=False)
    reference = raw.B04.values.astype(np.float32)  # xarray's decoding, as open_cube did it
    decoded = io._decode_reflectance(stored, raw.B04.encoding)
    assert decoded.dtype == np.float32
    assert np.array_equal(decoded.view(np.uint32), reference.view(np.uint32))
    assert np.isnan(decoded.ravel()[65535]) and np.isfinite(decoded.ravel()[:65535]).all()
    # through write_cube and open_cube: the same values again, eager and lazy
    ds["B04"] = (ds.B04.dims, reference)
    path = write_cube(ds.isel(y=slice(0, 255)), tmp_path / "s2.zarr")  # without the fill row
    back = open_cube(path).B04.values
    assert np.array_equal(back.view(np.uint32), reference[:, :255].view(np.uint32))
    lazy = open_cube(path, lazy=True).B04.values.astype(np.float32)
    assert np.array_equal(lazy.view(np.uint32), reference[:, :255].view(np.uint32))


def test_lazy_cube_holds_the_same_values(cube: xr.Dataset, tmp_path: Path) -> None:
    path = write_cube(cube, tmp_path / "s2.zarr")
    eager = open_cube(path)
    lazy = open_cube(path, lazy=True)
    assert lazy[S2_MASK].chunks is not None  # dask-backed, nothing read yet
    xr.testing.assert_identical(lazy.compute(), eager)
