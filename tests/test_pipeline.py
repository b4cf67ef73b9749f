"""End to end: a fresh copy of the project runs `releo ensure-data` + `dvc repro` on a tiny site."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import make_tiny_project, run
from releo.data.contracts import S2_BANDS
from releo.data.io import open_cube, write_cube

HEADLINE_METRICS = (
    "s2_reconstruction_rmse",
    "s1_reconstruction_rmse_db",
    "lai_rmse_truth_val",
    "snap_lai_rmse_truth_val",
)
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's files (as git sees them) in a new git repo, with a tiny site."""
    return make_tiny_project(tmp_path_factory.mktemp("project"), train_sites=True)


def test_repro_builds_chunks_then_skips_everything(project):
    assert (project / "data.dvc").exists()  # the simulated site is versioned
    assert any((project / "remote").rglob("*"))  # and pushed to the default remote
    first = run([sys.executable, "-m", "dvc", "repro"], project)
    index = pd.read_parquet(project / "chunks" / "index.parquet")
    assert set(index["split"]) == {"train", "val", "test"}
    assert index.groupby(["row", "col"])["split"].nunique().max() == 1
    metrics = json.loads((project / "metrics" / "chunks.json").read_text())
    assert metrics["chunks"] == len(index) == 9 * metrics["windows"]
    assert "Running stage 'chunk'" in first.stdout
    for name in ("real_site", "tune", "train"):
        assert f"Running stage '{name}'" in first.stdout
    # the real site trained on beside the tiny one: its stated incidence kept, its bytes
    # reproducible (a fresh clone's run leaves dvc.lock as committed)
    built = json.loads((project / "sites" / "belgium" / "site.json").read_text())
    assert built["s1_incidence"] == {"source": "user", "value_deg": 39.0}
    assert built["built"].startswith("1970-01-01")
    tuned = json.loads((project / "metrics" / "tune.json").read_text())
    assert tuned["trials"] == 2 and tuned["objective_best"] <= tuned["objective_default"]
    assert set(json.loads((project / "tune" / "best_weights.json").read_text())) >= {"s2", "s1"}
    trained = json.loads((project / "metrics" / "train.json").read_text())
    for key in HEADLINE_METRICS:
        assert trained[key] is not None and trained[key] >= 0, key
    assert (project / "models" / "model.pt").exists()
    assert (project / "mlruns" / "mlflow.db").exists()
    assert not (project / "ray_results" / "train").exists() or not any(
        (project / "ray_results" / "train").iterdir()
    )
    second = run([sys.executable, "-m", "dvc", "repro"], project)
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout


def test_failed_gate_stops_the_stage_and_keeps_outputs(project):
    run([sys.executable, "-m", "dvc", "repro"], project)
    index_before = (project / "chunks" / "index.parquet").read_bytes()
    cube_path = project / "data" / "s2_l2a.zarr"
    good = open_cube(cube_path)
    try:
        write_cube(good.assign({b: good[b] * 10000 for b in S2_BANDS}), cube_path)
        failed = run([sys.executable, "-m", "dvc", "repro"], project, check=False)
        assert failed.returncode != 0
        message = failed.stdout + failed.stderr
        assert "s2_l2a.zarr" in message and "B02" in message
        assert "expect_column" in message  # the failing expectation is named
        assert (project / "chunks" / "index.parquet").read_bytes() == index_before
        assert (project / "gx" / "uncommitted" / "data_docs").is_dir()
    finally:
        write_cube(good, cube_path)
