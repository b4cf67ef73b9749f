"""Operations around the pipeline: retraining and the MLflow UI.

Retraining on a data drop (``releo retrain``), and the MLflow UI on the project's store
(``releo ui``).
"""

from releo.ops.retrain import (
    RegistryDecision,
    RetrainError,
    RetrainReport,
    read_decision,
    retrain,
    summary_markdown,
)
from releo.ops.ui import server_command

__all__ = [
    "RegistryDecision",
    "RetrainError",
    "RetrainReport",
    "read_decision",
    "retrain",
    "server_command",
    "summary_markdown",
]
