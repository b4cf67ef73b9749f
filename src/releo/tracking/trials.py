"""One MLflow child run per Ray Tune trial, nested under the study's parent run.

A Tune callback on the driver, talking to MLflow through an ``MlflowClient``: the driver is the
only writer (SQLite-friendly), and a trial's run is closed even when Tune stops or loses it.
"""

from __future__ import annotations

from typing import Any

from ray.tune import Callback

from releo.tracking.runs import finite_metrics

PARENT_TAG = "mlflow.parentRunId"  # what the MLflow UI nests child runs by


class TrialRuns(Callback):
    """Creates, feeds and closes the child run of each trial.

    Params: the trial's config (the sampled weights). Metrics: the numeric ``train_*`` and
    ``<split>_*`` values of each reported epoch (step = epoch). Tags: ``tags`` (provenance),
    the parent run, the trial id and, at the end, ``epochs_done`` and ``stopped_early``
    (fewer than ``epochs`` epochs: ASHA ended the trial).
    """

    def __init__(
        self,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
        tags: dict[str, str],
        epochs: int,
        metric_prefixes: tuple[str, ...] = ("train_", "val_"),
    ):
        from mlflow import MlflowClient

        self.client = MlflowClient(tracking_uri)
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = tags
        self.epochs = epochs
        self.prefixes = metric_prefixes
        self.runs: dict[str, str] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Create the trial's child run, with its config as params."""
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{len(self.runs):03d}-{trial.trial_id}",
            tags={**self.tags, PARENT_TAG: self.parent_run_id, "trial_id": trial.trial_id},
        )
        self.runs[trial.trial_id] = run.info.run_id
        for key, value in trial.config.items():
            self.client.log_param(run.info.run_id, f"loss_weights.{key}", value)

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Log the trial's finite metrics of the epoch."""
        from mlflow.entities import Metric

        run_id = self.runs[trial.trial_id]
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        stamp = int(result.get("timestamp", 0) * 1000)
        prefixed = [key for key in result if key.startswith(self.prefixes)]
        metrics = [
            Metric(key, value, stamp, step)
            for key, value in finite_metrics(result, prefixed).items()
        ]
        self.client.log_batch(run_id, metrics=metrics)

    def _end(self, trial: Any, status: str) -> None:
        run_id = self.runs[trial.trial_id]
        done = int((trial.last_result or {}).get("epochs_done", 0))
        self.client.set_tag(run_id, "epochs_done", str(done))
        self.client.set_tag(run_id, "stopped_early", str(done < self.epochs).lower())
        self.client.set_terminated(run_id, status)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the trial's run as FINISHED."""
        self._end(trial, "FINISHED")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the trial's run as FAILED."""
        self._end(trial, "FAILED")
