"""Equation discovery (releo.discover): recovery of the simulator's planted ODEs from sparse,
noisy, irregular samples; clear errors on bad input; the ``discover`` stage on a tiny site."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch

from releo.config import Params
from releo.data.chunks import chunk_index
from releo.data.errors import DataError
from releo.data.simulate import SimulationConfig, simulate_site
from releo.data.simulate.effects import DRIVER_COLUMNS, OPTICAL_BROWNING, SAR_WETNESS
from releo.data.simulate.meteo import simulate_meteorology
from releo.data.site import open_site
from releo.discover.compare import structure_scores
from releo.discover.config import DiscoverConfig
from releo.discover.equations import PLOTTED
from releo.discover.fields import make_fields
from releo.discover.sindy import derivative_baseline, discover
from releo.discover.trajectories import Drivers, Trajectory, smooth
from releo.models import ModelConfig, build_model
from releo.stages import discover as discover_stage
from releo.stages.discover import METRICS, OUT_DIR
from releo.train.config import TrackingConfig

CFG = DiscoverConfig()


@pytest.fixture(scope="module")
def meteo() -> pd.DataFrame:
    """One year of the simulator's daily weather near Toulouse."""
    return simulate_meteorology(3, np.datetime64("2025-01-01"), np.datetime64("2025-12-31"))


@pytest.fixture(scope="module")
def drivers(meteo) -> Drivers:
    return Drivers.from_table(meteo, dict(DRIVER_COLUMNS), "meteo")


def planted_fields(
    equation, meteo, sampler, *, n_fields=10, n_heldout=3, noise=0.05, seed=0
) -> list[Trajectory]:
    """Fields integrated by the simulator's own (exact) integrator from different initial
    states, observed on ``sampler(rng)`` days with Gaussian noise of ``noise`` × the state's
    spread."""
    rng = np.random.default_rng(seed)
    inputs = {s: meteo[c].to_numpy() for s, c in DRIVER_COLUMNS.items()}
    out = []
    for f in range(n_fields):
        state = equation.integrate(inputs, initial=float(rng.uniform(0.0, 2.0)))
        days = sampler(rng)
        values = state[days] + noise * state.std() * rng.standard_normal(days.size)
        group = "heldout" if f < n_heldout else "train"
        out.append(Trajectory(f"field {f}", days, values, group))
    return out


def sentinel2_days(rng) -> np.ndarray:
    """5-day revisit minus ~35 % cloudy dates: irregular gaps of 5 to 20+ days."""
    days = np.arange(int(rng.integers(0, 5)), 365, 5)
    return days[rng.random(days.size) > 0.35]


def sentinel1_days(rng) -> np.ndarray:
    return np.arange(int(rng.integers(0, 6)), 365, 6)


def very_irregular_days(rng) -> np.ndarray:
    """Gaps drawn anywhere from 1 to 20 days."""
    days = np.cumsum(rng.integers(1, 21, size=60))
    return days[days < 365]


@pytest.mark.parametrize(
    ("equation", "sampler"),
    [(OPTICAL_BROWNING, sentinel2_days), (SAR_WETNESS, sentinel1_days)],
    ids=["optical_browning_at_S2_dates", "sar_wetness_at_S1_dates"],
)
def test_recovers_the_planted_equations_from_sparse_noisy_samples(
    equation, sampler, meteo, drivers
):
    trajectories = planted_fields(equation, meteo, sampler)
    result = discover(trajectories, drivers, equation.state, CFG, equation.name)
    planted = {t.label: t.coefficient for t in equation.terms}
    scores = structure_scores(result.selected, planted)
    assert scores["structure_f1"] == 1.0, result.equation()
    assert scores["max_coef_rel_error"] < 0.10, result.equation()
    assert result.skill["sim_r2_within_heldout"] > 0.9  # free runs on held-out fields
    inclusion = {t.label: t.inclusion for t in result.terms}
    assert all(inclusion[term] >= CFG.min_inclusion for term in planted)


def test_irregular_sampling_is_handled_where_pointwise_derivatives_fail(meteo, drivers):
    trajectories = planted_fields(SAR_WETNESS, meteo, very_irregular_days, seed=1)
    gaps = np.concatenate([np.diff(t.days) for t in trajectories])
    assert gaps.min() == 1 and gaps.max() >= 15  # really irregular
    planted = {t.label: t.coefficient for t in SAR_WETNESS.terms}
    ours = structure_scores(discover(trajectories, drivers, "r", CFG, "sar").selected, planted)
    assert ours["structure_f1"] == 1.0 and ours["max_coef_rel_error"] < 0.10
    # pysindy's non-uniform finite differences on the same samples miss the daily rain
    # pulses between observations: the textbook route does not recover the law.
    baseline = structure_scores(derivative_baseline(trajectories, drivers, "r", CFG), planted)
    assert baseline["structure_f1"] < 1.0 or baseline["max_coef_rel_error"] > 0.10


def test_smoothing_works_in_real_time_not_in_sample_index():
    days = np.array([0, 1, 2, 10, 30, 31, 60, 61, 62, 90])
    line = Trajectory("line", days, 0.5 + 0.01 * days)
    assert np.allclose(smooth(line, 10.0).values, line.values)  # local-linear in days
    assert smooth(line, 0.0) is line
    noisy = Trajectory("noisy", days, line.values + np.random.default_rng(0).normal(0, 0.05, 10))
    assert (
        np.abs(smooth(noisy, 15.0).values - line.values).mean()
        < np.abs(noisy.values - line.values).mean()
    )


def _ok(n: int = 12) -> Trajectory:
    days = np.arange(0, 5 * n, 5)
    return Trajectory("field A", days, np.sin(days / 20.0) + 2.0)


@pytest.mark.parametrize(
    ("trajectory", "message"),
    [
        (Trajectory("field A", np.array([0, 5, 9]), np.array([1.0, 2.0, 1.5])), "3 observation"),
        (
            Trajectory("field A", _ok().days, np.where(_ok().days == 20, np.nan, _ok().values)),
            "nan on 2025-01-21",
        ),
        (Trajectory("field A", _ok().days, np.full(12, 0.3)), "constant series"),
        (Trajectory("field A", _ok().days[::-1], _ok().values), "increase strictly"),
        (Trajectory("field A", _ok().days + 400, _ok().values), "outside the drivers"),
    ],
    ids=["too_few_dates", "nan", "constant", "unordered", "outside_drivers"],
)
def test_bad_trajectories_raise_a_data_error_naming_them(trajectory, message, drivers):
    good = Trajectory("field B", _ok().days, _ok().values * 1.1)
    with pytest.raises(DataError, match=message) as err:
        discover([good, trajectory], drivers, "b", CFG, "truth_s2")
    assert "truth_s2" in str(err.value) and "field A" in str(err.value)


def test_bad_drivers_raise_a_data_error_naming_column_and_date(meteo):
    broken = meteo.copy()
    broken.loc[40, "rainfall_mm"] = np.nan
    with pytest.raises(DataError, match=r"meteo.csv: P is nan on 2025-02-10"):
        Drivers.from_table(broken, dict(DRIVER_COLUMNS), "meteo.csv")
    with pytest.raises(DataError, match="missing columns"):
        Drivers.from_table(meteo.drop(columns="rainfall_mm"), dict(DRIVER_COLUMNS), "meteo.csv")
    with pytest.raises(DataError, match="consecutive days"):
        Drivers.from_table(meteo.drop(index=10), dict(DRIVER_COLUMNS), "meteo.csv")


def test_structure_scores():
    planted = {"b": -0.06, "Tplus": 0.004, "P*b": -0.03}
    exact = structure_scores({"b": -0.06, "Tplus": 0.0042, "P*b": -0.03}, planted)
    assert exact["structure_f1"] == 1.0 and exact["max_coef_rel_error"] == pytest.approx(0.05)
    wrong = structure_scores({"b": -0.06, "P": 0.01}, planted)
    assert wrong["missing_terms"] == ["P*b", "Tplus"] and wrong["extra_terms"] == ["P"]
    assert wrong["structure_f1"] == pytest.approx(0.4) and wrong["max_coef_rel_error"] == 1.0


def test_fields_are_parcels_cut_by_chunk_places():
    parcels = np.array([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 3, 3], [3, 3, 3, 3]])
    index = pd.DataFrame(
        {
            "row": [0, 0, 1, 1],
            "col": [0, 1, 0, 1],
            "y0": [0, 0, 2, 2],
            "x0": [0, 2, 0, 2],
            "size_px": 2,
            "split": ["train", "val", "test", "train"],
        }
    )
    fields = make_fields(parcels, index, parcels.shape, block_px=2)
    assert len(fields.ids) == 4  # parcel 3 spans two places: two fields
    assert sorted(fields.split.values()) == ["test", "train", "train", "val"]
    for f in fields.ids:  # every field lies inside one place
        rows, cols = np.nonzero(fields.labels == f)
        assert len({(r // 2, c // 2) for r, c in zip(rows, cols, strict=True)}) == 1


# -- the stage on a tiny simulated site --------------------------------------------------------

TINY = {
    "width_m": 300.0,
    "height_m": 300.0,
    "start_date": "2025-04-01",
    "end_date": "2025-06-29",
    "survey_points": 10,
}
SMALL_MODEL = ModelConfig(
    embedding_dim=32,
    residual_dim=4,
    pixel_width=8,
    attention_heads=2,
    conv_width=8,
    field_slots=4,
    slot_features=2,
    detail_channels=4,
    hidden_width=16,
    context_days=10,  # the encoder reads the neighbouring windows; decoded at the window's dates
    fused_prosail=False,
    hybrid_samples=2000,
    hybrid_steps=50,
)


@pytest.fixture(scope="module")
def tiny_project(tmp_path_factory) -> Path:
    """A tiny simulated site, its chunk index and an (untrained) model, as the stage finds
    them after ``train``."""
    root = tmp_path_factory.mktemp("discover")
    simulate_site(SimulationConfig(**TINY), root / "data", progress=False)
    site = open_site(root / "data")
    index = chunk_index(site.s2, site.s1, size_m=100.0, days=10)
    (root / "chunks").mkdir()
    index.to_parquet(root / "chunks" / "index.parquet")
    torch.manual_seed(0)
    (root / "models").mkdir()
    torch.save(
        {"model": build_model(SMALL_MODEL).state_dict(), "config": SMALL_MODEL.model_dump()},
        root / "models" / "model.pt",
    )
    params = {
        "data_dir": "data",
        "tracking": {"tracking_uri": f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"},
        "discover": {"decode_pixels": 100, "variance_pixels": 16, "n_models": 20},
    }
    (root / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    return root


def _stage_main(monkeypatch, gated: list):
    """``pipelines/discover.py``'s entry point (the scripts are not a package): the ``main`` of
    :mod:`releo.stages.discover`, its Great Expectations gate recorded instead of run
    (tests/test_quality.py tests the gates; here they would triple the time)."""
    path = Path(__file__).resolve().parents[1] / "pipelines" / "discover.py"
    spec = importlib.util.spec_from_file_location("discover_stage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main is discover_stage.main
    monkeypatch.setattr(
        discover_stage, "gate_training_inputs", lambda params, index: gated.append(index)
    )
    return module.main


def test_stage_runs_on_a_tiny_site_and_logs_to_mlflow(tiny_project, monkeypatch, capsys):
    monkeypatch.chdir(tiny_project)
    gated = []
    _stage_main(monkeypatch, gated)()
    assert gated == [Path("chunks/index.parquet")]  # inputs are gated before anything runs
    assert "releo discover: done" in capsys.readouterr().err

    metrics = json.loads((tiny_project / METRICS).read_text())
    for key in ("truth_structure_f1", "truth_max_coef_rel_error", "latent_structure_f1"):
        assert key in metrics
    assert metrics["truth_structure_f1"] is not None  # the truth is fitted even here
    for target in ("truth_s2", "truth_s1", "latent_raw_s2", "latent_raw_s1", "lai"):
        assert target in metrics["targets"], target
    analysis = metrics["residual_analysis"]
    assert {"s2", "s1"} <= set(analysis["disentanglement"])
    assert {"s2", "s1"} <= set(analysis["explained_variance"])
    equations = (tiny_project / OUT_DIR / "equations.md").read_text()
    assert "$$ \\frac{db}{dt}" in equations and "## truth_s1" in equations
    for name in PLOTTED:
        assert (tiny_project / OUT_DIR / "plots" / f"{name}.csv").exists(), name
    assert (tiny_project / OUT_DIR / "plots" / "truth_s2.png").exists()
    series = pd.read_parquet(tiny_project / OUT_DIR / "residual_series.parquet")
    assert {"modality", "field", "date", "residual", "lai", "P", "Tplus"} <= set(series.columns)
    assert set(series["modality"]) == {"s2", "s1"} and series["residual"].notna().all()
    latents = pd.read_parquet(tiny_project / OUT_DIR / "chunk_latents.parquet")
    assert len(latents) == len(pd.read_parquet(tiny_project / "chunks" / "index.parquet"))

    mlflow.set_tracking_uri(
        json.loads((tiny_project / "params.yaml").read_text())["tracking"]["tracking_uri"]
    )
    # the run id changes every run: with the stage's timings, not in its metrics file
    assert "mlflow_run_id" not in metrics
    timings = json.loads((tiny_project / "metrics" / "timings" / "discover.json").read_text())
    run = mlflow.get_run(timings["mlflow_run_id"])
    assert run.info.experiment_id == mlflow.get_experiment_by_name("releo-discover").experiment_id
    assert "truth_structure_f1" in run.data.metrics
    # timings change every run: in metrics/timings/ and on the run, not in DVC's metrics
    assert "seconds" not in metrics
    timings = json.loads((tiny_project / "metrics" / "timings" / "discover.json").read_text())
    assert run.data.metrics["stage_seconds"] == timings["seconds"]
    assert run.data.metrics["discover_seconds"] == timings["discover_seconds"]
    assert run.data.metrics["gates_share"] == timings["gates_share"]
    client = mlflow.MlflowClient()
    paths = {a.path for a in client.list_artifacts(run.info.run_id, "discover")}
    assert "discover/equations.md" in paths


def test_stage_reports_bad_drivers_clearly_and_keeps_outputs(tiny_project, monkeypatch, capsys):
    meteo_path = tiny_project / "data" / "meteo.csv"
    good = meteo_path.read_text()
    monkeypatch.chdir(tiny_project)
    before = (tiny_project / METRICS).read_bytes() if (tiny_project / METRICS).exists() else None
    try:
        table = pd.read_csv(meteo_path)
        table.loc[5, "temperature_excess_c"] = np.nan
        table.to_csv(meteo_path, index=False)
        with pytest.raises(SystemExit) as exit_info:
            _stage_main(monkeypatch, [])()
        assert exit_info.value.code == 1
        message = capsys.readouterr().err
        assert "meteo.csv" in message and "Tplus is nan on 2025-04-06" in message
        if before is not None:
            assert (tiny_project / METRICS).read_bytes() == before
    finally:
        meteo_path.write_text(good)


def test_truth_trajectories_read_by_blocks_of_dates_are_the_whole_site_ones(
    tiny_project, monkeypatch
):
    """The stage reads the site lazily, a few dates at a time: the planted trajectories (field
    means per date, their noise and counts) are those of the site read whole."""
    from releo.data import spill
    from releo.data.io import open_cube
    from releo.discover.targets import truth_targets
    from releo.discover.truth import planted_equations

    index = pd.read_parquet(tiny_project / "chunks" / "index.parquet")

    def targets(lazy: bool):
        site = open_site(tiny_project / "data", lazy=lazy)
        truth = open_cube(site.path("truth"), lazy=lazy)
        shape = (site.s2.sizes["y"], site.s2.sizes["x"])
        fields = make_fields(truth["parcel_id"].values, index, shape, 10)
        planted = planted_equations(site.metadata, "site.json")
        return truth_targets(site, truth, fields, planted, DiscoverConfig())

    whole = targets(lazy=False)
    monkeypatch.setattr(spill, "BLOCK_VALUES", 3 * 30 * 30)  # 3 dates per block
    blocks = targets(lazy=True)
    assert len(whole) == len(blocks) == 2
    for a, b in zip(whole, blocks, strict=True):
        assert a.counts == b.counts and len(a.trajectories) > 0
        for x, y in zip(a.trajectories, b.trajectories, strict=True):
            assert (x.name, x.group, x.meta) == (y.name, y.group, y.meta)
            np.testing.assert_array_equal(x.days, y.days)
            np.testing.assert_array_equal(x.values, y.values)


def test_params_accept_the_discover_section():
    params = Params.model_validate({"discover": {"threshold": 0.2, "library": {"degree": 3}}})
    assert params.discover.library.degree == 3
    with pytest.raises(ValueError, match="fit_splits"):
        DiscoverConfig(fit_splits=("everything",))
    with pytest.raises(ValueError):
        Params.model_validate({"discover": {"unknown_knob": 1}})
    assert TrackingConfig().experiment("discover") == "releo-discover"
