"""Chunk tiling, leak-free spatial split and the chunk dataset."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from releo.data.chunks import ChunkDataset, assign_splits, check_no_leak, chunk_index, window_only
from releo.data.contracts import S1_POLARISATIONS, S2_BANDS


def cube(times: pd.DatetimeIndex, variables: dict, n: int = 12) -> xr.Dataset:
    coords = {
        "time": times,
        "y": 4_830_000 - 5 - 10 * np.arange(n),
        "x": 360_005 + 10 * np.arange(n),
    }
    shape = (len(times), n, n)
    data = {
        k: (("time", "y", "x"), np.full(shape, v, dtype=np.float32)) for k, v in variables.items()
    }
    return xr.Dataset(data, coords=coords)


@pytest.fixture
def site():
    s2_times = pd.date_range("2025-01-01", periods=8, freq="5D")
    s2 = cube(s2_times, {**{b: 0.1 for b in S2_BANDS}, "mask": 0})
    s2["mask"] = s2["mask"].astype(np.uint8)
    s2["mask"][1, :6, :6] = 1  # one cloudy quarter on the second date
    for angle, value in (("sun_zenith", 40.0), ("view_zenith", 5.0), ("relative_azimuth", 90.0)):
        s2[angle] = ("time", np.full(len(s2_times), value))
    s1_times = pd.date_range("2025-01-02", periods=6, freq="6D")
    s1 = cube(s1_times, {"VV": -10.0, "VH": -17.0, "incidence_angle": 38.0})
    return s2, s1


def test_chunks_tile_space_and_time_without_leaks(site):
    s2, s1 = site
    index = chunk_index(s2, s1, size_m=60, days=10, split={"train": 2, "val": 1, "test": 1})
    assert index.groupby("window").size().eq(4).all()  # 2 x 2 places per window
    assert index["window"].nunique() == 4  # 2025-01-01 .. 2025-02-01 in 10-day windows
    assert set(index["split"]) == {"train", "val", "test"}
    check_no_leak(index)
    assert index["n_s2"].sum() == 8 * 4 and index["n_s1"].sum() == 6 * 4
    first = index[(index.window == 0) & (index.row == 0) & (index.col == 0)].iloc[0]
    assert first.n_s2 == 2 and first.s2_clear_fraction == pytest.approx(0.5)


def test_leak_is_detected():
    index = pd.DataFrame({"row": [0, 0], "col": [0, 0], "split": ["train", "test"]})
    with pytest.raises(ValueError, match="several splits"):
        check_no_leak(index)


def test_split_shares_and_determinism():
    labels = assign_splits(20, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)
    assert sorted(pd.Series(labels).value_counts().to_dict().items()) == [
        ("test", 4), ("train", 12), ("val", 4),
    ]  # fmt: skip
    assert (labels == assign_splits(20, {"train": 0.6, "val": 0.2, "test": 0.2}, seed=3)).all()
    assert set(assign_splits(3, {"train": 0.9, "val": 0.05, "test": 0.05}, seed=0)) == {
        "train", "val", "test",
    }  # fmt: skip


def test_chunk_size_must_fit_the_pixels(site):
    with pytest.raises(ValueError, match="whole number"):
        chunk_index(*site, size_m=55, days=10)


def test_dataset_serves_chunk_tensors(site):
    s2, s1 = site
    index = chunk_index(s2, s1, size_m=60, days=10)
    ds = ChunkDataset(s2, s1, index, split="train")
    item = ds[0]
    assert item["s2"].shape == (2, len(S2_BANDS), 6, 6)
    assert item["s2_mask"].shape == (2, 6, 6) and item["s2_angles"].shape == (2, 3)
    assert item["s1"].shape[1:] == (len(S1_POLARISATIONS), 6, 6)
    assert item["s2_doy"].tolist() == [1.0, 6.0]
    assert len(ds) == (index.split == "train").sum()


def test_dataset_reads_temporal_context_around_the_window(site):
    s2, s1 = site
    index = chunk_index(s2, s1, size_m=60, days=10)
    plain = ChunkDataset(s2, s1, index)
    context = ChunkDataset(s2, s1, index, context_days=10)
    i = int(np.flatnonzero(index["window"] == 1)[0])  # 2025-01-11 .. 01-20
    item = context[i]
    # S2 every 5 days from day 1: days 1..26 lie within 10 days of the window, 11 and 16 in it.
    assert item["s2_doy"].tolist() == [1.0, 6.0, 11.0, 16.0, 21.0, 26.0]
    assert item["s2_in_window"].tolist() == [False, False, True, True, False, False]
    assert item["s1_doy"].tolist() == [2.0, 8.0, 14.0, 20.0, 26.0]
    assert item["s1_in_window"].tolist() == [False, False, True, True, False]
    assert item["window_doy"].tolist() == plain[i]["window_doy"].tolist()
    alone, expected = window_only(item), plain[i]
    for key in ("s2", "s2_mask", "s2_angles", "s2_doy", "s1", "s1_incidence", "s1_doy"):
        assert alone[key].shape == expected[key].shape, key
        assert (alone[key] == expected[key]).all(), key
    assert alone["s2_in_window"].all() and plain[i]["s2_in_window"].all()


# --- Out-of-core chunk index ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_site_dir(tmp_path_factory: pytest.TempPathFactory):
    """The simulator's tiny site (300 m x 300 m, 90 days), written as the pipeline stores it."""
    from releo.data.simulate import SimulationConfig, simulate_site

    root = tmp_path_factory.mktemp("tiny") / "site"
    config = SimulationConfig(
        width_m=300.0, height_m=300.0, start_date="2025-04-01", end_date="2025-06-29",
        survey_points=10,
    )  # fmt: skip
    simulate_site(config, root, progress=False)
    return root


def test_streamed_chunk_index_is_the_whole_mask_one(tiny_site_dir):
    """chunk_index on a lazily opened site (mask read a row of chunks at a time) gives the
    table the former whole-mask computation gave, to the last bit."""
    from releo.data.chunks import clear_fractions
    from releo.data.io import open_cube

    s2, s1 = open_cube(tiny_site_dir / "s2_l2a.zarr"), open_cube(tiny_site_dir / "s1_grd.zarr")
    lazy_s2 = open_cube(tiny_site_dir / "s2_l2a.zarr", lazy=True)
    lazy_s1 = open_cube(tiny_site_dir / "s1_grd.zarr", lazy=True)
    for size_m in (100.0, 150.0):
        npx = round(size_m / 10)
        rows = cols = 300 // round(size_m)
        whole = (s2["mask"] == 0).coarsen(y=npx, x=npx, boundary="trim").mean().values
        streamed = clear_fractions(lazy_s2["mask"], npx, rows, cols)
        assert np.array_equal(streamed, whole)
        eager = chunk_index(s2, s1, size_m=size_m, days=10)
        lazy = chunk_index(lazy_s2, lazy_s1, size_m=size_m, days=10)
        pd.testing.assert_frame_equal(lazy, eager, check_exact=True)
        assert 0 < eager["s2_clear_fraction"].mean() < 1


def test_streamed_datasets_serve_the_in_memory_items(tiny_site_dir, tmp_path):
    """make_datasets streams each item from the stores (no whole-site arrays): its items,
    truth and reference included, are those of a dataset over the site held in memory."""
    import torch

    from releo.data.io import open_cube
    from releo.data.site import open_site
    from releo.train.loop import make_datasets

    site = open_site(tiny_site_dir)
    index = chunk_index(site.s2, site.s1, size_m=100.0, days=10, split={"train": 1, "val": 1})
    streamed = make_datasets(tiny_site_dir, index, context_days=10)
    assert not site.s2["B04"].chunks and streamed["val"].s2["B04"].chunks  # dask-backed
    truth = open_cube(site.path("truth"))[["lai"]]
    for split in ("train", "val"):
        extra = {"truth": truth, "reference": site.reference} if split == "val" else {}
        held = ChunkDataset(site.s2, site.s1, index, split, context_days=10, **extra)
        assert len(held) == len(streamed[split]) > 0
        for i in (0, len(held) - 1):
            want, got = held[i], streamed[split][i]
            assert want.keys() == got.keys() and ("truth_lai" in got) == (split == "val")
            for key, value in want.items():
                if isinstance(value, torch.Tensor):
                    torch.testing.assert_close(got[key], value, rtol=0, atol=0, equal_nan=True)
                else:
                    assert got[key] == value
