"""Ray Train (DDP, checkpoints, resume after a killed worker), Optuna/ASHA tuning through Ray
Tune, and their MLflow records — on a tiny regression task defined here, so the distributed
machinery is tested apart from the physics model (which `test_pipeline` runs end to end)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import replace
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.pytorch
import pandas as pd
import pytest
import ray
import torch
from ray import cloudpickle
from torch import nn
from torch.utils.data import DataLoader, Dataset

from releo.config import Params
from releo.data.chunks import SiteBatchSampler
from releo.data.io import file_sha256
from releo.models import LossWeights
from releo.stages.train import run_train
from releo.stages.tune import run_tune
from releo.timings import timed
from releo.tracking import training_run_id
from releo.train.config import TrainConfig, TuneConfig
from releo.train.ray_train import RunSpec, fit, quiet_logging, spread_subset
from releo.train.task import Task
from releo.train.tune import CooperativeASHA, StopBoard

# Ray ships the task to its workers: the functions of this module travel by value, as the
# workers cannot import the test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

N_FEATURES = 4
TRUE_COEF = torch.tensor([1.0, -2.0, 0.5, 3.0])


class Points(Dataset):
    """Noisy linear data: ``y = x · TRUE_COEF + noise``; ``truth`` is the noise-free target."""

    def __init__(self, n: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, N_FEATURES, generator=g)
        self.truth = self.x @ TRUE_COEF
        self.y = self.truth + 2.0 * torch.randn(n, generator=g)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i], "truth": self.truth[i]}


class Linear(nn.Module):
    """A linear model with the platform's loss interface (weighted terms + ``total``)."""

    def __init__(self, width: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(N_FEATURES, width), nn.Linear(width, 1))

    def loss(self, batch: dict, weights: dict) -> dict[str, torch.Tensor]:
        fit_term = (self.net(batch["x"]).squeeze(-1) - batch["y"]).pow(2).mean()
        prior = sum(p.pow(2).sum() for p in self.parameters())
        total = weights["s2"] * fit_term + weights["prior"] * prior
        return {"total": total, "s2": fit_term, "prior": prior}


def _datasets(data_dir: Path, index: Path, model: dict) -> dict[str, Dataset]:
    return {"train": Points(64, seed=1), "val": Points(32, seed=2)}


def _train_one_epoch(model, loader, optimizer, weights, *, max_batches=None, scheduler=None):
    model.train()
    sums, n = {}, 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad()
        terms = model.loss(batch, weights)
        terms["total"].backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v)
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def _evaluate(model, loader, weights) -> dict[str, float]:
    model.eval()
    errors, losses = [], []
    for batch in loader:
        losses.append(float(model.loss(batch, weights)["total"]))
        errors.append(model.net(batch["x"]).squeeze(-1) - batch["truth"])
    rmse = float(torch.cat(errors).pow(2).mean().sqrt())
    return {"loss": sum(losses) / len(losses), "lai_rmse_truth": rmse}


class KillOnce:
    """``train_one_epoch`` that logs each call and kills its worker process once, in the
    epoch ``at`` (0-based), while ``flag`` exists — after waiting long enough for Ray's
    controller (it polls every 0.5 s here) to register the previous epoch's checkpoint."""

    def __init__(self, log: Path, flag: Path, at: int):
        self.log, self.flag, self.at = log, flag, at

    def __call__(self, model, loader, optimizer, weights, **kwargs):
        calls = self.log.read_text().splitlines() if self.log.exists() else []
        with self.log.open("a") as f:
            f.write(f"{os.getpid()}\n")
        if len(calls) == self.at and self.flag.exists():
            time.sleep(2.0)
            self.flag.unlink()
            os._exit(1)  # a killed worker: no exception, no cleanup
        return _train_one_epoch(model, loader, optimizer, weights, **kwargs)


class SpoilFrom:
    """``train_one_epoch`` that, from its call ``at`` (0-based) on, trains and then shifts the
    model's output by 10: a run whose validation error jumps after epoch ``at - 1``."""

    def __init__(self, log: Path, at: int):
        self.log, self.at = log, at

    def __call__(self, model, loader, optimizer, weights, **kwargs):
        with self.log.open("a") as f:
            f.write("epoch\n")
        terms = _train_one_epoch(model, loader, optimizer, weights, **kwargs)
        if len(self.log.read_text().splitlines()) > self.at:
            with torch.no_grad():
                list(model.parameters())[-1].add_(10.0)  # the output bias
        return terms


def tiny_task(train_one_epoch=_train_one_epoch) -> Task:
    return Task(
        build_model=lambda model: Linear(model.get("width", 8)),
        loss_weights=dict,
        make_datasets=_datasets,
        collate=torch.utils.data.default_collate,
        train_one_epoch=train_one_epoch,
        evaluate=_evaluate,
    )


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    with pytest.MonkeyPatch.context() as patch:
        # Ray Train's controller collects reports every 2 s by default: 0.5 s keeps the many
        # short epochs here quick (the setting travels to the controller and workers).
        patch.setenv("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
        ray.init(num_cpus=2, include_dashboard=False, **quiet_logging())  # as the stages do
        yield
        ray.shutdown()


def spec(tmp_path: Path, task: Task | None = None, **train) -> RunSpec:
    defaults = {"epochs": 2, "batch_size": 16, "lr": 0.05, "storage_path": tmp_path / "ray"}
    return RunSpec(
        task=task or tiny_task(),
        train=TrainConfig(**{**defaults, **train}),
        model={"width": 8},
        loss_weights={"s2": 1.0, "prior": 1e-3},
        data_dir=tmp_path,
        index_path=tmp_path / "index.parquet",
    )


class SitePoints(Points):
    """Points of one site: items carry the site's number."""

    def __init__(self, n: int, seed: int, site: int):
        super().__init__(n, seed)
        self.site = site

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {**super().__getitem__(i), "site": torch.tensor(self.site)}


def _site_datasets(data_dir: Path, index: Path, model: dict) -> dict[str, Dataset]:
    return {"train": SitePoints(64, seed=1, site=0), "val": SitePoints(32, seed=2, site=0)}


def _further_site(path: Path, chunk_m: float, days: int, model: dict) -> Dataset:
    return SitePoints(24, seed=3, site=int(chunk_m))


class SiteLog:
    """``train_one_epoch`` that writes the sites of each batch to ``log``."""

    def __init__(self, log: Path):
        self.log = log

    def __call__(self, model, loader, optimizer, weights, **kwargs):
        def logged():
            for batch in loader:
                with self.log.open("a") as f:
                    f.write(" ".join(map(str, sorted(set(batch["site"].tolist())))) + "\n")
                yield batch

        return _train_one_epoch(model, logged(), optimizer, weights, **kwargs)


def test_site_batches_hold_one_site_each_and_split_over_ranks():
    sizes = [10, 7, 5]
    starts = [0, 10, 17]
    sampler = SiteBatchSampler(sizes, 4, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 3 + 2 + 2
    assert sorted(i for b in batches for i in b) == list(range(22))
    for batch in batches:  # every batch inside one site's range
        assert len({sum(i >= s for s in starts) for i in batch}) == 1
    sampler.set_epoch(1)
    assert list(sampler) != batches  # a new shuffle
    ranks = [list(SiteBatchSampler(sizes, 4, seed=1, rank=r, world=2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 3  # 7 batches: 6 shared out, the same count
    assert not {tuple(b) for b in ranks[0]} & {tuple(b) for b in ranks[1]}


def test_training_draws_whole_batches_from_each_further_site(tmp_path):
    log = tmp_path / "sites.log"
    task = replace(
        tiny_task(SiteLog(log)), make_datasets=_site_datasets, site_dataset=_further_site
    )
    run = replace(
        spec(tmp_path, task=task, epochs=2, batch_size=8),
        sites=((tmp_path / "a", 1.0), (tmp_path / "b", 2.0)),
    )
    outcome = fit(run, name="sites")
    lines = log.read_text().splitlines()
    assert len(lines) == 2 * (64 // 8 + 2 * 24 // 8)  # every batch of every site, each epoch
    assert set(lines) == {"0", "1", "2"}  # one site per batch, all three sites
    assert outcome.history[-1]["train_samples"] == 64 + 2 * 24


def test_capped_evaluation_samples_the_whole_split():
    chunks = list(range(36))  # one place through the year: winter first, winter last
    picked = list(spread_subset(chunks, 12))
    assert len(set(picked)) == 12 and picked == sorted(picked)
    gaps = [b - a for a, b in itertools.pairwise(picked)]
    assert picked[0] == 0 and picked[-1] == 35 and max(gaps) <= 4
    assert spread_subset(chunks, None) is chunks and spread_subset(chunks, 40) is chunks


@pytest.mark.parametrize(
    ("tune", "message"),
    [
        ({"metric": "lai_rmse"}, "not a validation error metric"),
        ({"metric": "lai_bias_truth"}, "not a validation error metric"),
        ({"metric": "loss_s2"}, "depends on the loss weights"),
        ({"search_space": {"s3": [0.1, 1.0]}}, "not LossWeights fields: ['s3']"),
        ({"search_space": {"s2": [1.0, 0.1]}}, "search_space.s2: need 0 < low < high"),
        ({"warm_start": [{"s2": 20.0}]}, "warm_start[0].s2: 20.0 outside search_space [0.1, 10.0]"),
        ({"warm_start": [{"synthetic": 1.0}]}, "warm_start[0].synthetic: not in search_space"),
    ],
)
def test_tune_settings_are_checked(tune, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TuneConfig(**tune)


def test_one_worker_trains_reports_and_checkpoints(tmp_path):
    outcome = fit(spec(tmp_path, epochs=3), name="one")
    assert [r["epoch"] for r in outcome.history] == [0, 1, 2]
    assert outcome.attempts == [0]
    assert all(r["train_samples"] == 64 for r in outcome.history)
    rmse = [r["val_lai_rmse_truth"] for r in outcome.history]
    assert rmse[-1] < rmse[0]  # it learns
    assert outcome.state["epoch"] == 2
    assert set(outcome.state["model"]) == {
        "net.0.weight",
        "net.0.bias",
        "net.1.weight",
        "net.1.bias",
    }
    kept = sorted(p.name for p in Path(outcome.path).glob("epoch_*"))
    assert kept == ["epoch_0001", "epoch_0002"]  # every epoch checkpointed, last two kept


def test_run_keeps_its_best_validated_epoch(tmp_path):
    task = tiny_task(SpoilFrom(tmp_path / "calls.log", at=2))
    run = spec(tmp_path, task, epochs=4, select_metric="lai_rmse_truth")
    outcome = fit(run, name="best")
    rmse = [r["val_lai_rmse_truth"] for r in outcome.history]
    assert min(rmse[2:]) > 2 * rmse[1]  # spoilt from epoch 2 on
    assert outcome.selected_epoch == 1 and outcome.state["epoch"] == 3
    assert outcome.best["metric"] == "val_lai_rmse_truth"
    assert outcome.best["value"] == rmse[1]
    # the kept weights are epoch 1's: they score what epoch 1 scored
    model = task.build_model(run.model)
    model.load_state_dict(outcome.selected_model)
    loader = DataLoader(Points(32, seed=2), batch_size=16)
    assert _evaluate(model, loader, {"s2": 1.0, "prior": 1e-3})["lai_rmse_truth"] == (
        pytest.approx(rmse[1], rel=1e-5)
    )
    # a metric the task does not report keeps the last epoch
    last = fit(
        replace(run, train=run.train.model_copy(update={"select_metric": "goal_ratio"})),
        name="last",
    )
    assert last.best is None and last.selected_epoch == 3


def test_two_workers_split_the_data(tmp_path):
    outcome = fit(spec(tmp_path, num_workers=2, cpus_per_worker=1), name="two")
    # Rank 0 sees half of the shuffled train split each epoch (DistributedSampler).
    assert [r["train_samples"] for r in outcome.history] == [32, 32]
    assert outcome.attempts == [0]


def test_killed_worker_resumes_from_last_checkpoint(tmp_path):
    log, flag = tmp_path / "calls.log", tmp_path / "kill-once"
    flag.touch()
    task = tiny_task(KillOnce(log, flag, at=2))
    outcome = fit(spec(tmp_path, task, epochs=4, max_failures=1), name="killed")
    assert not flag.exists()  # the worker was killed in epoch 2 ...
    calls = log.read_text().splitlines()
    assert len(calls) == 5 and len(set(calls)) == 2  # ... and a new process took over
    # ... from the epoch-1 checkpoint: epochs 0 and 1 ran once, epoch 2 was redone.
    assert outcome.attempts == [0, 2]
    assert [r["epoch"] for r in outcome.history] == [0, 1, 2, 3]
    assert outcome.state["epoch"] == 3


def test_worker_loop_stops_when_asked(tmp_path):
    log = tmp_path / "calls.log"
    task = tiny_task(KillOnce(log, tmp_path / "never", at=99))
    # Asked to stop once an epoch has run: the run ends cleanly with its last checkpoint.
    run = replace(spec(tmp_path, task, epochs=4), should_stop=partial(Path.exists, log))
    outcome = fit(run, name="stopped")
    assert outcome.stopped_early
    assert [r["epoch"] for r in outcome.history] == [0]
    assert outcome.state["epoch"] == 0


def test_asha_decisions_go_to_the_stop_board():
    board = StopBoard.remote()
    asha = CooperativeASHA(
        board, metric="val_obj", mode="min", time_attr="epochs_done", max_t=4, grace_period=1
    )
    good, bad = SimpleNamespace(trial_id="good"), SimpleNamespace(trial_id="bad")
    for trial in (good, bad):
        asha.on_trial_add(None, trial)
    result = {"epochs_done": 1}
    assert asha.on_trial_result(None, good, {**result, "val_obj": 1.0}) == "CONTINUE"
    # ASHA would stop the worse trial at the rung; the decision is posted, not enforced.
    assert asha.on_trial_result(None, bad, {**result, "val_obj": 5.0}) == "CONTINUE"
    assert asha.stopped == {"bad"}
    assert ray.get(board.should_stop.remote("bad")) and not ray.get(
        board.should_stop.remote("good")
    )


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
    }
    env["GIT_COMMITTER_EMAIL"] = "t@t"
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.fixture
def project(tmp_path) -> tuple[Path, Params]:
    """A project folder (git repo, data.dvc, chunk index) and tiny-budget params."""
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123abcd.dir\n  path: data\n")
    index = pd.DataFrame(
        {"chunk_id": [f"c{i}" for i in range(6)], "split": ["train"] * 4 + ["val"] * 2}
    )
    (tmp_path / "chunks").mkdir()
    index.to_parquet(tmp_path / "chunks" / "index.parquet")
    git("init", "-q", cwd=tmp_path)
    git("add", "data.dvc", cwd=tmp_path)
    git("commit", "-q", "-m", "data", cwd=tmp_path)
    params = Params(
        # validated, unused by the tiny task
        model={"residual_dim": 1, "embedding_dim": 8, "field_slots": 1, "slot_features": 1},
        train={"epochs": 2, "batch_size": 16, "lr": 0.05, "storage_path": "ray"},
        tune={
            "num_samples": 2,
            "epochs": 2,
            "metric": "lai_rmse_truth",  # what the tiny task reports
            "search_space": {"s2": [0.5, 2.0], "prior": [1e-4, 1e-1]},
            "warm_start": [{"s2": 1.5}],  # with num_samples 2: the defaults, then this
        },
        tracking={"tracking_uri": f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"},
    )
    return tmp_path, params


def test_a_one_trial_study_trains_nothing_and_passes_the_weights_on(project):
    root, params = project
    params = params.model_copy(update={"tune": params.tune.model_copy(update={"num_samples": 1})})
    task = tiny_task()
    task = replace(task, train_one_epoch=None, evaluate=None)  # any training would fail
    summary = run_tune(params, root, task=task)
    best = json.loads((root / "tune" / "best_weights.json").read_text())
    assert best == params.loss_weights.model_dump()
    metrics = json.loads((root / "metrics" / "tune.json").read_text())
    assert metrics["trials"] == 0 and metrics["objective_best"] is None
    assert metrics["metric"] == "val_lai_rmse_truth"
    assert pd.read_csv(root / "metrics" / "tune_trials.csv").empty
    mlflow.set_tracking_uri(params.tracking.resolved_uri(root))
    run = mlflow.get_run(summary["mlflow_run_id"])
    assert float(run.data.params["best_weights.s2"]) == params.loss_weights.s2


def test_tune_logs_nested_trials_and_writes_best_weights(project):
    root, params = project
    summary = run_tune(params, root, task=tiny_task())
    best = json.loads((root / "tune" / "best_weights.json").read_text())
    assert set(best) == set(LossWeights.model_fields)
    assert 0.5 <= best["s2"] <= 2.0 and best["s1"] == LossWeights().s1  # s1 was not searched
    metrics = json.loads((root / "metrics" / "tune.json").read_text())
    assert metrics["trials"] == 2 and metrics["metric"] == "val_lai_rmse_truth"
    assert metrics["objective_best"] <= metrics["objective_default"]  # default is a trial
    assert [t["default"] for t in metrics["trials_table"]].count(True) == 1
    assert [t["warm_start"] for t in metrics["trials_table"]].count(True) == 1
    curve = pd.read_csv(root / "metrics" / "tune_trials.csv")
    assert set(curve["epoch"]) == {0, 1}

    mlflow.set_tracking_uri(params.tracking.resolved_uri(root))
    runs = mlflow.search_runs(experiment_names=["releo-tune"], output_format="pandas")
    parent = runs[runs["run_id"] == summary["mlflow_run_id"]].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
    assert len(runs) == 3 and len(children) == 2
    assert (children["status"] == "FINISHED").all()
    commit = git("rev-parse", "HEAD", cwd=root)
    for _, run in runs.iterrows():
        assert run["tags.git_commit"] == commit
        assert run["tags.data_md5"] == "0123abcd.dir"
        assert len(run["tags.params_hash"]) == 12
    # the default weights, then the warm start
    assert sorted(children["params.loss_weights.s2"].astype(float)) == [LossWeights().s2, 1.5]
    assert children["metrics.val_lai_rmse_truth"].notna().all()
    assert parent["metrics.objective_best"] == pytest.approx(metrics["objective_best"])
    assert parent["metrics.objective_default"] == pytest.approx(metrics["objective_default"])
    assert float(parent["params.best_weights.s2"]) == pytest.approx(best["s2"])
    history = mlflow.MlflowClient().get_metric_history(children.iloc[0]["run_id"], "train_loss")
    assert sorted(m.step for m in history) == [0, 1]
    inputs = mlflow.get_run(parent["run_id"]).inputs.dataset_inputs
    assert {d.dataset.name for d in inputs} == {"chunks-train", "chunks-val"}


def test_train_stage_writes_model_metrics_and_mlflow_run(project):
    root, params = project
    (root / "tune").mkdir()
    (root / "tune" / "best_weights.json").write_text(json.dumps({"s2": 1.5, "prior": 1e-3}))
    with timed("train", root) as clock:
        with clock.part("gates"):
            time.sleep(0.01)  # the stage's gates: timed apart, their share reported
        metrics = run_train(params, root, task=tiny_task())
    assert metrics["epochs"] == 2 and metrics["attempts"] == [0]
    # the tiny task reports no goal_ratio (train.select_metric): the last epoch is kept
    assert metrics["selected_epoch"] == 1 and metrics["select_metric"] is None
    assert metrics["lai_rmse_truth_val"] == metrics["val"]["lai_rmse_truth"]
    saved = json.loads((root / "metrics" / "train.json").read_text())
    for key in (
        "s2_reconstruction_rmse",
        "s1_reconstruction_rmse_db",
        "snap_lai_rmse_truth_val",
    ):
        assert key in saved  # null here: the tiny task has no S2/S1/SNAP
    card = json.loads((root / "models" / "model.json").read_text())
    assert card["loss_weights"]["s2"] == 1.5
    state = torch.load(root / "models" / "model.pt", weights_only=False)
    assert set(state["model"]) == {"net.0.weight", "net.0.bias", "net.1.weight", "net.1.bias"}
    curve = pd.read_csv(root / "metrics" / "train_curve.csv")
    assert curve["epoch"].tolist() == [0, 1]
    # timings change every run: in MLflow and metrics/timings/, never in DVC's metrics or plots
    assert not {"seconds", "train_samples_per_s"} & set(saved)
    assert not {"train_time_s", "epoch_time_s"} & set(curve.columns)
    timings = json.loads((root / "metrics" / "timings" / "train.json").read_text())
    assert timings["stage"] == "train" and timings["seconds"] >= timings["fit_seconds"] > 0
    # the run id changes every run: with the timings, not in the committed metrics
    assert "mlflow_run_id" not in saved and timings["mlflow_run_id"] == metrics["mlflow_run_id"]
    assert len(timings["epoch_seconds"]) == 2 and 0 < timings["gates_share"] < 1

    mlflow.set_tracking_uri(params.tracking.resolved_uri(root))
    run = mlflow.get_run(metrics["mlflow_run_id"])
    assert run.data.params["loss_weights.s2"] == "1.5"
    assert run.data.params["loss_weights.source"] == "tune/best_weights.json"
    assert run.data.tags["data_md5"] == "0123abcd.dir"
    assert run.data.metrics["fit_seconds"] == timings["fit_seconds"]
    assert run.data.metrics["stage_seconds"] == timings["seconds"]
    assert "seconds" not in run.data.metrics
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    assert "loss_curves.png" in artifacts
    model = mlflow.pytorch.load_model(timings["mlflow_model_uri"])
    # the model's lineage is its content: the committed model card holds no run id
    assert not {"mlflow_run_id", "mlflow_model_uri"} & set(card)
    digest = file_sha256(root / "models" / "model.pt")
    assert training_run_id(params.tracking, digest) == run.info.run_id
    assert training_run_id(params.tracking, "0" * 64) is None
    assert isinstance(model, nn.Module)
    assert not (root / "ray" / "train").exists() or not any((root / "ray" / "train").iterdir())
