"""MLflow helpers: configure the store, tag runs with their provenance, log inputs and outputs."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

if TYPE_CHECKING:
    from pydantic import BaseModel
    from torch import nn

    from releo.config import Params
    from releo.tracking.config import TrackingConfig

DVC_EXP_TMP = (".dvc", "tmp", "exps")
# `dvc exp run` (in the workspace or queued) sets these in every stage's environment: as tags,
# they link the experiment of `dvc exp show` to its MLflow runs (`tags.dvc_exp_name = '...'`).
DVC_EXP_TAGS = {"dvc_exp_name": "DVC_EXP_NAME", "dvc_exp_baseline_rev": "DVC_EXP_BASELINE_REV"}
# The train stage's run carries the SHA-256 of the model file it saved: the model's lineage.
MODEL_SHA256_TAG = "model_sha256"


def mlflow_home(project_root: str | Path) -> Path:
    """The project whose ``mlruns/`` records this run.

    ``dvc exp run --queue``/``--temp`` runs the pipeline in a copy under
    ``<project>/.dvc/tmp/exps/...`` that is deleted afterwards: its runs belong to the project.
    """
    root = Path(project_root).resolve()
    parts = root.parts
    for i in range(len(parts) - len(DVC_EXP_TMP) + 1):
        if parts[i : i + len(DVC_EXP_TMP)] == DVC_EXP_TMP:
            return Path(*parts[:i])
    return root


def configure(tracking: TrackingConfig, project_root: str | Path, stage: str) -> str:
    """Point MLflow at the project's store and select the stage's experiment; returns its id.

    The default store is ``sqlite:///<project>/mlruns/mlflow.db`` (absolute, so queued
    experiments log to the project) with artifacts in ``<project>/<artifact_root>/<experiment>``.
    """
    import mlflow

    home = mlflow_home(project_root)
    uri = tracking.resolved_uri(home)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = tracking.experiment(stage)
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = None  # a tracking server keeps the artifacts where it was told to
        if not uri.startswith(("http://", "https://")):
            path = (home / tracking.artifact_root / name).resolve()
            path.mkdir(parents=True, exist_ok=True)
            location = path.as_uri()
        experiment_id = mlflow.create_experiment(name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@dataclass(frozen=True)
class StageRun:
    """The MLflow run a stage records into."""

    run_id: str
    experiment_id: str
    tags: dict[str, str]
    """Its provenance (:func:`standard_tags`), which child runs carry too."""


@contextmanager
def stage_run(
    params: Params,
    project_root: str | Path,
    stage: str,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
) -> Iterator[StageRun]:
    """Configure MLflow for ``stage`` (:func:`configure`) and open its run.

    The run is tagged with its provenance, ``stage`` and ``tags``; its name defaults to
    ``<stage>-<YYYYmmdd-HHMMSS>``. Closed (FAILED on an exception) when the block ends.
    """
    import mlflow

    experiment_id = configure(params.tracking, project_root, stage)
    provenance = standard_tags(project_root, params)
    name = run_name or f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}"
    all_tags = {**provenance, "stage": stage, **(tags or {})}
    with mlflow.start_run(run_name=name, tags=all_tags) as run:
        yield StageRun(run.info.run_id, experiment_id, provenance)


def _git(root: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def params_hash(params: BaseModel | Mapping[str, Any]) -> str:
    """Short SHA-256 of the parameters as canonical JSON: equal params, equal hash."""
    data = params.model_dump(mode="json") if hasattr(params, "model_dump") else dict(params)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def data_md5(project_root: str | Path) -> str:
    """The md5 of ``data/`` recorded in ``data.dvc`` ('untracked' without one)."""
    path = Path(project_root) / "data.dvc"
    try:
        outs = yaml.safe_load(path.read_text()).get("outs") or []
    except (OSError, yaml.YAMLError, AttributeError):
        return "untracked"
    return str(outs[0].get("md5", "untracked")) if outs else "untracked"


def standard_tags(project_root: str | Path, params: BaseModel | Mapping[str, Any]) -> dict:
    """Provenance tags of a run.

    Git commit (and whether the tree was dirty), data hash, params hash, and the DVC experiment it
    belongs to (under ``dvc exp run``).
    """
    root = Path(project_root)
    commit = _git(root, "rev-parse", "HEAD") or "unknown"
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    tags = {
        "mlflow.source.git.commit": commit,  # MLflow's own tag: shown in the UI
        "git_commit": commit,
        "git_dirty": "unknown" if status is None else str(bool(status)).lower(),
        "data_md5": data_md5(root),
        "params_hash": params_hash(params),
    }
    tags.update({tag: os.environ[var] for tag, var in DVC_EXP_TAGS.items() if os.environ.get(var)})
    return tags


def log_dataset(index: pd.DataFrame, name: str, context: str, source: str | None = None) -> None:
    """Log a table (e.g. the chunk index of a split) as an MLflow dataset input of the run."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas  # mlflow.data sets it at run time

    if source is None:  # from_pandas's annotation leaves out None, its default
        dataset = from_pandas(index, name=name)
    else:
        dataset = from_pandas(index, source=source, name=name)
    mlflow.log_input(dataset, context=context)


def finite_metrics(
    values: Mapping[str, Any], keys: Iterable[str] | None = None
) -> dict[str, float]:
    """The finite numbers of ``values`` (of ``keys`` only, if given) as floats.

    MLflow rejects NaN and has no use for flags: booleans, None and text are left out.
    """
    keys = values.keys() if keys is None else keys
    out = {}
    for key in keys:
        value = values.get(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


def log_finite_metrics(values: Mapping[str, Any], **kwargs: Any) -> dict[str, float]:
    """Log the finite numbers of ``values`` to the active run; returns what was logged."""
    import mlflow

    metrics = finite_metrics(values)
    mlflow.log_metrics(metrics, **kwargs)
    return metrics


def section_params(section: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """A params section as MLflow params named ``<section>.<key>`` (as in ``params.yaml``)."""
    return {f"{section}.{key}": value for key, value in values.items()}


def log_history(history: Sequence[Mapping[str, Any]], keys: Iterable[str] | None = None) -> None:
    """Log one record per epoch (``epoch`` is the step) to the active run."""
    import mlflow

    for record in history:
        metrics = finite_metrics(record, keys)
        metrics.pop("epoch", None)
        mlflow.log_metrics(metrics, step=int(record["epoch"]))


def log_loss_curves(
    history: Sequence[Mapping[str, Any]], keys: Sequence[str], artifact: str = "loss_curves.png"
) -> None:
    """Plot ``keys`` against the epoch (log scale when all positive) as a run artifact."""
    import matplotlib

    matplotlib.use("Agg")  # headless: stages run in CI and on servers
    import matplotlib.pyplot as plt
    import mlflow

    frame = pd.DataFrame(list(history)).set_index("epoch")
    present = [k for k in keys if k in frame and frame[k].notna().any()]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key in present:
        ax.plot(frame.index, frame[key], marker="o", label=key)
    if present and (frame[present] > 0).all().all():
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    mlflow.log_figure(fig, artifact)
    plt.close(fig)


def training_run_id(tracking: TrackingConfig, model_sha256: str) -> str | None:
    """The newest run of the train stage that saved the model file of SHA-256 ``model_sha256``.

    The train stage tags its run with the file's digest (:data:`MODEL_SHA256_TAG`), so the
    DVC-tracked model needs no run id of its own (which would change on every run). None when
    no such run is in the configured store.
    """
    import mlflow

    runs = mlflow.search_runs(
        experiment_names=[tracking.experiment("train")],
        filter_string=f"tags.{MODEL_SHA256_TAG} = '{model_sha256}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
        output_format="list",
    )
    return runs[0].info.run_id if runs else None


def log_model(model: nn.Module, name: str = "model", **kwargs: Any) -> str:
    """Log ``model`` as an MLflow PyTorch model; returns its model URI.

    Pickle serialisation: the default torch.export path needs tensor inputs, and a chunk
    batch is a dict of tensors and lists.
    """
    import mlflow.pytorch

    info = mlflow.pytorch.log_model(model, name=name, serialization_format="pickle", **kwargs)
    return info.model_uri
