"""MLflow tracking shared by the stages.

Where runs go, what every run is tagged with, and the datasets, metrics, figures and models they
log. MLflow is imported when a helper runs, not at import.
"""

from releo.tracking.config import TrackingConfig
from releo.tracking.runs import (
    MODEL_SHA256_TAG,
    StageRun,
    configure,
    finite_metrics,
    log_dataset,
    log_finite_metrics,
    log_history,
    log_loss_curves,
    log_model,
    mlflow_home,
    params_hash,
    section_params,
    stage_run,
    standard_tags,
    training_run_id,
)

__all__ = [
    "MODEL_SHA256_TAG",
    "StageRun",
    "TrackingConfig",
    "configure",
    "finite_metrics",
    "log_dataset",
    "log_finite_metrics",
    "log_history",
    "log_loss_curves",
    "log_model",
    "mlflow_home",
    "params_hash",
    "section_params",
    "stage_run",
    "standard_tags",
    "training_run_id",
]
