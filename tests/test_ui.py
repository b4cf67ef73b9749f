"""`releo ui` serves the MLflow UI on the project's store: seen in headless Chromium, the
experiment, the run with its metrics and the registered model with its aliases are there."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

# Debian's Chromium (.ci/run installs it), else a Chrome (GitHub's runners have one).
CHROMIUM = next(
    filter(None, map(shutil.which, ("chromium", "google-chrome", "google-chrome-stable"))), None
)
# What works on a machine without network access beyond the registries.
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip
SCREENSHOTS = Path(__file__).resolve().parents[1] / "docs"
METRICS = {"lai_rmse_truth_val": 0.6123, "s2_reconstruction_rmse": 0.0214}

pytestmark = pytest.mark.skipif(
    CHROMIUM is None,
    reason="Chromium is not installed (Debian: apt-get install chromium); .ci/run installs it",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def project(tmp_path, monkeypatch) -> dict:
    """A project folder whose MLflow store (mlruns/mlflow.db) has what the pipeline records:
    an experiment, a finished run with metrics, and a registered model whose versions hold
    the champion and challenger aliases. No training: MLflow's client writes it directly."""
    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlruns").mkdir()
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    artifacts = tmp_path / "mlruns" / "artifacts" / "releo-train"
    artifacts.mkdir(parents=True)
    experiment = client.create_experiment("releo-train", artifact_location=artifacts.as_uri())
    runs = []
    for name, scale in (("train-baseline", 1.0), ("train-drop-1", 0.9)):
        run = client.create_run(experiment, run_name=name, tags={"stage": "train"})
        client.log_param(run.info.run_id, "loss_weights.s1", 0.5)
        for step in range(3):
            for key, value in METRICS.items():
                client.log_metric(run.info.run_id, key, value * scale * (3 - step) / 3, step=step)
        client.set_terminated(run.info.run_id)
        runs.append(run)
    client.create_registered_model(
        "releo-lai", description="LAI decoder: champion while it has the lowest held-out field RMSE"
    )
    for run in runs:
        client.create_model_version(
            "releo-lai", f"{run.info.artifact_uri}/lai_decoder", run_id=run.info.run_id
        )
    client.set_registered_model_alias("releo-lai", "challenger", "1")
    client.set_registered_model_alias("releo-lai", "champion", "2")
    return {"root": tmp_path, "experiment": experiment, "run": runs[1].info.run_id}


@pytest.fixture
def server(project) -> str:
    """`releo ui` in the project folder; its URL once it answers."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "releo.cli", "ui", "--port", str(port)],
        cwd=project["root"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,  # the server and its workers: one process group to stop
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"releo ui did not start:\n{proc.communicate()[0]}")
            time.sleep(0.5)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def test_releo_ui_shows_experiments_runs_metrics_and_registered_model_aliases(
    project, server, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=90_000)  # the React app renders after its first API calls
    experiment, run_id = project["experiment"], project["run"]
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 900})
            page.set_default_timeout(90_000)

            page.goto(f"{server}/#/experiments")
            expect(page.get_by_text("releo-train").first).to_be_visible()

            # The runs of the experiment, compared on their metric charts.
            page.goto(f"{server}/#/experiments/{experiment}/runs")
            for name in ("train-baseline", "train-drop-1"):
                expect(page.get_by_text(name).first).to_be_visible()
            page.get_by_role("button", name="Model training").click()  # classic ML view
            assistant = page.get_by_role("button", name="Close")
            if assistant.count():
                assistant.first.click()
            page.locator('label:has(input[value="CHART"])').click()
            for key in METRICS:
                expect(page.get_by_text(f"train-drop-1 ({key})")).to_be_visible()
            runs_png = tmp_path / "mlflow-ui.png"
            page.screenshot(path=runs_png)

            # One run: its metrics with their last values.
            page.goto(f"{server}/#/experiments/{experiment}/runs/{run_id}")
            for key, value in METRICS.items():
                row = page.get_by_role("row").filter(has_text=key)
                expect(row.first).to_contain_text(f"{value * 0.9 / 3:.5g}"[:6])

            # The registered model: each version with its alias.
            page.goto(f"{server}/#/models/releo-lai")
            expect(page.get_by_role("row").filter(has_text="Version 2")).to_contain_text("champion")
            expect(page.get_by_role("row").filter(has_text="Version 1")).to_contain_text(
                "challenger"
            )
            model_png = tmp_path / "mlflow-registry.png"
            page.screenshot(path=model_png)
        finally:
            browser.close()
    assert runs_png.stat().st_size > 20_000 and model_png.stat().st_size > 20_000
    if os.environ.get("RELEO_UPDATE_SCREENSHOTS"):  # `make screenshots`: the README's pictures
        SCREENSHOTS.mkdir(exist_ok=True)
        for png in (runs_png, model_png):
            shutil.copyfile(png, SCREENSHOTS / png.name)
