"""How long a stage took, kept out of DVC's metrics.

Timings change on every run, so in a DVC metrics file they would change ``dvc.lock`` and every
``dvc metrics diff``. A stage times itself with :func:`timed`; its timings go to
``metrics/timings/<stage>.json`` (git-ignored, not a DVC output) and, where the stage has an
MLflow run, to that run's metrics. Library code adds its own figures with :func:`record`
(a no-op outside a timed stage, e.g. under ``releo decode``)::

    with stage("embed"), timed("embed") as clock:
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        run_embed(params, root)  # calls record(encode_seconds=...)

The file carries the stage's ``seconds``, the seconds of each timed part, the recorded values
and ``gates_share``: the share of the stage's time spent in its quality gates.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from releo.data.io import json_safe, write_json
from releo.tracking.runs import finite_metrics

TIMINGS_DIR = Path("metrics/timings")
RUN_ID = "mlflow_run_id"
GATES = "gates"

_current: ContextVar[StageClock | None] = ContextVar("releo_stage_clock", default=None)


def _flat(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """Finite numbers of ``values`` (nested dicts as ``a.b``), the way MLflow takes them."""
    out = {f"{prefix}{key}": value for key, value in finite_metrics(values).items()}
    for key, value in values.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
    return out


class StageClock:
    """The timings of one stage: its timed parts and the values recorded while it ran."""

    def __init__(self, stage: str):
        self.stage = stage
        self.started = time.perf_counter()
        self.parts: dict[str, float] = {}
        self.values: dict[str, Any] = {}
        self.run: tuple[str, str] | None = None
        """(tracking URI, run id) of the MLflow run that was active when values were recorded."""

    @contextmanager
    def part(self, name: str) -> Iterator[None]:
        """Time a part of the stage (``gates``: its quality gates); repeated parts add up."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self.parts[name] = self.parts.get(name, 0.0) + time.perf_counter() - started

    def record(self, **values: Any) -> None:
        """Keep ``values`` (seconds, rates; dicts of them) and log them to the active MLflow run.

        That run then also receives the stage's totals when it ends.
        """
        self.values.update(values)
        # a stage that never imported MLflow has no run: don't pay for the import
        mlflow = sys.modules.get("mlflow")
        if mlflow is None or (run := mlflow.active_run()) is None:
            return
        self.run = (mlflow.get_tracking_uri(), run.info.run_id)
        if metrics := _flat(values):
            mlflow.log_metrics(metrics)

    def summary(self) -> dict[str, Any]:
        """The stage's seconds, its parts, the recorded values and the gates' share."""
        seconds = time.perf_counter() - self.started
        gates = self.parts.get(GATES, 0.0)
        return {
            "stage": self.stage,
            "seconds": round(seconds, 2),
            "gates_seconds": round(gates, 2),
            "gates_share": round(gates / seconds, 4) if seconds > 0 else None,
            "parts": {k: round(v, 2) for k, v in self.parts.items()},
            **self.values,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def finish(self, root: Path = Path()) -> dict[str, Any]:
        """Write ``metrics/timings/<stage>.json`` and log the totals to the stage's run."""
        summary = self.summary()
        path = Path(root) / TIMINGS_DIR / f"{self.stage}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary, indent=1, default=str) + "\n")
        if self.run is not None:
            _log_totals(*self.run, summary)
        return summary


def _log_totals(uri: str, run_id: str, summary: dict[str, Any]) -> None:
    """The stage's totals on its (by now finished) MLflow run."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    totals = {
        "stage_seconds": summary["seconds"],
        "gates_seconds": summary["gates_seconds"],
        "gates_share": summary["gates_share"],
        **{f"{k}_seconds": v for k, v in summary["parts"].items() if k != GATES},
    }
    metrics = [Metric(k, v, stamp, 0) for k, v in _flat(totals).items()]
    MlflowClient(uri).log_batch(run_id, metrics=metrics)


@contextmanager
def timed(stage: str, root: Path = Path()) -> Iterator[StageClock]:
    """Time ``stage``; on success write its timings (a failed stage leaves the last ones)."""
    clock = StageClock(stage)
    token = _current.set(clock)
    try:
        yield clock
    finally:
        _current.reset(token)
    clock.finish(root)


def write_metrics(metrics: Mapping[str, Any], path: str | Path) -> Path:
    """Write a stage's DVC metrics file: ``metrics`` without its MLflow run id.

    The run id changes on every run and is recorded with the stage's timings instead, so a rerun
    with the same results leaves the committed metrics as they were.
    """
    if (run_id := metrics.get(RUN_ID)) is not None:
        record(**{RUN_ID: run_id})
    return write_json(json_safe({k: v for k, v in metrics.items() if k != RUN_ID}), path)


def record(**values: Any) -> None:
    """Record timings of the running stage (see :meth:`StageClock.record`).

    Outside a timed stage (a CLI command, a test) nothing is kept.
    """
    if (clock := _current.get()) is not None:
        clock.record(**values)
