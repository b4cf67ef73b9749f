"""DVC stage ``tune``: gate the site and chunk index, then search the physics-loss weights.

``run_tune`` searches the loss weights with Ray Tune and writes ``tune/best_weights.json``,
``metrics/tune.json`` and the per-epoch trials table ``metrics/tune_trials.csv`` for
``dvc plots``; it records an MLflow run (params, provenance tags, chunk-index datasets, a child
run per trial).
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from releo import tracking
from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.io import write_json, write_table
from releo.stage import stage
from releo.timings import record, timed, write_metrics
from releo.train.config import site_metric
from releo.train.inputs import gate_training_inputs
from releo.train.runs import announce, log_chunks, run_spec, site_has_truth, stamp
from releo.train.task import Task

BEST_WEIGHTS = Path("tune/best_weights.json")
TRIAL_FIELDS = ("trial_id", "objective", "epochs", "stopped_early", "default", "warm_start")
TUNE_METRICS, TUNE_PLOT = Path("metrics/tune.json"), Path("metrics/tune_trials.csv")


def run_tune(params: Params, root: Path = Path(), task: Task | None = None) -> dict:
    """Search the loss weights (``params.tune``); write the best ones, metrics and the trials."""
    import mlflow

    from releo.tracking.trials import TrialRuns
    from releo.train.tune import search_weights

    root = Path(root).resolve()
    has_truth = site_has_truth(params, root)
    metric = site_metric(params.tune.metric, params.tune.metric_without_truth, has_truth)
    announce("tune", params.tune.metric, metric, has_truth)
    cfg = params.tune.model_copy(update={"metric": metric})
    base = run_spec(params, root, params.loss_weights.model_dump(), task)
    if cfg.num_samples == 1:
        return _no_study(params, root, f"{base.eval_split}_{metric}", has_truth, base.loss_weights)
    name = f"study-{stamp()}"
    with tracking.stage_run(params, root, "tune", run_name=name) as run:
        log_chunks(root)
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

    with tracking.stage_run(params, root, "tune", run_name=f"no-study-{stamp()}") as run:
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


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("tune"), timed("tune") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        summary = run_tune(params, Path.cwd())
        if summary["trials"]:
            print(
                f"objective {summary['metric']}: default {summary['objective_default']:.4g}, "
                f"best {summary['objective_best']:.4g} ({summary['trials']} trials)"
            )
