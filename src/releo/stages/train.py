"""DVC stage ``train``: gate the site and chunk index, then train with the tuned weights.

``run_train`` trains with the weights of stage ``tune`` and writes ``models/`` (the model of
the best validated epoch and its card), ``metrics/train.json`` and the per-epoch curve
``metrics/train_curve.csv`` for ``dvc plots``; it records an MLflow run (params, provenance
tags, chunk-index datasets, per-epoch metrics, loss curves, model).
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd

from releo import tracking
from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.io import file_sha256, write_json, write_table
from releo.models.checkpoint import save_autoencoder
from releo.stage import stage
from releo.stages.tune import BEST_WEIGHTS
from releo.timings import record, timed, write_metrics
from releo.train.config import site_metric
from releo.train.inputs import gate_training_inputs
from releo.train.ray_train import TrainOutcome, fit
from releo.train.runs import announce, log_chunks, run_spec, site_has_truth, stamp
from releo.train.task import Task

MODEL_DIR = Path("models")
MODEL = MODEL_DIR / "model.pt"
MODEL_CARD = MODEL_DIR / "model.json"
TRAIN_METRICS, TRAIN_PLOT = Path("metrics/train.json"), Path("metrics/train_curve.csv")
HEADLINE = ("s2_reconstruction_rmse", "s1_reconstruction_rmse_db")
LAI = ("lai_rmse_truth", "snap_lai_rmse_truth", "lai_rmse_snap")
CURVES = ("train_loss", "val_loss", "val_lai_rmse_truth", "val_s2_reconstruction_rmse")
# Per-epoch seconds: in MLflow and metrics/timings/, not in the DVC plot (they change every run)
EPOCH_TIMINGS = ("train_time_s", "epoch_time_s")


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
    announce("train", params.train.select_metric, select, has_truth)
    train = params.train.model_copy(update={"select_metric": select})
    spec = run_spec(params, root, weights, task, train)
    name = f"train-{stamp()}"
    with tracking.stage_run(params, root, "train", run_name=name) as run:
        log_chunks(root)
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
        model_path = save_autoencoder(model, spec.model, weights, root / MODEL)
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
    write_json(card, root / MODEL_CARD)
    curve = pd.DataFrame(outcome.history).drop(columns=list(EPOCH_TIMINGS), errors="ignore")
    write_table(curve, root / TRAIN_PLOT)
    metrics["mlflow_run_id"] = run.run_id
    write_metrics(metrics, root / TRAIN_METRICS)
    return metrics


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("train"), timed("train") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        metrics = run_train(params, Path.cwd())
        if metrics["site_has_truth"]:
            lai = (
                f"val LAI RMSE {metrics['lai_rmse_truth_val']:.3f} "
                f"(SNAP {metrics['snap_lai_rmse_truth_val']:.3f})"
            )
        else:
            lai = f"no truth: val LAI RMSE vs SNAP {metrics['lai_rmse_snap_val']:.3f}"
        print(
            f"{lai}, {metrics['epochs']} epochs on {metrics['workers']} worker(s), "
            f"kept epoch {metrics['selected_epoch']} (by {metrics['select_metric']})"
        )
