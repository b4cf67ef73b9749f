"""MLflow tracking shared by the stages: where runs go, what every run is tagged with, and the
datasets, figures and models they log. MLflow is imported when a helper runs, not at import."""

from releo.tracking.runs import (
    configure,
    log_dataset,
    log_history,
    log_loss_curves,
    log_model,
    mlflow_home,
    params_hash,
    standard_tags,
)

__all__ = [
    "configure",
    "log_dataset",
    "log_history",
    "log_loss_curves",
    "log_model",
    "mlflow_home",
    "params_hash",
    "standard_tags",
]
