"""End to end: a fresh copy of the project runs `releo ensure-data` + `dvc repro` on a tiny site."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from releo.data.contracts import S2_BANDS
from releo.data.io import open_cube, write_cube

REPO = Path(__file__).resolve().parents[1]
TINY_SITE = {
    "width_m": 300.0,
    "height_m": 300.0,
    "start_date": "2025-04-01",
    "end_date": "2025-06-29",
    "survey_points": 10,
}
HEADLINE_METRICS = (
    "s2_reconstruction_rmse",
    "s1_reconstruction_rmse_db",
    "lai_rmse_vs_truth_val",
    "snap_lai_rmse_vs_truth_val",
)
pytestmark = pytest.mark.slow


def run(args: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The project's files (as git sees them) in a new git repo, with a tiny site."""
    root = tmp_path_factory.mktemp("project")
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout
    for name in listed.splitlines():
        src = REPO / name
        skip = ("data/", "chunks/", "metrics/", "tune/", "models/", "mlruns/", "ray_results/")
        if src.is_file() and not name.startswith(skip):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    (root / "data.dvc").unlink(missing_ok=True)  # the tiny site is not the default one
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["site"].update(TINY_SITE)
    params["chunks"].update(size_m=100.0)
    # Tiny budgets: 2 tuning trials of 1 epoch, then 1 training epoch, each a step or two.
    params["tune"].update(num_samples=2, epochs=1, max_batches_per_epoch=1, eval_max_batches=1)
    params["train"].update(epochs=1, max_batches_per_epoch=2, eval_max_batches=2)
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], root)
    run(
        [sys.executable, "-m", "dvc", "remote", "modify", "local", "url", str(root / "remote")],
        root,
    )
    run([sys.executable, "-m", "releo.cli", "ensure-data"], root)
    return root


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
    for name in ("tune", "train"):
        assert f"Running stage '{name}'" in first.stdout
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
