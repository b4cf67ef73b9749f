"""One progress bar per stage on the driver: epoch, loss and the last validation metrics.

The bars are fed from the reports of the runs (``ray.train.report``), never from the workers'
output (which Ray keeps in its session logs):

- ``train``: Ray Train calls its callbacks in the controller actor, not in the driver, so
  :class:`ReportProgress` posts each report to a :class:`ProgressBoard` actor that the driver
  reads while ``trainer.fit()`` runs (:func:`follow_run`).
- ``tune``: Tune calls its callbacks in the driver, so :class:`TuneProgress` updates the bar
  directly from each trial's result.
"""

from __future__ import annotations

import math
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ray.train import UserCallback
from ray.tune import Callback, Stopper
from tqdm import tqdm

POLL_S = 1.0
"""How often the driver reads the board (an epoch takes seconds to minutes)."""
SHOWN_VAL = ("loss", "lai_rmse_truth")
"""Validation metrics shown beside the selection/objective metric, when reported."""


def _number(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, int | float) and math.isfinite(value) else "n/a"


class EpochBar:
    """A tqdm bar counting epochs, with the last loss and validation metrics as its postfix."""

    def __init__(
        self, desc: str, total: int, metrics: Sequence[str] = (), split: str = "val"
    ) -> None:
        self.split = split
        names = [m.removeprefix(f"{split}_") for m in metrics]
        self.metrics = list(dict.fromkeys([*names, *SHOWN_VAL]))
        self.last_val: dict[str, str] = {}
        # stderr: the stages print their results on stdout
        self.bar = tqdm(total=total, desc=desc, unit="epoch", file=sys.stderr, dynamic_ncols=True)

    def show(self, record: dict[str, Any], done: int, **extra: str) -> None:
        """Move the bar to ``done`` epochs and show ``record``'s loss and validation metrics.

        While the current epoch has no validation metrics, the last validated epoch's are shown.
        """
        val = {
            f"{self.split}_{m}": _number(record[f"{self.split}_{m}"])
            for m in self.metrics
            if f"{self.split}_{m}" in record
        }
        if val:
            self.last_val = val
        self.bar.set_postfix(
            {**extra, "epoch": record.get("epoch", "?"), "loss": _number(record.get("train_loss"))}
            | self.last_val,
            refresh=False,
        )
        self.bar.update(max(0, min(done, self.bar.total) - self.bar.n))
        self.bar.refresh()

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()


class ProgressBoard:
    """The reports of a run: posted by :class:`ReportProgress`, taken by the driver.

    A Ray actor of no CPU (:func:`follow_run` starts it).
    """

    def __init__(self) -> None:
        self._records: list[dict[str, Any]] = []

    def post(self, record: dict[str, Any]) -> None:
        """Add a report."""
        self._records.append(record)

    def take(self) -> list[dict[str, Any]]:
        """The reports posted since the last call."""
        records, self._records = self._records, []
        return records


class ReportProgress(UserCallback):
    """Ray Train callback (it runs in the controller): posts rank 0's report of each epoch."""

    def __init__(self, board: Any):
        self.board = board

    def after_report(self, run_context: Any, metrics: list[dict], checkpoint: Any) -> None:
        """Post rank 0's report."""
        if metrics:
            self.board.post.remote(dict(metrics[0]))  # rank 0 evaluates: its report has val_*


@contextmanager
def follow_run(
    desc: str, total: int, metrics: Sequence[str] = (), split: str = "val"
) -> Iterator[ReportProgress]:
    """A bar for one Ray Train run: yields the callback to give the trainer.

    A driver thread moves the bar as the reports arrive, until the run ends.
    """
    import ray

    # Any: Ray types an actor handle's methods (``.remote``) only when declared with
    # @ray.method, and ray.remote(**options) as returning the class itself.
    board: Any = ray.remote(num_cpus=0)(ProgressBoard).remote()
    bar = EpochBar(desc, total, metrics, split)
    done = threading.Event()

    def drain() -> None:
        for record in ray.get(board.take.remote()):
            bar.show(record, int(record.get("epochs_done", record.get("epoch", -1) + 1)))

    def poll() -> None:
        while not done.wait(POLL_S):
            drain()

    thread = threading.Thread(target=poll, name=f"{desc}-progress", daemon=True)
    thread.start()
    try:
        yield ReportProgress(board)
    finally:
        done.set()
        thread.join()
        try:
            drain()  # the last reports
        finally:
            bar.close()
            ray.kill(board)


class TuneProgress(Callback):
    """Tune callback (it runs in the driver): one bar over all trials' epochs.

    A trial that ASHA ends early skips its remaining epochs.
    """

    def __init__(self, trials: int, epochs: int, metric: str, split: str = "val"):
        self.trials, self.epochs, self.metric, self.split = trials, epochs, metric, split
        self._bar: EpochBar | None = None
        self.done: dict[str, int] = {}
        self.order: dict[str, int] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks with the experiment state: a bar holds the terminal
        return {**self.__dict__, "_bar": None}

    @property
    def bar(self) -> EpochBar:
        """The study's bar, made on first use."""
        if self._bar is None:
            self._bar = EpochBar("tune", self.trials * self.epochs, [self.metric], self.split)
        return self._bar

    def setup(
        self,
        stop: Stopper | None = None,
        num_samples: int | None = None,
        total_num_samples: int | None = None,
        **info: Any,
    ) -> None:
        """Show the bar when the study starts."""
        self.bar.bar.refresh()  # the bar from the study's start, not its first result

    def _total_done(self) -> int:
        return sum(self.done.values())

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        """Advance the bar by the trial's epoch."""
        number = self.order.setdefault(trial.trial_id, len(self.order) + 1)
        self.done[trial.trial_id] = int(result.get("epochs_done", 0))
        self.bar.show(result, self._total_done(), trial=f"{number}/{self.trials}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Count the trial's remaining epochs as done."""
        self.done[trial.trial_id] = self.epochs  # stopped early: its epochs will not run
        self.bar.bar.update(max(0, self._total_done() - self.bar.bar.n))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """As :meth:`on_trial_complete`."""
        self.on_trial_complete(iteration, trials, trial)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()
