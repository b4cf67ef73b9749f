"""Stage timings: out of DVC's metrics, into metrics/timings/<stage>.json and the stage's run."""

from __future__ import annotations

import json
import time

import mlflow
import pytest

from releo.timings import TIMINGS_DIR, record, timed


def test_a_stage_writes_its_timings_and_the_gates_share(tmp_path):
    record(ignored_seconds=1.0)  # outside a timed stage (a CLI command): nothing kept
    with timed("embed", tmp_path) as clock:
        with clock.part("gates"):
            time.sleep(0.02)
        time.sleep(0.02)
        record(encode_seconds=0.5, gate_seconds={"s2": 0.01})
    saved = json.loads((tmp_path / TIMINGS_DIR / "embed.json").read_text())
    assert saved["stage"] == "embed" and saved["seconds"] >= 0.04
    assert saved["parts"]["gates"] == saved["gates_seconds"] >= 0.02
    assert 0.2 < saved["gates_share"] < 0.9
    assert saved["encode_seconds"] == 0.5 and saved["gate_seconds"] == {"s2": 0.01}
    assert "ignored_seconds" not in saved


def test_a_failed_stage_keeps_the_last_timings(tmp_path):
    with timed("decode", tmp_path):
        pass
    before = (tmp_path / TIMINGS_DIR / "decode.json").read_text()
    with pytest.raises(RuntimeError), timed("decode", tmp_path):
        record(decode_seconds=1.0)
        raise RuntimeError("gate failed")
    assert (tmp_path / TIMINGS_DIR / "decode.json").read_text() == before


def test_timings_go_to_the_stage_run(tmp_path):
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("timings", artifact_location=tmp_path.as_uri())
    with timed("discover", tmp_path) as clock:
        with clock.part("gates"):
            pass
        with mlflow.start_run(experiment_id=experiment) as run:
            record(discover_seconds=2.5, gate_seconds={"s2": 0.25})
    metrics = mlflow.get_run(run.info.run_id).data.metrics
    assert metrics["discover_seconds"] == 2.5 and metrics["gate_seconds.s2"] == 0.25
    saved = json.loads((tmp_path / TIMINGS_DIR / "discover.json").read_text())
    assert metrics["stage_seconds"] == saved["seconds"]
    assert metrics["gates_share"] == saved["gates_share"]
