"""The ``tune`` and ``train`` stages as library calls: Ray runs, MLflow records, DVC outputs.

``run_tune`` searches the physics-loss weights and writes ``tune/best_weights.json``;
``run_train`` trains with them and writes ``models/`` (the model of the best validated epoch
and its card). Both
write ``metrics/<stage>.json`` and per-epoch CSV tables for ``dvc plots``, and record an MLflow
run (params, provenance tags, chunk-index datasets, per-epoch metrics, loss curves, model).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from releo import tracking
from releo.config import Params
from releo.data.chunks import INDEX
from releo.data.io import file_sha256, write_json, write_table
from releo.data.site import SITE_FILES
from releo.models.checkpoint import save_autoencoder
from releo.timings import record, write_metrics
from releo.train.config import TrainConfig, site_metric
from releo.train.ray_train import RunSpec, TrainOutcome, fit
from releo.train.task import Task, physics_task

BEST_WEIGHTS = Path("tune/best_weights.json")
TRIAL_FIELDS = ("trial_id", "objective", "epochs", "stopped_early", "default", "warm_start")
MODEL_DIR = Path("models")
TUNE_METRICS, TUNE_PLOT = Path("metrics/tune.json"), Path("metrics/tune_trials.csv")
TRAIN_METRICS, TRAIN_PLOT = Path("metrics/train.json"), Path("metrics/train_curve.csv")
HEADLINE = ("s2_reconstruction_rmse", "s1_reconstruction_rmse_db")
LAI = ("lai_rmse_truth", "snap_lai_rmse_truth", "lai_rmse_snap")
CURVES = ("train_loss", "val_loss", "val_lai_rmse_truth", "val_s2_reconstruction_rmse")
# Per-epoch seconds: in MLflow and metrics/timings/, not in the DVC plot (they change every run)
EPOCH_TIMINGS = ("train_time_s", "epoch_time_s")


def _spec(
    params: Params, root: Path, weights: dict, task: Task | None, train: TrainConfig | None = None
) -> RunSpec:
    return RunSpec(
        task=task or physics_task(),
        train=train or params.train,
        model=params.model.model_dump(),
        loss_weights=weights,
        data_dir=(root / params.data_dir).resolve(),
        index_path=(root / INDEX).resolve(),
        sites=tuple(((root / s.path).resolve(), s.chunk_m) for s in params.train.sites),
        chunk_days=params.chunks.days,
    )


def _log_chunks(root: Path) -> None:
    """The train and val chunk index as MLflow dataset inputs of the active run."""
    index = pd.read_parquet(root / INDEX)
    source = str((root / INDEX).resolve())
    for split, context in (("train", "training"), ("val", "validation")):
        part = index[index["split"] == split].reset_index(drop=True)
        tracking.log_dataset(part, f"chunks-{split}", context, source=source)


def _stamp() -> str:
    return time.strftime("%Y%m%d-%H%M%S")


def site_has_truth(params: Params, root: Path) -> bool | None:
    """Whether the site of ``params.data_dir`` carries the simulator's truth.

    As ``Site.has_truth``, without opening the cubes; None where no site is there (a task that
    brings its own data).
    """
    data = root / params.data_dir
    if not (data / SITE_FILES["s2"]).exists():
        return None
    return (data / SITE_FILES["truth"]).exists()


def _announce(stage: str, configured: str | None, used: str | None, has_truth: bool | None) -> None:
    """Say which metric ranks the runs (it is also in the stage's metrics and MLflow)."""
    site = {True: "site with truth", False: "site without truth", None: "no site"}[has_truth]
    why = f", as {configured} needs the simulator's truth" if used != configured else ""
    print(f"{stage}: ranking by {used} ({site}{why})")


def run_tune(params: Params, root: Path = Path(), task: Task | None = None) -> dict:
    """Search the loss weights (``params.tune``); write the best ones, metrics and the trials."""
    import mlflow

    from releo.tracking.trials import TrialRuns
    from releo.train.tune import search_weights

    root = Path(root).resolve()
    has_truth = site_has_truth(params, root)
    metric = site_metric(params.tune.metric, params.tune.metric_without_truth, has_truth)
    _announce("tune", params.tune.metric, metric, has_truth)
    cfg = params.tune.model_copy(update={"metric": metric})
    base = _spec(params, root, params.loss_weights.model_dump(), task)
    if cfg.num_samples == 1:
        return _no_study(params, root, f"{base.eval_split}_{metric}", has_truth, base.loss_weights)
    name = f"study-{_stamp()}"
    with tracking.stage_run(params, root, "tune", run_name=name) as run:
        _log_chunks(root)
        mlflow.log_params(
            {
                **tracking.section_params("tune", cfg.model_dump(exclude={"search_space"})),
                **{f"tune.search_space.{k}": list(v) for k, v in cfg.search_space.items()},
                "train.num_workers": params.train.num_workers,
                "train.lr": params.train.lr,
                **tracking.section_params("default_weights", base.loss_weights),
                "tune.metric_configured": params.tune.metric,
                "site_has_truth": has_truth,
            }
        )
        trial_runs = TrialRuns(
            mlflow.get_tracking_uri(), run.experiment_id, run.run_id, run.tags, epochs=cfg.epochs
        )
        storage = root / params.train.storage_path / "tune"
        started = time.perf_counter()
        outcome = search_weights(
            base,
            cfg,
            storage_path=storage,
            name=name,
            callbacks=[trial_runs],
            # no board of ours: an actor made here would start Ray with its defaults (workers'
            # logs on the driver) before search_weights starts it quietly; it makes its own
            progress=True,
        )
        record(search_seconds=round(time.perf_counter() - started, 2))
        best, default = outcome.best, outcome.default
        final = {
            "objective_best": best["objective"],
            "objective_default": default["objective"] if default else math.nan,
            "objective_improvement": outcome.improvement,
            "trials": len(outcome.trials),
            "trials_stopped_early": sum(t["stopped_early"] for t in outcome.trials),
        }
        tracking.log_finite_metrics(final)
        mlflow.log_params(tracking.section_params("best_weights", outcome.best_weights))
        mlflow.log_dict(outcome.best_weights, "best_weights.json")
        mlflow.set_tag("best_trial_id", best["trial_id"])
    shutil.rmtree(storage / name, ignore_errors=True)  # everything worth keeping is logged

    write_json(outcome.best_weights, root / BEST_WEIGHTS)
    rows = [
        # "objective" whatever the metric (dvc.yaml plots it); the metric's own column names it
        {
            "trial": t["trial_id"],
            "epoch": e,
            "objective": v,
            outcome.metric: v,
            "default": t["default"],
        }
        for t in outcome.trials
        for e, v in enumerate(t["history"])
    ]
    write_table(pd.DataFrame(rows), root / TUNE_PLOT)
    summary = {
        "metric": outcome.metric,
        "metric_configured": f"val_{params.tune.metric}",
        "site_has_truth": has_truth,
        **final,
        "best_weights": outcome.best_weights,
        "best_trial": best["trial_id"],
        "trials_table": [{k: t[k] for k in TRIAL_FIELDS} for t in outcome.trials],
        "mlflow_run_id": run.run_id,
    }
    write_metrics(summary, root / TUNE_METRICS)
    return summary


def _no_study(
    params: Params, root: Path, metric: str, has_truth: bool | None, weights: dict
) -> dict:
    """The tune stage for ``tune.num_samples`` 1: no study is run.

    A study of one trial ranks nothing; the configured ``loss_weights`` are passed on (and logged)
    at no cost.
    """
    import mlflow

    with tracking.stage_run(params, root, "tune", run_name=f"no-study-{_stamp()}") as run:
        mlflow.log_params(
            {
                "tune.num_samples": 1,
                **tracking.section_params("default_weights", weights),
                **tracking.section_params("best_weights", weights),
                "site_has_truth": has_truth,
            }
        )
        mlflow.set_tag("study", "none: tune.num_samples is 1")
    write_json(weights, root / BEST_WEIGHTS)
    write_table(pd.DataFrame(columns=["trial", "epoch", "objective", metric, "default"]),
                root / TUNE_PLOT)  # fmt: skip
    summary: dict[str, Any] = {
        "metric": metric,
        "metric_configured": f"val_{params.tune.metric}",
        "site_has_truth": has_truth,
        "objective_best": None,
        "objective_default": None,
        "objective_improvement": None,
        "trials": 0,
        "trials_stopped_early": 0,
        "best_weights": weights,
        "best_trial": None,
        "trials_table": [],
        "mlflow_run_id": run.run_id,
    }
    write_metrics(summary, root / TUNE_METRICS)
    print("tune: no study (tune.num_samples is 1): the configured loss_weights are trained")
    return summary


def _validation(record: dict) -> dict[str, float]:
    return {k.removeprefix("val_"): v for k, v in record.items() if k.startswith("val_")}


def _train_timings(outcome: TrainOutcome, params: Params) -> dict:
    """The run's seconds, its training throughput and the seconds of each epoch."""
    samples = sum(r["train_samples"] for r in outcome.history) * params.train.num_workers
    train_s = sum(r["train_time_s"] for r in outcome.history)
    return {
        "fit_seconds": round(outcome.seconds, 2),
        "train_samples_per_s": round(samples / train_s, 3) if train_s else math.nan,
        "epoch_seconds": [round(r["epoch_time_s"], 2) for r in outcome.history],
    }


def _train_metrics(outcome: TrainOutcome, params: Params) -> dict:
    """Headline metrics of the kept (selected) epoch, with the last epoch's for comparison."""
    last = outcome.history[-1]
    val = _validation(next(r for r in outcome.history if r["epoch"] == outcome.selected_epoch))
    return {
        **{k: val.get(k, math.nan) for k in HEADLINE},
        **{f"{k}_val": val.get(k, math.nan) for k in LAI},
        "train_loss": last.get("train_loss", math.nan),
        "epochs": len(outcome.history),
        "selected_epoch": outcome.selected_epoch,
        "select_metric": outcome.best["metric"] if outcome.best else None,
        "attempts": outcome.attempts,
        "workers": params.train.num_workers,
        "val": val,
        "val_last_epoch": _validation(last),
    }


def run_train(
    params: Params,
    root: Path = Path(),
    weights_path: Path | None = BEST_WEIGHTS,
    task: Task | None = None,
) -> dict:
    """Train with the tuned weights and write the model, metrics and per-epoch curve.

    The weights come from ``weights_path`` (``params.loss_weights`` without one); the model is
    written to ``models/`` (``model.pt`` + ``model.json``).
    """
    import mlflow

    root = Path(root).resolve()
    source = root / weights_path if weights_path is not None else None
    if source is not None and source.exists():
        weights = {**params.loss_weights.model_dump(), **json.loads(source.read_text())}
    else:
        weights, source = params.loss_weights.model_dump(), None
    has_truth = site_has_truth(params, root)
    select = site_metric(
        params.train.select_metric, params.train.select_metric_without_truth, has_truth
    )
    _announce("train", params.train.select_metric, select, has_truth)
    train = params.train.model_copy(update={"select_metric": select})
    spec = _spec(params, root, weights, task, train)
    name = f"train-{_stamp()}"
    with tracking.stage_run(params, root, "train", run_name=name) as run:
        _log_chunks(root)
        mlflow.log_params(
            {
                **tracking.section_params("train", params.train.model_dump(mode="json")),
                **tracking.section_params("model", params.model.model_dump()),
                **tracking.section_params("loss_weights", weights),
                "loss_weights.source": str(source.relative_to(root)) if source else "params",
                "train.select_metric_configured": params.train.select_metric,
                "site_has_truth": has_truth,
            }
        )
        storage = root / params.train.storage_path / "train"
        outcome = fit(spec, name=name, storage_path=storage, progress="train")
        metrics = _train_metrics(outcome, params)
        record(**_train_timings(outcome, params))
        metrics["select_metric_configured"] = params.train.select_metric
        metrics["site_has_truth"] = has_truth
        tracking.log_history(outcome.history)
        tracking.log_loss_curves(outcome.history, CURVES)
        tracking.log_finite_metrics({k: v for k, v in metrics.items() if k != "epochs"})
        model = spec.task.build_model(spec.model)
        model.load_state_dict(outcome.selected_model)
        mlflow.set_tag("selected_epoch", outcome.selected_epoch)
        record(mlflow_model_uri=tracking.log_model(model))
        model_path = save_autoencoder(model, spec.model, weights, root / MODEL_DIR / "model.pt")
        # the lineage from the file's content: the DVC-tracked model stays the same bytes when
        # a rerun trains the same weights (a run id in it would change every time)
        mlflow.set_tag(tracking.MODEL_SHA256_TAG, file_sha256(model_path))
    shutil.rmtree(storage / name, ignore_errors=True)

    card = {
        "model_config": spec.model,
        "loss_weights": weights,
        "epochs": len(outcome.history),
        "selected_epoch": outcome.selected_epoch,
        "select_metric": metrics["select_metric"],
    }
    write_json(card, root / MODEL_DIR / "model.json")
    curve = pd.DataFrame(outcome.history).drop(columns=list(EPOCH_TIMINGS), errors="ignore")
    write_table(curve, root / TRAIN_PLOT)
    metrics["mlflow_run_id"] = run.run_id
    write_metrics(metrics, root / TRAIN_METRICS)
    return metrics
