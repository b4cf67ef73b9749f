"""Products of the trained model on a tiny simulated site: embeddings, decoding on any grid
and date, the product files, evaluation scores, the MLflow registry and the `releo decode`
command. The model is tiny and untrained: these tests check the machinery, not accuracy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import date

import numpy as np
import pandas as pd
import pytest
import rioxarray
import torch
from typer.testing import CliRunner

from releo.config import ChunkConfig, Params
from releo.data.chunks import INDEX, ChunkDataset, chunk_index, window_only
from releo.data.errors import DataError
from releo.data.io import open_cube, write_table
from releo.data.simulate import SimulationConfig, simulate_site
from releo.data.site import open_site
from releo.models import ModelConfig, build_model
from releo.models.distributions import BoundedNormal
from releo.products.config import (
    CalibrateConfig,
    DecodeConfig,
    EmbedConfig,
    EvaluateConfig,
    ProductsConfig,
)
from releo.products.decode import (
    LaiCalibration,
    blend_logits,
    decode_distribution,
    decode_grid,
    decode_pairs,
    decode_pixels,
    pair_queries,
)
from releo.products.embed import encode_chunks, load_autoencoder
from releo.products.evaluate import nearest_valid, seam_ratio
from releo.products.grid import ChunkLayout, Grid, query_dates
from releo.products.product_gates import check_embeddings
from releo.products.scores import grouped_scores, scores
from releo.quality import QualityGateError
from releo.stages.calibrate import CALIBRATION, run_calibrate
from releo.stages.decode import DECODE_METRICS, LAI_CUBE, PRODUCTS, run_decode
from releo.stages.embed import EMBEDDINGS, run_embed
from releo.stages.evaluate import EVALUATE_METRICS, PLOTS, run_evaluate
from releo.stages.train import MODEL
from releo.tracking.config import TrackingConfig

TINY = ModelConfig(
    embedding_dim=32, residual_dim=4, pixel_width=8, attention_heads=2, conv_width=8,
    latent_grid=2, field_slots=4, slot_features=2, detail_channels=4, hidden_width=32,
    query_pixels=8, context_days=10, fused_prosail=False, hybrid_samples=2000, hybrid_steps=50,
)  # fmt: skip
SITE = SimulationConfig(
    width_m=200, height_m=200, start_date=date(2025, 5, 1), end_date=date(2025, 6, 19),
    survey_campaigns=2, survey_points=12,
)  # fmt: skip


def params_for(root) -> Params:
    return Params(
        data_dir=root / "data",
        site=SITE,
        chunks=ChunkConfig(size_m=100.0, split={"train": 0.5, "val": 0.25, "test": 0.25}),
        quality={"context_root": root / "gx"},
        model=TINY,
        tracking=TrackingConfig(tracking_uri=f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"),
        products=ProductsConfig(
            embed=EmbedConfig(refine_steps=2),  # the refinement runs, briefly
            calibrate=CalibrateConfig(min_surveys=3),
            decode=DecodeConfig(step_days=7, overview_panels=4),
            evaluate=EvaluateConfig(scatter_points=200, sample_fields=2),
        ),
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A project folder: tiny site, chunk index, an (untrained) tiny model, embeddings, its LAI
    calibration and the decoded weekly product."""
    root = tmp_path_factory.mktemp("products")
    simulate_site(SITE, root / "data", progress=False)
    site = open_site(root / "data")
    index = chunk_index(
        site.s2, site.s1, size_m=100.0, days=10, split={"train": 2, "val": 1, "test": 1}
    )
    write_table(index, root / INDEX)
    torch.manual_seed(0)
    model = build_model(TINY)
    (root / MODEL).parent.mkdir()
    torch.save(
        {"model": model.state_dict(), "config": TINY.model_dump(), "weights": {}}, root / MODEL
    )
    params = params_for(root)
    run_embed(params, root)
    run_calibrate(params, root)
    run_decode(params, root, LaiCalibration.load(root / CALIBRATION))
    return root


# ------------------------------------------------------------------------------ grids, dates


def test_layout_locates_pixel_centres_and_windows():
    layout = ChunkLayout(
        x_min=1000.0, y_max=5000.0, size_m=100.0, rows=2, cols=3,
        starts=np.array(["2025-05-01", "2025-05-11"], dtype="datetime64[D]"), days=10,
        crs="EPSG:32631",
    )  # fmt: skip
    assert layout.bounds == (1000.0, 4800.0, 1300.0, 5000.0)
    # the centre of pixel (row 3, col 7) of chunk (1, 2) on a 10 m grid
    x, y = np.array([1000.0 + 200 + 75, 999.0]), np.array([5000.0 - 100 - 35, 4900.0])
    row, col, u, v, inside = layout.locate(x, y)
    assert (row[0], col[0]) == (1, 2) and inside.tolist() == [True, False]
    np.testing.assert_allclose([u[0], v[0]], [(7 + 0.5) / 10, (3 + 0.5) / 10])
    window, covered = layout.window_of(
        pd.to_datetime(["2025-04-30", "2025-05-01", "2025-05-20", "2025-05-21"])
    )
    assert covered.tolist() == [False, True, True, False] and window[1:3].tolist() == [0, 1]


def test_query_dates_and_grids():
    weekly = query_dates(start=date(2025, 1, 1), end=date(2025, 12, 31), step_days=7)
    assert len(weekly) == 53 and (np.diff(weekly.values) == np.timedelta64(7, "D")).all()
    listed = query_dates(dates=[date(2025, 6, 2), date(2025, 5, 1), date(2025, 6, 2)])
    assert [d.date() for d in listed] == [date(2025, 5, 1), date(2025, 6, 2)]
    grid = Grid.from_bounds((0.0, 0.0, 100.0, 60.0), 20.0, "EPSG:32631")
    assert grid.shape == (3, 5) and grid.x[0] == 10.0 and grid.y[0] == 50.0
    with pytest.raises(DataError, match="no 200"):
        Grid.from_bounds((0.0, 0.0, 100.0, 60.0), 200.0, "EPSG:32631")
    with pytest.raises(ValueError, match="xmin, ymin, xmax, ymax"):
        DecodeConfig(bounds=(10.0, 0.0, 5.0, 1.0))


# ---------------------------------------------------------------------------------- embeddings


def test_embeddings_cube_has_chunk_coordinates_and_passes_its_gate(project):
    ds = open_cube(project / EMBEDDINGS)
    index = pd.read_parquet(project / INDEX)
    assert ds["embedding"].dtype == np.float16
    assert ds["embedding"].shape == (index.window.nunique(), 2, 2, TINY.embedding_dim)
    # chunk centres and window starts, in the site CRS
    site = open_site(project / "data")
    assert ds.rio.crs == site.s2.rio.crs
    np.testing.assert_allclose(ds.x.values, float(site.s2.x.min()) - 5 + np.array([50.0, 150.0]))
    np.testing.assert_allclose(ds.y.values, float(site.s2.y.max()) + 5 - np.array([50.0, 150.0]))
    first = index[index.window == 0].start.iloc[0]
    assert pd.Timestamp(ds.time.values[0]) == first
    assert (ds.time_end.values - ds.time.values == np.timedelta64(9, "D")).all()
    assert sorted(np.unique(ds.split.values)) == ["test", "train", "val"]
    # float16 equals the model's float32 embeddings to half precision
    metrics = json.loads((project / "metrics" / "embed.json").read_text())
    assert metrics["chunks"] == len(index) and metrics["quantisation_max_abs_error"] < 5e-3
    # each chunk encoded with its temporal context (the model's context_days around it), then
    # refined on its own loss
    model, _ = load_autoencoder(project / MODEL)
    row = index[(index.window == 2) & (index.row == 1) & (index.col == 0)].iloc[0]
    item = ChunkDataset(site.s2, site.s1, index.loc[[row.name]], context_days=10)[0]
    stored = ds["embedding"].values[2, 1, 0].astype(np.float32)
    terms = EmbedConfig().refine_terms
    z, alone = (
        encode_chunks(model, [it], refine_steps=2, refine_terms=terms)[0]
        for it in (item, window_only(item))
    )
    assert np.abs(stored - z).max() < 5e-3 < np.abs(stored - alone).max()
    assert check_embeddings(ds, project / EMBEDDINGS, context_root=project / "gx").success
    bad = ds.copy(deep=True)
    bad["embedding"].values[0, 1, 1, :3] = np.nan
    with pytest.raises(QualityGateError, match=r"embeddings\.zarr[\s\S]*finite_fraction"):
        check_embeddings(bad, project / EMBEDDINGS, context_root=project / "gx")


# ------------------------------------------------------------------------------------ decoding


def test_decoded_grid_is_the_model_at_pixel_centres(project):
    ds = open_cube(project / EMBEDDINGS)
    model, _ = load_autoencoder(project / MODEL)
    layout = ChunkLayout.from_embeddings(ds)
    grid = Grid.from_bounds(layout.bounds, 10.0, layout.crs)
    when = pd.DatetimeIndex([pd.Timestamp(ds.time.values[1]) + pd.Timedelta(days=3)])
    maps = decode_grid(model, ds, grid, when, blend_days=0)
    assert maps["lai"].shape == (1, 20, 20)
    # chunk (row 1, col 0), window 1: the model decoded directly at its 10 x 10 pixel centres
    z = torch.as_tensor(ds["embedding"].values[1, 1, 0].astype(np.float32))[None]
    centres = (torch.arange(10) + 0.5) / 10
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    with torch.no_grad():
        dist = model.decode(z, u[None], v[None], torch.tensor(float(when.day_of_year[0])))["lai"]
    np.testing.assert_allclose(maps["lai"].values[0, 10:, :10], dist.mean[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(
        maps["lai_std"].values[0, 10:, :10], dist.stddev[0].numpy(), atol=1e-5
    )
    lai, low, high = (maps[k].values for k in ("lai", "lai_low", "lai_high"))
    assert (low <= lai + 1e-6).all() and (lai <= high + 1e-6).all() and np.isfinite(lai).all()
    # the same points one by one (field-survey style) give the same values
    x, y = grid.points()
    pts = decode_pairs(model, ds, x[:25], y[:25], when.repeat(25), blend_days=0)
    np.testing.assert_allclose(pts["lai"], maps["lai"].values[0].ravel()[:25], atol=1e-5)


def test_dates_near_a_window_boundary_blend_the_two_windows(project):
    ds = open_cube(project / EMBEDDINGS)
    model, _ = load_autoencoder(project / MODEL)
    layout = ChunkLayout.from_embeddings(ds)
    grid = Grid.from_bounds(layout.bounds, 10.0, layout.crs)
    when = pd.DatetimeIndex([pd.Timestamp(ds.time.values[1]) + pd.Timedelta(days=3)])
    maps = decode_grid(model, ds, grid, when)  # blended over the window length by default
    # day centre 3.5 days into window 1: window 0 weighs 0.5 - 3.5 / days
    weight = torch.tensor(0.5 - 3.5 / layout.days)
    centres = (torch.arange(10) + 0.5) / 10
    v, u = torch.meshgrid(centres, centres, indexing="ij")
    doy = torch.tensor(float(when.day_of_year[0]))
    with torch.no_grad():
        own, other = (
            model.decode(
                torch.as_tensor(ds["embedding"].values[w, 1, 0].astype(np.float32))[None],
                u[None], v[None], doy,
            )["lai"]
            for w in (1, 0)
        )  # fmt: skip
    loc, scale = blend_logits(own.loc, own.scale, other.loc, other.scale, weight)
    expected = BoundedNormal(loc, scale, own.low, own.high)
    np.testing.assert_allclose(maps["lai"].values[0, 10:, :10], expected.mean[0], atol=1e-5)
    np.testing.assert_allclose(
        maps["lai_std"].values[0, 10:, :10], expected.stddev[0], atol=1e-5, rtol=1e-3
    )
    # the windows' disagreement widens the distribution
    assert (scale >= torch.minimum(own.scale, other.scale) - 1e-6).all()
    x, y = grid.points()
    pts = decode_pairs(model, ds, x[:25], y[:25], when.repeat(25))
    np.testing.assert_allclose(pts["lai"], maps["lai"].values[0].ravel()[:25], atol=1e-5)

    # Without its day-of-year input, each window alone decodes a constant: a pure staircase.
    # Blended, the daily series runs linearly between window centres: no step at boundaries.
    with torch.no_grad():
        model.decoder.dynamic_head[0].weight[:, model.decoder.n_space :] = 0.0
    days = pd.date_range(*layout.period, freq="D")
    window, _ = layout.window_of(days)
    crossing = window[1:] != window[:-1]
    with np.errstate(divide="ignore"):
        ratios = {
            blend: seam_ratio(
                decode_pixels(model, ds, x, y, days, blend_days=blend)["lai"], crossing
            )
            for blend in (None, 0)
        }
    # piecewise linear between window centres: ~1, as uneven as the segments' slopes (16 days)
    assert 0.7 < ratios[None] < 1.5 and ratios[0] > 100, ratios


def test_blend_weights_ramp_to_one_half_at_a_shared_boundary():
    layout = ChunkLayout(
        x_min=0.0, y_max=0.0, size_m=100.0, rows=1, cols=1,
        starts=np.array(["2025-05-01", "2025-05-11", "2025-06-01"], dtype="datetime64[D]"),
        days=10, crs="EPSG:32631",
    )  # fmt: skip
    dates = pd.to_datetime(
        ["2025-05-01", "2025-05-05", "2025-05-06", "2025-05-10", "2025-05-11", "2025-05-20",
         "2025-06-01", "2025-06-10", "2025-06-11"]
    )  # fmt: skip
    window, partner, weight, covered = layout.blend_of(dates, 10)
    assert covered.tolist() == [True] * 8 + [False]
    assert window[:8].tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    # the first window has no earlier one; 2025-05-20 and 2025-06-01 border a gap
    np.testing.assert_allclose(weight[:8], [0, 0, 0.05, 0.45, 0.45, 0, 0, 0])
    assert partner[[2, 3, 4]].tolist() == [1, 1, 0]
    assert (partner[weight == 0] == window[weight == 0]).all()
    np.testing.assert_allclose(layout.blend_of(dates, 4)[2][:5], [0, 0, 0, 0.375, 0.375])
    assert not layout.blend_of(dates, 0)[2].any()


def test_any_grid_and_dates_with_gaps_outside_the_chunks(project):
    ds = open_cube(project / EMBEDDINGS)
    model, _ = load_autoencoder(project / MODEL)
    layout = ChunkLayout.from_embeddings(ds)
    xmin, ymin, xmax, ymax = layout.bounds
    grid = Grid.from_bounds((xmin - 40, ymin, xmax, ymax), 20.0, layout.crs)  # 2 columns outside
    first = layout.period[0]
    days = pd.date_range(first - pd.Timedelta(days=1), first + pd.Timedelta(days=4), freq="D")
    maps = decode_grid(model, ds, grid, days, batch_queries=7)  # tiny batches: many calls
    lai = maps["lai"].values
    assert lai.shape == (6, 10, 12)
    assert np.isnan(lai[0]).all()  # before the first window
    assert np.isnan(lai[1:, :, :2]).all() and np.isfinite(lai[1:, :, 2:]).all()
    assert maps.rio.crs == ds.rio.crs and maps.rio.resolution() == (20.0, -20.0)
    # daily values change smoothly (one embedding per window, continuous in time)
    assert not np.allclose(lai[1, :, 2:], lai[4, :, 2:])


def test_decode_stage_writes_zarr_geotiffs_and_pngs(project):
    metrics = json.loads((project / DECODE_METRICS).read_text())
    cube = open_cube(project / LAI_CUBE)
    assert metrics["dates"] == cube.sizes["time"] >= 7 and metrics["valid_fraction"] == 1.0
    assert (np.diff(cube.time.values) == np.timedelta64(7, "D")).all()
    when = pd.Timestamp(cube.time.values[2]).date()
    tif = rioxarray.open_rasterio(project / PRODUCTS / "geotiff" / f"lai_{when}.tif")
    assert tif.rio.crs == cube.rio.crs and tif.shape == (2, 20, 20)
    assert tif.rio.transform() == cube.rio.transform()
    np.testing.assert_allclose(tif.values[0], cube["lai"].values[2], rtol=1e-6)
    np.testing.assert_allclose(tif.values[1], cube["lai_std"].values[2], rtol=1e-6)
    pngs = sorted((project / PRODUCTS / "quicklooks").glob("*.png"))
    assert len(pngs) == cube.sizes["time"] and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert (project / PRODUCTS / "overview.png").stat().st_size > 10_000


def test_calibrate_stage_fits_the_spread_on_validation_surveys_and_decode_applies_it(project):
    from releo.data.readers import read_field_survey
    from releo.products.evaluate import held_out_mask, survey_pixels
    from releo.stages.calibrate import CALIBRATE_METRICS

    params = params_for(project)
    metrics = json.loads((project / CALIBRATE_METRICS).read_text())
    site = open_site(project / "data")
    surveys = read_field_survey(site.path("surveys"), target_crs=site.crs)
    row, col, inside = survey_pixels(surveys, site.s2.x.values, site.s2.y.values)
    shape = (site.s2.sizes["y"], site.s2.sizes["x"])
    assert params.products.calibrate.splits == ["val"]  # places training never fitted
    val = held_out_mask(pd.read_parquet(project / INDEX), shape, ["val"])
    on_val = int(val[row[inside], col[inside]].sum())
    assert 3 <= metrics["surveys"] == on_val < len(surveys)  # the others are left out
    assert metrics["fitted"]
    assert metrics["coverage"] >= 0.9 or metrics["spread_scale"] == 20.0
    cal = LaiCalibration.load(project / CALIBRATION)
    assert cal == LaiCalibration(metrics["spread_scale"], 0.08)
    # the weekly product is the calibrated decoding, and says so
    cube = open_cube(project / LAI_CUBE)
    assert cube.attrs["calibration_spread_scale"] == cal.spread_scale
    model, _ = load_autoencoder(project / MODEL)
    ds = open_cube(project / EMBEDDINGS)
    x, y = cube.x.values[:6], np.full(6, cube.y.values[3])
    when = pd.DatetimeIndex([pd.Timestamp(cube.time.values[2])] * 6)
    raw = decode_pairs(model, ds, x, y, when)
    calibrated = decode_pairs(model, ds, x, y, when, calibration=cal)
    np.testing.assert_allclose(cube["lai_high"].values[2, 3, :6], calibrated["lai_high"], atol=1e-5)
    # the point estimate is the mean of the widened distribution, zero below the limit
    with torch.no_grad():
        widened = cal.widen(decode_distribution(model, pair_queries(ds, x, y, when)))
    np.testing.assert_allclose(calibrated["lai"], cal.censor(widened.mean).numpy(), atol=1e-5)
    assert (calibrated["lai"][widened.mean.numpy() < 0.08] == 0).all()
    wider = calibrated["lai_high"] - calibrated["lai_low"] >= raw["lai_high"] - raw["lai_low"]
    assert wider.all() == (cal.spread_scale >= 1)
    # too few surveys: the spread is left as decoded, and the metrics say why
    few = params.model_copy(
        update={"products": params.products.model_copy(
            update={"calibrate": CalibrateConfig(min_surveys=1000)})}
    )  # fmt: skip
    other = project / "few"
    (other / "metrics").mkdir(parents=True)
    for name in ("embeddings", "models", "chunks"):
        (other / name).symlink_to(project / name)
    result = run_calibrate(few, other)
    assert not result["fitted"] and "min_surveys=1000" in result["note"]
    assert LaiCalibration.load(other / CALIBRATION) == LaiCalibration(1.0, 0.08)


# -------------------------------------------------------------------------------- evaluation


def test_scores_and_matching():
    truth = np.array([1.0, 2.0, 3.0, np.nan])
    result = scores(np.array([1.5, 2.0, 2.5, 9.0]), truth, low=np.array([1.4, 0, 0, 0]),
                    high=np.array([2, 3, 2.9, 9]))  # fmt: skip
    assert result["n"] == 3
    assert result["rmse"] == pytest.approx(np.sqrt(0.5 / 3))
    assert result["bias"] == pytest.approx(0.0) and result["r2"] == pytest.approx(0.75)
    assert result["coverage"] == pytest.approx(1 / 3)
    assert np.isnan(scores(np.array([np.nan]), np.array([1.0]))["rmse"])
    per = grouped_scores(
        np.array([0, 0, 1]), {0: "wheat"}, np.array([1.0, 2, 3]), np.array([1.0, 1, 3])
    )
    assert per["wheat"]["rmse"] == pytest.approx(np.sqrt(0.5)) and per["1"]["rmse"] == 0
    dates = pd.to_datetime(["2025-05-01", "2025-05-06", "2025-05-11"])
    values = np.array([[1.0, np.nan], [np.nan, 5.0], [3.0, 6.0]])
    value, picked = nearest_valid(values, dates, pd.to_datetime(["2025-05-06", "2025-05-20"]), 5)
    assert value[0] == 1.0 and pd.Timestamp(picked[0]) == dates[0]  # tie: the earlier date
    assert np.isnan(value[1])  # nothing within 5 days


def test_evaluate_stage_scores_ours_snap_baseline_on_held_out_chunks(project):
    from releo.models.pixel import BaselineConfig
    from releo.models.pixel_train import train_pixel_inversion

    baseline, _ = train_pixel_inversion(
        project / "data", project / INDEX,
        BaselineConfig(samples=2000, steps=4, batch_size=64, log_every=2),
    )  # fmt: skip
    calibration = LaiCalibration.load(project / CALIBRATION)
    run_evaluate(params_for(project), project, baseline=baseline, calibration=calibration)
    saved = json.loads((project / EVALUATE_METRICS).read_text())
    assert saved["splits"] == ["val", "test"] and saved["held_out_pixels"] == 200
    assert saved["calibration_spread_scale"] == calibration.spread_scale
    assert all(saved[k] > 0 for k in ("seam_ratio", "seam_ratio_unblended", "seam_ratio_truth"))
    for key in ("lai_rmse_truth", "snap_lai_rmse_truth", "lai_r2_truth", "lai_coverage90_truth",
                "baseline_lai_rmse_truth", "lai_rmse_truth_clear", "lai_rmse_truth_cloudy",
                "lai_rmse_truth_at_snap", "lai_rmse_truth_product"):  # fmt: skip
        assert saved[key] is not None and saved[key] >= (-1e9 if "r2" in key else 0), key
    for key in ("lai_rmse_field", "snap_lai_rmse_field", "baseline_lai_rmse_field"):
        assert key in saved
    assert saved["lai_n_truth"] == saved["lai_n_truth_clear"] + saved["lai_n_truth_cloudy"]
    # val (where training picks its epoch) and test apart: together the whole held-out score
    n = {s: saved[f"lai_n_truth_at_snap_{s}"] for s in ("val", "test")}
    assert sum(n.values()) == saved["lai_n_truth_at_snap"] and min(n.values()) > 0
    pooled = sum(n[s] * saved[f"lai_rmse_truth_at_snap_{s}"] ** 2 for s in n) / sum(n.values())
    assert np.sqrt(pooled) == pytest.approx(saved["lai_rmse_truth_at_snap"])
    assert saved["snap_lai_rmse_truth_test"] > 0
    covered = sum(n[s] * saved[f"lai_coverage90_truth_at_snap_{s}"] for s in n) / sum(n.values())
    assert covered == pytest.approx(saved["lai_coverage90_truth_at_snap"])
    # SNAP and the per-pixel inversion only exist at clear pixel-dates; ours everywhere
    assert saved["snap_lai_n_truth"] <= saved["lai_n_truth_clear"]
    assert saved["baseline_lai_n_truth"] <= saved["lai_n_truth_clear"]
    assert set(saved["truth"]["by_land_cover"]) <= {
        "winter_wheat", "maize", "sunflower", "grassland", "broadleaf_forest", "bare_soil", "water"
    }  # fmt: skip
    assert set(saved["truth"]["by_sky"]) == {"clear", "cloudy"}
    scatter = pd.read_csv(project / PLOTS / "truth_scatter.csv")
    assert len(scatter) == 200 and {"truth", "lai", "snap", "baseline"} <= set(scatter)
    assert (project / PLOTS / "truth_scatter.png").exists()
    series = pd.read_csv(project / PLOTS / "timeseries_1.csv")
    assert {"doy", "truth", "lai", "lai_low", "lai_high"} <= set(series)


def test_a_capped_evaluation_scores_a_sample_and_keeps_the_surveys(project, tmp_path):
    """Above ``max_pixels`` held-out pixels, a seeded sample is scored at every date; the
    survey pixels stay in it, so the survey figures are the whole run's."""
    import shutil

    root = tmp_path / "project"
    shutil.copytree(project, root, ignore=shutil.ignore_patterns("mlruns", "gx"))

    def evaluate(**settings):
        cfg = params_for(root).products.evaluate.model_copy(update=settings)
        products = params_for(root).products.model_copy(update={"evaluate": cfg})
        return run_evaluate(params_for(root).model_copy(update={"products": products}), root, None)

    whole = evaluate(sample_fields=0)
    surveys = pd.read_csv(root / PLOTS / "field_scatter.csv")
    capped = evaluate(sample_fields=0, max_pixels=40)
    assert whole["scored_pixels"] == whole["held_out_pixels"] == capped["held_out_pixels"] == 200
    assert 40 <= capped["scored_pixels"] <= 40 + len(surveys) < 200
    assert capped["lai_n_truth"] < whole["lai_n_truth"]
    for key in ("lai_rmse_field", "snap_lai_rmse_field", "lai_n_field", "snap_lai_n_field"):
        assert capped[key] == whole[key], key
    pd.testing.assert_frame_equal(pd.read_csv(root / PLOTS / "field_scatter.csv"), surveys)


def test_the_scored_sample_is_seeded_and_keeps_what_it_must():
    from releo.products.evaluate import scored_pixels

    mask = np.zeros((30, 30), dtype=bool)
    mask[:20] = True
    keep = np.zeros_like(mask)
    keep[0, :5] = keep[25, 0] = True  # the last one is not held out: never scored
    assert scored_pixels(mask, 600, 0, keep) is mask  # under the cap: every pixel
    picked = scored_pixels(mask, 100, 0, keep)
    assert np.array_equal(picked, scored_pixels(mask, 100, 0, keep))
    assert not np.array_equal(picked, scored_pixels(mask, 100, 1, keep))
    assert picked[0, :5].all() and not picked[25, 0]
    assert 100 <= picked.sum() <= 105 and not (picked & ~mask).any()


def test_perfect_product_scores_zero_against_truth(project, tmp_path):
    """Scoring is matched in space and time: the truth itself, written as the product, has
    RMSE 0, R² 1 and full coverage."""
    from releo.products.evaluate import product_metrics

    truth = open_cube(project / "data" / "truth" / "truth.zarr")[["lai"]]
    cube = open_cube(project / LAI_CUBE)
    lai = truth["lai"].sel(time=cube.time.values).values
    perfect = cube.copy(data={"lai": lai, "lai_std": lai * 0 + 0.1, "lai_low": lai - 0.1,
                              "lai_high": lai + 0.1})  # fmt: skip
    mask = np.zeros((20, 20), dtype=bool)
    mask[:10] = True
    result = product_metrics(perfect, truth, mask, "coverage90")
    assert result["lai_rmse_truth_product"] == pytest.approx(0.0, abs=1e-6)
    assert result["lai_coverage90_truth_product"] == 1.0
    assert result["lai_n_truth_product"] == 200 * cube.sizes["time"]


# ---------------------------------------------------------------------------------- registry


def test_register_promotes_only_a_better_model_and_serves_the_champion(project):
    from releo.products.registry import beats
    from releo.stages.register import run_register

    params = params_for(project)
    evaluation = {"splits": ["val", "test"], "interval": 0.9, "lai_rmse_truth": 1.2}
    calibration = LaiCalibration(spread_scale=1.7, detection_limit=0.08)
    decisions = []
    for value in (1.0, 2.0, 0.5):
        result = run_register(
            params, project, {**evaluation, "lai_rmse_field": value}, project / MODEL,
            calibration,
        )  # fmt: skip
        decisions.append((result["version"], result["alias"], result["promoted"],
                          result["champion_lai_rmse_field_before"]))  # fmt: skip
    assert decisions == [(1, "champion", True, None), (2, "challenger", False, 1.0),
                         (3, "champion", True, 1.0)]  # fmt: skip
    saved = json.loads((project / "metrics" / "register.json").read_text())
    assert saved["model_name"] == "releo-lai" and saved["version"] == 3
    assert not beats(None, 1.0) and beats(None, None) and beats(2.0, 1.0, lower_is_better=False)

    # A separate process loads the champion and decodes LAI from the embeddings file.
    script = textwrap.dedent(
        """
        import sys
        import mlflow, pandas as pd
        from releo.data.io import open_cube
        from releo.products.registry import query_frame
        model = mlflow.pyfunc.load_model("models:/releo-lai@champion")
        points = pd.read_csv(sys.argv[2], parse_dates=["date"])
        frame, valid = query_frame(open_cube(sys.argv[1]), points.x, points.y, points.date)
        out = model.predict(frame)
        out.insert(0, "valid_row", valid.nonzero()[0])
        out.to_csv(sys.argv[3], index=False)
        """
    )
    cube = open_cube(project / LAI_CUBE)
    rng = np.random.default_rng(1)
    points = pd.DataFrame(
        {
            "x": rng.uniform(cube.x.min() - 5, cube.x.max() + 5, 20),
            "y": rng.uniform(cube.y.min() - 5, cube.y.max() + 5, 20),
            "date": pd.Timestamp(cube.time.values[1])
            + pd.to_timedelta(rng.integers(0, 9, 20), "D"),
        }
    )
    points.loc[0, "x"] = -1.0  # outside the site: no row
    points.to_csv(project / "points.csv", index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": params.tracking.tracking_uri}
    done = subprocess.run(
        [sys.executable, "-c", script, str(project / EMBEDDINGS), str(project / "points.csv"),
         str(project / "served.csv")],
        env=env, capture_output=True, text=True, check=False, cwd=project,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    served = pd.read_csv(project / "served.csv")
    assert served["valid_row"].tolist() == list(range(1, 20))
    model, _ = load_autoencoder(project / MODEL)
    expected = decode_pairs(
        model, open_cube(project / EMBEDDINGS), points.x, points.y, points.date,
        calibration=calibration,
    )  # fmt: skip
    for key in ("lai", "lai_std", "lai_low", "lai_high"):
        np.testing.assert_allclose(served[key], expected[key][1:], atol=1e-5)


# ----------------------------------------------------------------------------------------- CLI


def test_releo_decode_command_on_any_area_dates_and_resolution(project, monkeypatch):
    import yaml

    from releo.cli import app

    monkeypatch.chdir(project)
    (project / "params.yaml").write_text(
        yaml.safe_dump(params_for(project).model_dump(mode="json"))
    )
    ds = open_cube(project / EMBEDDINGS)
    xmin, ymin, _, ymax = ChunkLayout.from_embeddings(ds).bounds
    first = pd.Timestamp(ds.time.values[0]).date()
    bounds = f"{xmin},{ymin},{xmin + 100},{ymax}"
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["decode", "adhoc", "--bounds", bounds, "--resolution", "20", "--dates",
         f"{first},{first + pd.Timedelta(days=11)}", "--no-quicklooks"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    out = open_cube(project / "adhoc" / "lai.zarr")
    assert out["lai"].shape == (2, 10, 5) and np.isfinite(out["lai"].values).all()
    assert len(list((project / "adhoc" / "geotiff").glob("*.tif"))) == 2
    assert not (project / "adhoc" / "quicklooks").exists()
    bad = runner.invoke(app, ["decode", "bad", "--resolution", "-5"])
    assert bad.exit_code == 1 and "resolution_m" in bad.output and "-5" in bad.output
    missing = runner.invoke(app, ["decode", "bad", "--embeddings", "nowhere.zarr"])
    assert missing.exit_code == 1 and "nowhere.zarr" in missing.output


def test_parcel_split_tells_a_wrong_level_from_a_wrong_layout():
    """A per-parcel offset is all 'between' error, a map flat within each parcel misses the
    truth's own within-parcel spread, and the two parts always add up to the RMSE."""
    from releo.products.scores import parcel_split, scores

    rng = np.random.default_rng(0)
    parcel = np.repeat([1, 2, 3], 50)
    truth = np.array([1.0, 3.0, 5.0])[parcel - 1] + rng.normal(0, 0.3, parcel.size)
    offset = truth + np.array([0.5, -1.0, 0.0])[parcel - 1]
    split = parcel_split(offset, truth, parcel)
    assert split["within"] < 1e-9
    assert split["between"] == pytest.approx(np.sqrt((0.25 + 1.0) / 3))
    flat = (np.bincount(parcel, truth) / np.bincount(parcel))[parcel]
    split = parcel_split(flat, truth, parcel)
    assert split["between"] < 1e-9
    assert split["within"] == pytest.approx(split["reference_within"])
    noisy = truth + rng.normal(0, 1.0, parcel.size)
    noisy[:7] = np.nan
    split = parcel_split(noisy, truth, parcel)
    rmse = scores(noisy, truth)["rmse"]
    assert split["between"] ** 2 + split["within"] ** 2 == pytest.approx(rmse**2)
