"""The per-pixel inversion baseline and ``releo lai`` on pixel tables, on a tiny simulated site."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from typer.testing import CliRunner

from releo.cli import app
from releo.config import ParamsError, load_params
from releo.data.chunks import chunk_index, collate_chunks
from releo.data.contracts import S2_BANDS
from releo.data.errors import DataError
from releo.data.io import read_table, write_table
from releo.data.simulate import SimulationConfig, simulate_site
from releo.data.site import open_site
from releo.models import ModelConfig, build_model
from releo.models.pixel import (
    BaselineConfig,
    load_pixel_inversion,
    predict_pixel_lai,
    save_pixel_inversion,
)
from releo.models.pixel_train import (
    clear_pixel_dates,
    evaluate_pixel_inversion,
    predict_cube_lai,
    split_mask,
    train_pixel_inversion,
)
from releo.models.slots import SlotPooling
from releo.products.pixel_table import (
    DEFAULT_WINDOW_DAYS,
    PixelSeries,
    default_output,
    fine_tune,
    load_column_map,
    predict_table_lai,
    read_lai_table,
    site_pixel_table,
)

# Wheat, grassland and water over April-May: LAI from 0 to ~6 on a 30 x 30 px site.
SITE = SimulationConfig(
    seed=6, width_m=300, height_m=300, start_date=date(2025, 4, 1), end_date=date(2025, 6, 9),
    survey_points=5,
)  # fmt: skip
FAST = BaselineConfig(hidden_width=64, steps=150, batch_size=256, samples=5000, log_every=50)
TINY = ModelConfig(
    embedding_dim=32, residual_dim=4, pixel_width=16, attention_heads=2, conv_width=8,
    latent_grid=2, field_slots=4, slot_features=2, detail_channels=8, hidden_width=32,
    query_pixels=8, fused_prosail=False, hybrid_samples=2000, hybrid_steps=50,
)  # fmt: skip
# How a user's table may name things: canonical name -> the table's column.
RENAMED = {
    "point_id": "station", "date": "acq_date", "B8A": "b8a", "sun_zenith": "SZA",
    "cloud_mask": "cloudy", "platform": "sat",
}  # fmt: skip
runner = CliRunner()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("pixel_site")
    simulate_site(SITE, root, progress=False)
    opened = open_site(root)
    split = {"train": 0.5, "val": 0.25, "test": 0.25}
    return root, chunk_index(opened.s2, opened.s1, size_m=100, days=10, split=split)


@pytest.fixture(scope="module")
def baseline(site):
    torch.set_num_threads(1)
    return train_pixel_inversion(*site, FAST, seed=0)


# ------------------------------------------------------------------------------- the baseline


def test_baseline_learns_lai_without_labels(site, baseline):
    model, history = baseline
    assert [h["step"] for h in history] == [50, 100, 150]
    assert history[-1]["nll"] < history[0]["nll"] - 10  # the physics fit improves
    metrics = evaluate_pixel_inversion(model, *site, "val")
    assert metrics["n_pixel_dates"] > 500 and metrics["n_snap"] > 0
    # Held-out places, no label ever seen: close to the truth, and SNAP is scored alongside.
    assert metrics["lai_r2_truth"] > 0.8 and metrics["lai_rmse_truth"] < 0.6
    assert np.isfinite(metrics["snap_lai_rmse_truth"])
    assert 0.0 <= metrics["lai_coverage90_truth"] <= 1.0


def test_split_selection_keeps_places_apart(site):
    root, index = site
    s2 = open_site(root).s2.load()
    masks = {s: split_mask(s2, index, s) for s in ("train", "val", "test")}
    assert not (masks["train"] & masks["val"]).any() and not (masks["val"] & masks["test"]).any()
    assert (masks["train"] | masks["val"] | masks["test"]).all()  # the site is whole chunks
    a = clear_pixel_dates(s2, masks["train"], max_samples=300, seed=1)
    b = clear_pixel_dates(s2, masks["train"], max_samples=300, seed=1)
    assert len(a) == 300 and np.array_equal(a.flat, b.flat)
    assert masks["train"].reshape(-1)[a.flat].all()
    t, rest = np.divmod(a.flat, s2.sizes["y"] * s2.sizes["x"])
    y, x = np.divmod(rest, s2.sizes["x"])
    assert np.allclose(a.bands[:, 0], s2["B02"].values[t, y, x])
    assert (s2["mask"].values[t, y, x] == 0).all()
    assert np.allclose(a.angles[:, 0], s2["sun_zenith"].values[t])


@pytest.mark.parametrize("max_samples", [None, 300])
def test_clear_pixel_dates_by_blocks_of_dates_are_the_whole_cube_draw(
    site, monkeypatch, max_samples
):
    """Read a few dates at a time from the lazily opened site, with the split's selection made
    block by block, the pixel-dates (and a sample of them) are those of the whole cube at once:
    a seeded choice among every clear pixel-date of the split."""
    from functools import partial

    from releo.data import spill

    root, index = site
    s2 = open_site(root).s2.load()
    selection = split_mask(s2, index, "train")
    usable = selection & (s2["mask"].values == 0)
    usable &= np.isfinite(np.stack([s2[b].values for b in S2_BANDS], -1)).all(-1)
    expected = np.flatnonzero(usable)
    if max_samples is not None:
        expected = np.sort(np.random.default_rng(3).choice(expected, max_samples, replace=False))
    lazy = open_site(root, lazy=True).s2
    monkeypatch.setattr(spill, "BLOCK_VALUES", 2 * 30 * 30 * 10)  # 2 dates per block
    assert len(spill.date_blocks(lazy.sizes["time"], 30 * 30 * 10)) > 5
    got = clear_pixel_dates(lazy, partial(split_mask, lazy, index, "train"), max_samples, seed=3)
    np.testing.assert_array_equal(got.flat, expected)
    t, rest = np.divmod(got.flat, 30 * 30)
    np.testing.assert_array_equal(got.bands[:, 3], s2["B05"].values[t, *np.divmod(rest, 30)])


def test_predict_save_and_load(site, baseline, tmp_path):
    model, _ = baseline
    s2 = open_site(site[0]).s2.load()
    pixels = clear_pixel_dates(s2, split_mask(s2, site[1], "val"), max_samples=50)
    bands = np.vstack([pixels.bands, np.full((1, 10), np.nan, np.float32)])
    angles = np.vstack([pixels.angles, pixels.angles[:1]])
    lai, std = predict_pixel_lai(model, bands, angles)
    assert lai.shape == std.shape == (51,) and np.isnan(lai[-1]) and np.isnan(std[-1])
    assert ((lai[:-1] >= 0) & (lai[:-1] <= 10)).all() and (std[:-1] > 0).all()
    path = save_pixel_inversion(model, tmp_path / "baseline.pt")
    again = predict_pixel_lai(load_pixel_inversion(path), bands, angles)
    np.testing.assert_array_equal(again[0], lai)
    with pytest.raises(ValueError, match=r"bands: expected shape \(N, 10\)"):
        predict_pixel_lai(model, bands[:, :9], angles)
    with pytest.raises(DataError, match="not found"):
        load_pixel_inversion(tmp_path / "missing.pt")
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(DataError, match=r"other\.pt: not a pixel inversion model"):
        load_pixel_inversion(tmp_path / "other.pt")


def test_cube_prediction_is_nan_where_not_clear(site, baseline):
    s2 = open_site(site[0]).s2.load()
    out = predict_cube_lai(baseline[0], s2)
    clear = s2["mask"].values == 0
    assert out["lai"].dims == ("time", "y", "x")
    assert np.isfinite(out["lai"].values[clear]).all() and np.isnan(out["lai"].values[~clear]).all()


def test_baseline_params_section(tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"baseline": {"steps": 10, "kl_weight": 0.5}}))
    assert load_params(path).baseline == BaselineConfig(steps=10, kl_weight=0.5)
    path.write_text(yaml.safe_dump({"baseline": {"steps": 0}}))
    with pytest.raises(ParamsError, match=r"params\.yaml: baseline\.steps"):
        load_params(path)


# ----------------------------------------------------------------------------------- releo lai


@pytest.fixture(scope="module")
def files(site, tmp_path_factory):
    """A user's pixel table (renamed columns, shuffled rows), its column map, a tiny model."""
    folder = tmp_path_factory.mktemp("lai")
    table = site_pixel_table(site[0], 64, seed=0)
    assert {"VV", "VH", "incidence_angle", "truth_lai"} <= set(table.columns)
    user = table.rename(columns=RENAMED)
    user = user.sample(frac=1.0, random_state=0).reset_index(drop=True)
    write_table(user, folder / "pixels.csv")
    (folder / "columns.yaml").write_text(yaml.safe_dump(RENAMED))
    torch.manual_seed(0)
    state = {"model": build_model(TINY).state_dict(), "config": TINY.model_dump(), "weights": {}}
    torch.save(state, folder / "model.pt")
    params = {"quality": {"context_root": str(folder / "gx")}}
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder


def lai_args(folder: Path, table: str = "pixels.csv", *extra: str) -> list[str]:
    return [
        "lai", str(folder / table), "--columns", str(folder / "columns.yaml"),
        "--model", str(folder / "model.pt"), "--params", str(folder / "params.yaml"), *extra,
    ]  # fmt: skip


def _by_point_and_date(out: pd.DataFrame) -> pd.DataFrame:
    out = out.rename(columns={v: k for k, v in RENAMED.items()})
    return out.assign(date=pd.to_datetime(out["date"])).set_index(["point_id", "date"])


def test_lai_writes_the_table_back_with_each_points_series(files):
    result = runner.invoke(app, lai_args(files))
    assert result.exit_code == 0, result.output
    assert "64 points" in result.output and "10-day windows, ±10 days of context" in result.output
    source = read_table(files / "pixels.csv")
    out = read_table(files / "pixels_lai.csv")
    assert list(out.columns) == [*source.columns, "lai", "lai_std"]
    pd.testing.assert_frame_equal(out[source.columns], source)  # rows as they were, in order
    # Decoded at every row, cloudy ones included, inside the physical range.
    assert out["lai"].between(0, 10).all() and (out["lai_std"] > 0).all()
    assert (out["cloudy"] == 1).any()
    # Each row holds its own (point, date) value of the model run on the canonical table.
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    torch.manual_seed(0)
    expected = predict_table_lai(build_model(TINY), table)[0]
    got = _by_point_and_date(out).loc[list(zip(table["point_id"], table["date"], strict=True))]
    np.testing.assert_allclose(got["lai"].to_numpy(), expected, rtol=1e-5, atol=1e-6)

    # --fine-tune-epochs: self-supervised epochs on the table's own series first.
    args = lai_args(files, "pixels.csv", "--fine-tune-epochs", "1", "--lr", "1e-3")
    result = runner.invoke(app, [*args, "--out", str(files / "tuned.parquet")])
    assert result.exit_code == 0, result.output
    assert "fine-tune epoch 1/1: loss " in result.output  # the loss of each epoch is printed
    tuned = read_table(files / "tuned.parquet")
    assert len(tuned) == len(out) and not np.allclose(tuned["lai"], out["lai"])


def test_fine_tuning_lowers_the_physics_loss(files):
    torch.set_num_threads(1)
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    table = table[table["point_id"].isin(table["point_id"].unique()[:32])]
    torch.manual_seed(0)
    model = build_model(TINY)
    before = predict_table_lai(model, table)[0]
    reported = []
    losses = fine_tune(
        model, table, 4, lr=3e-3, batch_windows=32, on_epoch=lambda *e: reported.append(e)
    )
    assert len(losses) == 4 and losses[-1] < losses[0]
    assert reported == [(i + 1, loss) for i, loss in enumerate(losses)]  # a loss per epoch
    assert not np.allclose(predict_table_lai(model, table)[0], before)


def test_lai_with_the_per_pixel_baseline_follows_the_truth(files, baseline):
    save_pixel_inversion(baseline[0], files / "baseline.pt")
    args = lai_args(files, "pixels.csv", "--out", str(files / "baseline_lai.csv"))
    args[args.index("--model") + 1] = str(files / "baseline.pt")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = read_table(files / "baseline_lai.csv")
    clear = out["cloudy"] == 0
    assert np.isfinite(out.loc[clear, "lai"]).all() and out.loc[~clear, "lai"].isna().all()
    # The bands, angles and dates reached the model as they should: LAI follows the truth.
    assert np.corrcoef(out.loc[clear, "lai"], out.loc[clear, "truth_lai"])[0, 1] > 0.9
    result = runner.invoke(app, [*args, "--fine-tune-epochs", "1"])
    assert result.exit_code == 1 and "baseline.pt" in result.output


def _broken(folder: Path, name: str, change) -> str:
    table = read_table(folder / "pixels.csv")
    write_table(change(table), folder / name)
    return name


def test_lai_errors_name_the_file_and_the_column(files):
    cases = {
        "missing band": (
            _broken(files, "no_b05.csv", lambda t: t.drop(columns=["B05"])),
            ["no_b05.csv", "missing", "'B05'"],
        ),
        "S1 without incidence": (
            _broken(files, "no_inc.csv", lambda t: t.drop(columns=["incidence_angle"])),
            ["no_inc.csv", "'incidence_angle'"],
        ),
        "output column taken": (
            _broken(files, "has_lai.csv", lambda t: t.assign(lai=1.0)),
            ["has_lai.csv", "'lai'"],
        ),
        "mapped column absent": (
            _broken(files, "no_sza.csv", lambda t: t.drop(columns=["SZA"])),
            ["no_sza.csv", "'SZA'"],
        ),
    }
    for what, (name, expected) in cases.items():
        result = runner.invoke(app, lai_args(files, name))
        assert result.exit_code == 1, what
        assert all(text in result.output for text in expected), (what, result.output)
        assert not (files / default_output(name)).exists()
    (files / "bad_map.yaml").write_text(yaml.safe_dump({**RENAMED, "B13": "b13"}))
    args = lai_args(files)
    args[args.index("--columns") + 1] = str(files / "bad_map.yaml")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "bad_map.yaml" in result.output and "'B13'" in result.output
    args = lai_args(files)
    args[args.index("--model") + 1] = str(files / "absent.pt")
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "absent.pt" in result.output


def test_lai_bad_values_fail_the_gate(files):
    def brighten(table):
        clear = table.index[table["cloudy"] == 0][:3]
        table.loc[clear, "B04"] = 1.7
        return table

    name = _broken(files, "bright.csv", brighten)
    result = runner.invoke(app, lai_args(files, name, "--out", str(files / "out.parquet")))
    assert result.exit_code == 1
    assert "bright.csv" in result.output and "B04" in result.output and "1.7" in result.output
    assert not (files / "out.parquet").exists()


def test_column_map_file(files, tmp_path):
    assert load_column_map(files / "columns.yaml") == RENAMED
    (tmp_path / "map.json").write_text('{"B02": "blue"}')
    assert load_column_map(tmp_path / "map.json") == {"B02": "blue"}
    (tmp_path / "twice.yaml").write_text("B02: blue\nB03: blue\n")
    with pytest.raises(DataError, match=r"twice\.yaml.*\['blue'\]"):
        load_column_map(tmp_path / "twice.yaml")
    (tmp_path / "list.yaml").write_text("- B02\n")
    with pytest.raises(DataError, match=r"list\.yaml: column map must map"):
        load_column_map(tmp_path / "list.yaml")


def test_default_output_names():
    assert default_output("a/pixels.csv") == Path("a/pixels_lai.csv")
    assert default_output("pixels.v2.parquet") == Path("pixels.v2_lai.parquet")
    assert default_output("pixels.csv.gz") == Path("pixels_lai.csv.gz")


def test_each_row_is_decoded_from_its_own_series(files):
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    series = PixelSeries.from_table(table)
    points = table["point_id"].to_numpy()
    first, second = points[0], points[-1]
    row = int(np.flatnonzero((points == first) & series.usable)[-1])
    changed = table.copy()
    changed.loc[row, "B08"] = changed.loc[row, "B08"] * 0.5  # one clear date of one point
    same_point = points == first
    days = (table["date"] - table["date"].min()).dt.days.to_numpy()
    for window, context in ((10, 0), (10, 10), (5, 10)):
        torch.manual_seed(0)
        model = build_model(TINY.model_copy(update={"context_days": context})).eval()
        with torch.no_grad():  # a fresh model barely reacts to its inputs: amplify its weights
            for p in model.parameters():
                p.mul_(3.0)
        before = predict_table_lai(model, table, window_days=window)[0]
        after = predict_table_lai(model, changed, window_days=window)[0]
        moved = before != after
        assert moved[row] and not moved[points == second].any()
        # the dates of windows that read the changed date: its own, and with the context the
        # windows starting or ending within 10 days of it
        start = days // window * window
        reads = (start - context <= days[row]) & (days[row] <= start + window - 1 + context)
        assert moved[same_point & reads].all() and not moved[same_point & ~reads].any()
        own_window = same_point & (days // window == days[row] // window)
        assert (moved & ~own_window).any() == (context > 0)


def _amplified(cfg: ModelConfig) -> torch.nn.Module:
    """A fresh model whose weights are scaled up: an untrained one barely reacts to its inputs."""
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(3.0)
    return model


def _two_years(table: pd.DataFrame) -> pd.DataFrame:
    """The table's season twice: the same days of year in 2024 with another point's bands."""
    earlier = table.copy()
    earlier["date"] = earlier["date"] - pd.Timedelta(days=366)  # 2024 is a leap year
    points = earlier["point_id"].unique()
    other = dict(zip(points, np.roll(points, 1), strict=True))
    donor = table.set_index(["point_id", "date"])
    keys = list(zip(earlier["point_id"].map(other), table["date"], strict=True))
    columns = [c for c in table.columns if c not in ("point_id", "date", "x", "y", "crs")]
    earlier[columns] = donor.loc[keys, columns].to_numpy()
    both = pd.concat([earlier, table], ignore_index=True)
    return both.sort_values(["point_id", "date"], kind="stable").reset_index(drop=True)


def test_series_are_read_in_the_models_windows(files):
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    table = _two_years(table[table["point_id"].isin(table["point_id"].unique()[:8])])
    series = PixelSeries.from_table(table)
    windows = series.windows(DEFAULT_WINDOW_DAYS, 10)
    # Ten-day windows of each point, never one multi-year chunk; each reads 10 days either side.
    days = (table["date"] - table["date"].min()).dt.days.to_numpy()
    assert all(np.ptp(days[w.rows[w.inside]]) < 10 for w in windows)
    assert all(np.ptp(days[w.rows]) < 30 for w in windows)
    assert len(windows) == table.groupby(["point_id", days // 10]).ngroups
    model = _amplified(TINY.model_copy(update={"context_days": 10}))
    lai, std = predict_table_lai(model, table, batch_windows=7, group_points=3)
    # any batching (rounding aside), and the default window is the model's 10 days
    again = predict_table_lai(model, table, window_days=10)[0]
    np.testing.assert_allclose(lai, again, rtol=1e-5, atol=1e-6)
    assert np.isfinite(lai).all() and (std > 0).all()
    # Each window has its own embedding: LAI varies over a point's two seasons, and the same
    # day of year gets another value in the other year (one chunk would give it one value).
    point = table["point_id"] == table["point_id"].iloc[0]
    assert np.unique(lai[point]).size > point.sum() // 2
    doy = table["date"].dt.day_of_year
    year = table["date"].dt.year
    same = pd.DataFrame({"doy": doy, "year": year, "lai": lai})[point]
    paired = same.pivot_table(index="doy", columns="year", values="lai").dropna()
    assert len(paired) > 5 and (paired.iloc[:, 0] != paired.iloc[:, 1]).all()


def test_cloudy_rows_and_requested_dates_get_lai(files):
    """Cloudy rows may hold anything (> 1, -10000, empty) and a requested date (a field-survey
    date without acquisition) has empty bands and angles: each gets its window's LAI. Built
    here without the gate, which another change opens to such rows."""
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    table = table[table["point_id"].isin(table["point_id"].unique()[:6])].reset_index(drop=True)
    cloudy = table.index[table["cloud_mask"] == 1]
    bright = table.copy()
    bright.loc[cloudy[::2], list(S2_BANDS)] = 1.4
    bright.loc[cloudy[1::2], list(S2_BANDS)] = -10000.0
    requested = table.drop_duplicates("point_id").copy()
    requested["date"] = requested["date"] + pd.Timedelta(days=23, hours=5)
    requested[[*S2_BANDS, "sun_zenith", "view_zenith", "relative_azimuth", "platform"]] = np.nan
    requested[["VV", "VH", "incidence_angle"]] = np.nan
    requested["cloud_mask"] = 1
    asked = pd.concat(
        [bright.assign(requested=False), requested.assign(requested=True)], ignore_index=True
    )
    asked = asked.sort_values(["point_id", "date"], kind="stable").reset_index(drop=True)
    model = _amplified(TINY.model_copy(update={"context_days": 10}))
    lai, std = predict_table_lai(model, asked)
    assert np.isfinite(lai).all() and np.isfinite(std).all() and (std > 0).all()
    assert asked["requested"].sum() == 6 and np.unique(lai[asked["requested"]]).size == 6
    # The cloudy rows' values are never read, nor do requested dates change the others' LAI.
    acquired = ~asked["requested"].to_numpy()
    plain = predict_table_lai(model, table)[0]
    np.testing.assert_allclose(lai[acquired], plain, rtol=1e-5, atol=1e-6)


def test_window_batches_are_the_chunk_items_collated(files):
    _, table, _ = read_lai_table(files / "pixels.csv", RENAMED)
    series = PixelSeries.from_table(table)
    windows = series.windows(10, 10)[:40]
    batch, rows = series.batch(windows)
    expected = collate_chunks([series.item(w) for w in windows])
    assert batch.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            torch.testing.assert_close(batch[key], value, equal_nan=True, msg=key)
        else:
            assert batch[key] == value, key
    for i, w in enumerate(windows):
        assert (
            np.array_equal(rows[i, : w.rows.size], w.rows) and (rows[i, w.rows.size :] == -1).all()
        )


@pytest.mark.parametrize(("slots", "power"), [(49, False), (9, True), (4, False)])
def test_single_pixel_slot_pooling_is_the_fits(slots, power):
    """A 1 × 1 chunk skips the cell fit: its slot code is what the fit gives (exactly for the
    default Voronoi slots), and chunks of several pixels still go through the fit."""
    torch.manual_seed(1)
    pool = SlotPooling(16, slots, 2, iterations=5, fit_steps=100, power=power)
    pixels, values = torch.randn(6, 16, 1, 1), 3 * torch.rand(6, 7, 11, 1, 1) - 1
    observed = torch.rand(6, 7, 1, 1) > 0.4
    observed[1], observed[2, 1:] = False, False  # overcast, one observed date
    fast = pool(pixels, values, observed)
    fitted = pool.pooled(pixels, *pool.fitted_cells(values, observed))
    torch.testing.assert_close(fast, fitted, rtol=0, atol=0 if not power else 1e-6)
    # the pixel's features in the slots holding it
    code = fast.reshape(6, slots, -1)[..., 2 + power :]
    features = pool.features(pixels).flatten(1)
    held = code.abs().sum(-1) > 0
    assert held.any(1).all()
    torch.testing.assert_close(
        code[held], features[:, None].expand_as(code)[held], rtol=1e-5, atol=1e-5
    )
    big = torch.rand(2, 3, 11, 4, 4), torch.rand(2, 3, 4, 4) > 0.2
    torch.testing.assert_close(pool.cells(*big), pool.fitted_cells(*big), rtol=0, atol=0)


def test_window_days_is_deprecated(files):
    args = lai_args(files, "pixels.csv", "--out", str(files / "windowed.csv"))
    result = runner.invoke(app, [*args, "--window-days", "10"])
    assert result.exit_code == 0, result.output
    assert "--window-days is deprecated" in result.output
    assert "10-day windows" in result.output
