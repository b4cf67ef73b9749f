"""The ``tracking`` section of ``params.yaml``: where MLflow runs go."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class TrackingConfig(BaseModel):
    """MLflow: where runs go (SQLite backend store + artifact folder) and experiment names."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tracking_uri: str | None = Field(
        None,
        description="None: $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlruns/mlflow.db",
    )
    artifact_root: Path = Field(
        Path("mlruns/artifacts"), description="artifact folder (relative to the project root)"
    )
    experiments: dict[str, str] = Field(
        default_factory=lambda: {"tune": "releo-tune", "train": "releo-train"},
        description="MLflow experiment of each stage",
    )

    def resolved_uri(self, root: Path) -> str:
        """The tracking URI, absolute: explicit > ``$MLFLOW_TRACKING_URI`` > project SQLite."""
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        return uri or f"sqlite:///{(root / 'mlruns' / 'mlflow.db').resolve()}"

    def experiment(self, stage: str) -> str:
        """The MLflow experiment of ``stage`` (``releo-<stage>`` unless named)."""
        return self.experiments.get(stage, f"releo-{stage}")
