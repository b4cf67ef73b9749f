"""The pipeline on a site without the simulator's truth (as real sites are): the truth-free
validation metrics, the metric each stage falls back to, and `dvc repro` end to end on a tiny
simulated site stripped of its truth (and of its field surveys and meteo)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from pydantic import ValidationError
from torch.utils.data import DataLoader

from conftest import make_tiny_project, run, strip_to_real_site
from releo.config import Params
from releo.data.chunks import collate_chunks
from releo.data.errors import DataError
from releo.data.site import open_site
from releo.discover.config import DiscoverConfig
from releo.discover.equations import missing_drivers
from releo.models import LossWeights, ModelConfig, build_model
from releo.models.synthetic import S1_ENL
from releo.products.config import RegisterConfig
from releo.products.registry import decision_metric
from releo.train.config import TrainConfig, TuneConfig, site_metric
from releo.train.loop import evaluate, make_datasets
from releo.train.metrics import S1_SPECKLE_DB, TRUTH_FREE_METRICS, truth_free_ratio

TRUTH_METRICS = (
    "lai_rmse_truth",
    "snap_lai_rmse_truth",
    "embedding_lai_to_goal",
    "lai_rmse_to_snap",
)
SMALL = ModelConfig(  # as tests/test_models.py's: detail channels give the embedding-only path
    embedding_dim=32, residual_dim=4, pixel_width=8, attention_heads=2, conv_width=8,
    latent_grid=2, field_slots=4, slot_features=2, detail_channels=4, hidden_width=32,
    query_pixels=8, fused_prosail=False, hybrid_samples=2000, hybrid_steps=50,
)  # fmt: skip


# --------------------------------------------------------------------------- metric choices


def test_a_truth_metric_falls_back_only_on_a_site_without_truth():
    assert site_metric("goal_ratio", "truth_free_ratio", True) == "goal_ratio"
    assert site_metric("goal_ratio", "truth_free_ratio", False) == "truth_free_ratio"
    # a truth-free metric stays; no site (a task with its own data) keeps the configured one
    assert site_metric("s2_reconstruction_rmse", "truth_free_ratio", False) == (
        "s2_reconstruction_rmse"
    )
    assert site_metric("lai_rmse_truth", "truth_free_ratio", None) == "lai_rmse_truth"
    params = Params()
    assert params.train.select_metric_without_truth == "truth_free_ratio"
    assert params.tune.metric_without_truth == "truth_free_ratio"
    for bad in ("goal_ratio", "lai_rmse_truth", "embedding_lai_to_goal"):
        with pytest.raises(ValidationError, match="needs the simulator's truth"):
            TrainConfig(select_metric_without_truth=bad)
        with pytest.raises(ValidationError, match="needs the simulator's truth"):
            TuneConfig(metric_without_truth=bad)
    assert not any("_truth" in m or m.endswith("_to_goal") for m in TRUTH_FREE_METRICS)


def test_truth_free_ratio_is_the_worst_of_its_goals():
    # S2 RMSE over 2x the L2A noise, S1 RMSE over 1.25x the speckle, LAI vs SNAP over 1
    assert truth_free_ratio(3.0, 1.0, 0.5) == pytest.approx(1.5)
    assert truth_free_ratio(1.0, 2.5, 0.5) == pytest.approx(2.0)
    assert truth_free_ratio(1.0, 1.0, 1.7) == pytest.approx(1.7)
    assert truth_free_ratio(1.0, 1.0) == pytest.approx(0.8)  # no reference product
    assert math.isnan(truth_free_ratio(math.nan, math.nan))
    # the speckle of unit-mean gamma with S1_ENL looks, in dB, as the simulator draws it
    draws = 10 * np.log10(np.random.default_rng(0).gamma(S1_ENL, 1 / S1_ENL, 200_000))
    assert draws.std() == pytest.approx(S1_SPECKLE_DB, rel=0.01)


def test_registry_falls_back_to_a_metric_the_site_has():
    cfg = RegisterConfig()
    assert cfg.metric == "lai_rmse_field" and cfg.fallback_metrics == ["lai_rmse_snap"]
    both = {"lai_rmse_field": 0.9, "lai_rmse_snap": 0.5}
    assert decision_metric(cfg, both) == ("lai_rmse_field", 0.9)
    no_surveys = {"lai_rmse_field": None, "lai_rmse_snap": 0.5}
    assert decision_metric(cfg, no_surveys) == ("lai_rmse_snap", 0.5)
    assert decision_metric(cfg, {"lai_rmse_field": None, "lai_rmse_snap": None}) == (
        "lai_rmse_field",
        None,
    )
    with pytest.raises(DataError, match="rerun the evaluate stage"):
        decision_metric(cfg, {"lai_rmse_truth": 0.5})


def test_discover_names_what_its_drivers_lack(tmp_path):
    cfg = DiscoverConfig()
    path = tmp_path / "meteo.csv"
    assert "absent" in missing_drivers(None, cfg, path)
    table = pd.DataFrame({"date": ["2025-01-01"], "rainfall_mm": [1.0], "temperature_c": [9.0]})
    reason = missing_drivers(table, cfg, path)
    assert "no column(s) ['temperature_excess_c']" in reason
    assert missing_drivers(table.assign(temperature_excess_c=4.0), cfg, path) is None


# ------------------------------------------------------------------ validation without truth


@pytest.fixture(scope="module")
def site(small_site):
    return small_site


def test_validation_reports_truth_free_metrics_that_truth_does_not_change(site):
    root, index = site
    model = build_model(SMALL)
    scores = {}
    for with_truth in (True, False):
        val = make_datasets(root, index, with_truth=with_truth)["val"]
        loader = DataLoader(val, batch_size=2, collate_fn=collate_chunks)
        scores[with_truth] = evaluate(model.eval(), loader, LossWeights())
    blind = scores[False]
    for name in TRUTH_METRICS:
        assert math.isfinite(scores[True][name]) and math.isnan(blind[name]), name
    for name in TRUTH_FREE_METRICS:
        assert math.isfinite(blind[name]), name
        assert blind[name] == pytest.approx(scores[True][name]), name
    expected = max(
        blind["s2_fit_to_noise"] / 2,
        blind["s1_reconstruction_rmse_db"] / S1_SPECKLE_DB / 1.25,
        max(blind["lai_rmse_snap"], blind["lai_rmse_snap_embedding_only"]),
    )
    assert blind["truth_free_ratio"] == pytest.approx(expected)


# ------------------------------------------------------------------------------ end to end


def _metrics(project: Path, stage: str) -> dict:
    return json.loads((project / "metrics" / f"{stage}.json").read_text())


@pytest.fixture(scope="module")
def real_project(tmp_path_factory) -> Path:
    """A tiny project whose site has no truth and a real site's site.json (a study of two
    trials, ranked without truth)."""
    root = make_tiny_project(tmp_path_factory.mktemp("real"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["tune"].update(num_samples=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    strip_to_real_site(root)
    return root


@pytest.mark.slow
def test_repro_runs_every_stage_on_a_site_without_truth(real_project):
    project = real_project
    assert not open_site(project / "data").has_truth
    assert "config" not in json.loads((project / "data" / "site.json").read_text())
    done = run([sys.executable, "-m", "dvc", "repro"], project)
    for stage in yaml.safe_load((project / "dvc.yaml").read_text())["stages"]:
        assert f"Running stage '{stage}'" in done.stdout, stage
    # every stage that reads the site says what it held (decode reads only the embeddings)
    for stage in ("chunks", "tune", "train", "baseline", "embed", "calibrate", "evaluate",
                  "register", "discover"):  # fmt: skip
        assert _metrics(project, stage)["site_has_truth"] is False, stage

    tune, train = _metrics(project, "tune"), _metrics(project, "train")
    assert tune["metric"] == "val_truth_free_ratio"
    assert tune["metric_configured"] == "val_goal_ratio"
    assert math.isfinite(tune["objective_best"])
    assert train["select_metric"] == "val_truth_free_ratio"
    assert train["select_metric_configured"] == "goal_ratio"
    assert train["lai_rmse_truth_val"] is None and train["lai_rmse_snap_val"] > 0
    assert "ranking by truth_free_ratio" in done.stdout
    assert "lai_rmse_truth" not in _metrics(project, "baseline")

    evaluation = _metrics(project, "evaluate")
    assert evaluation["references"] == {"truth": False, "snap": True, "field_surveys": True}
    assert evaluation["absent"] == ["truth"]
    assert evaluation["lai_rmse_truth"] is None and "truth" not in evaluation
    assert evaluation["lai_rmse_snap"] > 0 and evaluation["baseline_lai_rmse_snap"] > 0
    assert "lai_rmse_field" in evaluation
    plots = evaluation["plots"]
    assert "snap_scatter.csv" in plots and "truth_scatter.csv" not in plots
    trials = pd.read_csv(project / "metrics" / "tune_trials.csv")
    assert {"objective", tune["metric"]} <= set(trials.columns)
    register = _metrics(project, "register")
    expected = "lai_rmse_field" if evaluation["lai_rmse_field"] is not None else "lai_rmse_snap"
    assert register["metric"] == expected and register[expected] == evaluation[expected]
    assert register["site_has_truth"] is False and register["alias"] == "champion"

    discover = _metrics(project, "discover")
    assert discover["skipped"] is None and discover["truth_structure_f1"] is None
    assert "no simulator truth: planted-equation checks skipped" in discover["notes"]
    assert {"latent_raw_s2", "lai"} <= set(discover["targets"])


@pytest.mark.slow
def test_repro_without_surveys_and_meteo_falls_back_and_skips(real_project):
    """The same site less its surveys and meteo. Only the stages that read them run again
    (``-s``: tune, train, baseline and embed read neither, and would double the test's time);
    the chunk stage's gates run on the site as it now is."""
    project = real_project
    if not (project / "models" / "model.pt").exists():  # run alone: the first repro is needed
        run([sys.executable, "-m", "dvc", "repro"], project)
    strip_to_real_site(project, surveys=False, meteo=False)
    stages = ("chunk", "calibrate", "decode", "evaluate", "register", "discover")
    done = run([sys.executable, "-m", "dvc", "repro", "-s", *stages], project)
    for stage in stages:  # decode reruns only if the calibration changed (DVC's own call)
        assert stage == "decode" or f"Running stage '{stage}'" in done.stdout, stage
    calibrate = _metrics(project, "calibrate")
    assert calibrate["fitted"] is False and calibrate["spread_scale"] == 1.0
    assert "absent" in calibrate["note"] and calibrate["site_has_surveys"] is False
    evaluation = _metrics(project, "evaluate")
    assert evaluation["absent"] == ["truth", "field_surveys"]
    assert evaluation["lai_rmse_field"] is None and evaluation["lai_rmse_snap"] > 0

    register = _metrics(project, "register")
    assert register["metric"] == "lai_rmse_snap" and register["metric_fallback"] is True
    assert register["metric_configured"] == "lai_rmse_field"
    assert register["lai_rmse_snap"] == evaluation["lai_rmse_snap"]
    assert "lai_rmse_snap" in register["decision"]

    discover = _metrics(project, "discover")
    assert "meteo.csv: absent" in discover["skipped"]
    assert discover["latent_sim_r2"] is None and discover["site_has_truth"] is False
    assert "Skipped" in (project / "discover" / "equations.md").read_text()
    for name in ("truth_s2", "lai"):
        assert (project / "discover" / "plots" / f"{name}.csv").exists()


def test_old_metric_names_still_select_with_a_warning():
    with pytest.warns(DeprecationWarning, match="now named 'lai_rmse_truth_at_snap'"):
        cfg = TrainConfig(select_metric="lai_rmse_vs_truth_at_snap_pixels")
    assert cfg.select_metric == "lai_rmse_truth_at_snap"
    with pytest.warns(DeprecationWarning, match="now named 'lai_rmse_snap'"):
        assert TuneConfig(metric_without_truth="lai_rmse_vs_snap").metric_without_truth == (
            "lai_rmse_snap"
        )
