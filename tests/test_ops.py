"""Operations: DVC experiments land in the project's MLflow store, and `releo retrain` on a data
drop retrains, asks the registry and reports the metrics diff (end to end on a tiny site)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_SITE, git_commit, make_tiny_project, run
from releo.ops.retrain import (
    REGISTER_METRICS,
    RegistryDecision,
    RetrainError,
    RetrainReport,
    plot_series,
    read_decision,
    summary_markdown,
)
from releo.ops.ui import RemoteStoreError, server_command
from releo.tracking.runs import configure, data_md5, standard_tags
from releo.train.config import TrackingConfig

EXP = "s1-half"  # a physics-loss setting: the S1 likelihood at half weight, no tuning


def dvc(*args: str, cwd: Path) -> str:
    return run([sys.executable, "-m", "dvc", *args], cwd).stdout


def mlflow_runs(project: Path, filter_string: str) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory) -> Path:
    """A tiny project whose committed state is a queued DVC experiment, applied: its model is
    the registry's first champion."""
    site = {**TINY_SITE, "drop_days": 20}
    project = make_tiny_project(tmp_path_factory.mktemp("ops"), site=site)
    git_commit(project, "tiny site")
    dvc("exp", "run", "--queue", "-n", EXP, "-S", "tune.num_samples=1",
        "-S", "++loss_weights.s1=0.5", cwd=project)  # fmt: skip
    dvc("exp", "run", "--run-all", cwd=project)
    if "Failed" in dvc("queue", "status", cwd=project):  # --run-all exits 0 all the same
        pytest.fail(f"experiment {EXP} failed:\n{dvc('queue', 'logs', EXP, cwd=project)[-3000:]}")
    dvc("exp", "apply", EXP, cwd=project)
    git_commit(project, f"baseline: experiment {EXP}")
    return project


@pytest.mark.slow
def test_queued_experiment_is_in_dvc_exp_show_and_in_the_project_mlflow(baseline):
    shown = json.loads(dvc("exp", "show", "--all-commits", "--json", cwd=baseline))
    experiments = {e["name"]: e for b in shown for e in b.get("experiments") or []}
    assert EXP in experiments, shown
    params = experiments[EXP]["revs"][0]["data"]["params"]["params.yaml"]["data"]
    assert params["loss_weights"]["s1"] == 0.5 and params["tune"]["num_samples"] == 1
    # The queued run ran in a copy under .dvc/tmp/exps: its runs are in the project's store,
    # tagged with the experiment's name (the link between `dvc exp show` and the MLflow UI).
    runs = mlflow_runs(baseline, f"tags.dvc_exp_name = '{EXP}'")
    by_stage = {r.data.tags.get("stage"): r for r in runs if r.data.tags.get("stage")}
    assert {"tune", "train"} <= set(by_stage), [r.data.tags for r in runs]
    assert by_stage["tune"].data.params["default_weights.s1"] == "0.5"
    assert by_stage["train"].data.params["loss_weights.s1"] == "0.5"
    baseline_rev = run(["git", "rev-parse", "HEAD~1"], baseline).stdout.strip()
    assert {r.data.tags["dvc_exp_baseline_rev"] for r in runs} == {baseline_rev}
    assert not list((baseline / ".dvc" / "tmp" / "exps").rglob("mlflow.db"))
    # Applied and committed, the experiment is the baseline: its model was the first champion.
    first = read_decision(baseline / REGISTER_METRICS)
    assert first is not None, "dvc exp apply restored no registry decision"
    assert first.promoted and first.alias == "champion" and first.champion_before is None


@pytest.mark.slow
def test_retrain_on_a_data_drop_updates_data_dvc_retrains_and_judges_the_model(baseline):
    project = baseline
    md5_before = data_md5(project)
    first = read_decision(project / REGISTER_METRICS)
    summary = project / "summary.md"
    done = run([sys.executable, "-m", "releo.cli", "retrain", "--drop", "1",
                "--summary", str(summary)], project)  # fmt: skip

    # The drop is in data/ and data.dvc names it; the pipeline ran on it.
    md5_after = data_md5(project)
    assert md5_after != md5_before
    site = json.loads((project / "data" / "site.json").read_text())
    assert [d["drop"] for d in site["drops"]] == [1]
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    data_deps = [d for d in lock["stages"]["chunk"]["deps"] if d["path"] == "data"]
    assert data_deps[0]["md5"] == md5_after
    assert "Running stage 'chunk'" in done.stdout and "Running stage 'train'" in done.stdout
    assert "up to date" in dvc("status", cwd=project)

    # The metrics diff against the previous commit shows the longer period.
    diff = json.loads(dvc("metrics", "diff", "HEAD", "--json", cwd=project))
    windows = diff["metrics/chunks.json"]["windows"]
    assert windows["new"] > windows["old"]
    text = summary.read_text()
    assert "## releo retrain" in text and "### `dvc metrics diff HEAD`" in text
    assert f"`{md5_before}` → `{md5_after}` (data drop 1 added)" in text
    row = rf"\| metrics/chunks\.json +\| windows +\| {windows['old']} +\| {windows['new']} +\|"
    assert re.search(row, text), text
    assert "### `dvc plots diff HEAD`" in text and "| HEAD |" in text and "| workspace |" in text

    assert first is not None, "dvc exp apply restored no registry decision"
    # The registry: a new version, champion only if it beats the champion on held-out data.
    decision = read_decision(project / REGISTER_METRICS)
    assert decision.version == first.version + 1
    assert decision.champion_before == pytest.approx(first.value)
    assert decision.champion_version_before == first.version
    beats = decision.value is not None and (first.value is None or decision.value < first.value)
    assert decision.promoted == beats
    assert decision.alias == ("champion" if beats else "challenger")
    from mlflow import MlflowClient

    client = MlflowClient(f"sqlite:///{project / 'mlruns' / 'mlflow.db'}")
    champion = client.get_model_version_by_alias(decision.model_name, "champion")
    assert int(champion.version) == (decision.version if beats else first.version)
    assert decision.alias in client.get_model_version(decision.model_name, decision.version).aliases
    assert decision.sentence() in text


# --- fast unit tests of the pieces -------------------------------------------------------


def test_read_decision_reads_the_register_contract(tmp_path):
    path = tmp_path / "register.json"
    assert read_decision(path) is None
    path.write_text(json.dumps({"model_name": "releo-lai", "version": 3, "alias": "challenger",
                                "promoted": False, "metric": "lai_rmse_field",
                                "lai_rmse_field": 0.71, "champion_lai_rmse_field_before": 0.65,
                                "champion_version_before": 2}))  # fmt: skip
    decision = read_decision(path)
    assert decision == RegistryDecision("releo-lai", 3, "challenger", False, "lai_rmse_field",
                                        0.71, 0.65, 2)  # fmt: skip
    assert "does not beat the champion's 0.65 (v2)" in decision.sentence()
    path.write_text(json.dumps({"model_name": "releo-lai", "version": 1}))
    with pytest.raises(RetrainError, match="missing"):
        read_decision(path)


def test_plot_series_summarises_each_line_per_revision():
    def point(rev, epoch, value, field=None):
        p = {"rev": rev, "epoch": str(epoch), "dvc_inferred_y_value": str(value)}
        return p | ({"field": field} if field else {})

    values = [point("HEAD", 0, 3.0, "val_loss"), point("HEAD", 1, 2.0, "val_loss"),
              point("workspace", 0, 2.5, "val_loss"), point("workspace", 1, 2.7, "val_loss"),
              point("workspace", 0, 9.0, "train_loss")]  # fmt: skip
    content = {"data": {"values": values},
               "layer": [{"encoding": {"y": {"field": "dvc_inferred_y_value"}}}]}  # fmt: skip
    rows = plot_series({"data": {"Loss": [{"type": "vega", "content": content}]}})
    table = {(r.series, r.rev): (r.points, r.last, r.best) for r in rows}
    assert table == {("val_loss", "HEAD"): (2, 2.0, 2.0), ("val_loss", "workspace"): (2, 2.7, 2.5),
                     ("train_loss", "workspace"): (1, 9.0, 9.0)}  # fmt: skip


def test_summary_names_data_stages_decision_and_diffs():
    decision = RegistryDecision("releo-lai", 2, "champion", True, "lai_rmse_field", 0.6, 0.7, 1)
    report = RetrainReport(rev="HEAD", drop=1, data_md5_before="aaa.dir",
                           data_md5_after="bbb.dir", stages_run=["chunk", "train"],
                           decision=decision, metrics_diff_md="| Path | Metric |\n")  # fmt: skip
    text = summary_markdown(report)
    assert "`aaa.dir` → `bbb.dir` (data drop 1 added)" in text
    assert "`chunk`, `train`" in text
    assert "v2 → `champion`: lai_rmse_field 0.6 beats the champion's 0.7 (v1)" in text
    assert "| Path | Metric |" in text and "No plot data." in text
    nothing = summary_markdown(RetrainReport(rev=None, data_md5_before="a", data_md5_after="a"))
    assert "unchanged" in nothing and "none: everything up to date" in nothing
    assert "no new decision" in nothing and "No git revision" in nothing


def test_server_command_serves_the_project_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    command = server_command(TrackingConfig(), tmp_path, port=5123)
    assert command[:4] == [sys.executable, "-m", "mlflow", "server"]
    args = dict(zip(command[4::2], command[5::2], strict=True))
    assert args["--backend-store-uri"] == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    assert args["--default-artifact-root"] == str(tmp_path.resolve() / "mlruns" / "artifacts")
    assert args["--port"] == "5123" and args["--host"] == "127.0.0.1"
    # A queued experiment's copy serves (and logs to) the project it belongs to.
    copy = tmp_path / ".dvc" / "tmp" / "exps" / "tmpabc"
    assert server_command(TrackingConfig(), copy)[5] == args["--backend-store-uri"]
    postgres = TrackingConfig(tracking_uri="postgresql://u@db/mlflow")
    assert server_command(postgres, tmp_path)[5] == "postgresql://u@db/mlflow"
    with pytest.raises(RemoteStoreError):
        server_command(TrackingConfig(tracking_uri="http://mlflow:5000"), tmp_path)


def test_runs_made_under_dvc_exp_run_are_tagged_with_the_experiment(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert "dvc_exp_name" not in standard_tags(tmp_path, {"a": 1})
    monkeypatch.setenv("DVC_EXP_NAME", "s1-low")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "abc123")
    tags = standard_tags(tmp_path, {"a": 1})
    assert tags["dvc_exp_name"] == "s1-low" and tags["dvc_exp_baseline_rev"] == "abc123"


def test_a_tracking_server_keeps_the_artifacts_where_it_was_told(tmp_path, monkeypatch):
    import mlflow

    created = {}

    def create_experiment(name, artifact_location=None):
        created[name] = artifact_location
        return "1"

    monkeypatch.setattr(mlflow, "set_tracking_uri", lambda uri: None)
    monkeypatch.setattr(mlflow, "get_experiment_by_name", lambda name: None)
    monkeypatch.setattr(mlflow, "create_experiment", create_experiment)
    monkeypatch.setattr(mlflow, "set_experiment", lambda experiment_id: None)
    configure(TrackingConfig(tracking_uri="http://mlflow.example.org:5000"), tmp_path, "train")
    assert created["releo-train"] is None and not (tmp_path / "mlruns").exists()
    configure(TrackingConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db"), tmp_path, "tune")
    assert created["releo-tune"] == (tmp_path / "mlruns/artifacts/releo-tune").resolve().as_uri()
