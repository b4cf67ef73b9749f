"""MLflow "models from code" entry point of the LAI decoder (see :mod:`.registry`)."""

import mlflow

from releo.products.registry import LaiDecoderModel

mlflow.models.set_model(LaiDecoderModel())
