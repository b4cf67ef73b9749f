"""``releo ui``: the MLflow UI (an MLflow tracking server) on the project's own store."""

from __future__ import annotations

import sys
from pathlib import Path

from releo.tracking.config import TrackingConfig


class RemoteStoreError(ValueError):
    """The project tracks to a remote MLflow server: there is no local store to serve."""


def server_command(
    tracking: TrackingConfig,
    project_root: str | Path,
    host: str = "127.0.0.1",
    port: int = 5000,
    workers: int = 1,
) -> list[str]:
    """The ``mlflow server`` command line serving the store the stages log to.

    The backend store is the one ``releo.tracking.configure`` resolves (explicit
    ``tracking.tracking_uri`` > ``$MLFLOW_TRACKING_URI`` > ``sqlite:///<project>/mlruns/
    mlflow.db``), so a database on PostgreSQL works the same; new experiments created in the
    UI keep their artifacts under ``<project>/<tracking.artifact_root>``.
    """
    from releo.tracking.runs import mlflow_home

    home = mlflow_home(project_root)
    uri = tracking.resolved_uri(home)
    if uri.startswith(("http://", "https://", "databricks")):
        raise RemoteStoreError(f"runs go to the MLflow server at {uri}: open it in a browser")
    artifacts = (home / tracking.artifact_root).resolve()
    return [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--default-artifact-root", str(artifacts),
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
    ]  # fmt: skip
