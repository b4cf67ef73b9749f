"""The LAI decoder in MLflow's model registry: a pyfunc model, champion/challenger aliases.

The pyfunc model (models from code: :mod:`.pyfunc_model`) takes one row per query: the
chunk's ``embedding`` (float array), the chunk-relative position ``x_rel`` (east) and
``y_rel`` (south) in [0, 1) and the day of year ``doy``; it returns ``lai`` (mean),
``lai_std`` and the central-interval bounds ``lai_low``, ``lai_high`` (param ``interval``,
default 0.9). :func:`query_frame` builds those rows from an embeddings cube and map
coordinates and dates. The model ships the weights and the releo code that decodes them,
so ``mlflow.pyfunc.load_model("models:/releo-lai@champion")`` works in any process with
torch, numpy, pandas, pydantic and xarray.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import mlflow
import numpy as np
import pandas as pd
import torch
import xarray as xr
from mlflow.pyfunc import PythonModel

from releo.data.errors import DataError
from releo.models.checkpoint import model_from_payload
from releo.products.decode import (
    LAI_VARIABLES,
    LaiCalibration,
    Queries,
    decode_queries,
    pair_queries,
)

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion
    from mlflow.models.model import ModelInfo

ARTIFACT = "lai_decoder"
QUERY_COLUMNS = ("embedding", "x_rel", "y_rel", "doy")


class LaiDecoderModel(PythonModel):
    """LAI from chunk embeddings alone at chunk-relative positions and days of year."""

    def load_context(self, context) -> None:
        """Load the decoder weights and its calibration."""
        payload = torch.load(context.artifacts["model"], map_location="cpu", weights_only=True)
        self.model = model_from_payload(payload).eval()
        config = context.model_config or {}
        self.interval = float(config.get("interval", 0.9))
        self.calibration = LaiCalibration(
            float(config.get("spread_scale", 1.0)), float(config.get("detection_limit", 0.0))
        )

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None):
        """LAI statistics of each query row."""
        interval = float((params or {}).get("interval", self.interval))
        n = len(model_input)
        z = np.stack([np.asarray(e, dtype=np.float32) for e in model_input["embedding"]])
        weight = np.zeros(n, np.float32)
        if "partner_weight" in model_input and "partner_embedding" in model_input:
            weight = model_input["partner_weight"].fillna(0.0).to_numpy(np.float32)
            partners = zip(model_input["partner_embedding"], weight, strict=True)
            other = [
                np.asarray(e, dtype=np.float32) if w > 0 else z[i]
                for i, (e, w) in enumerate(partners)
            ]
            z = np.concatenate([z, np.stack(other)]) if n else z
        table, rows = np.unique(z, axis=0, return_inverse=True)
        rows = rows.ravel()
        queries = Queries(
            table, rows[:n],
            model_input["x_rel"].to_numpy(np.float32),
            model_input["y_rel"].to_numpy(np.float32),
            model_input["doy"].to_numpy(np.float32),
            rows[n:] if len(rows) > n else rows[:n], weight, np.ones(n, bool),
        )  # fmt: skip
        out = decode_queries(self.model, queries, interval=interval, calibration=self.calibration)
        return pd.DataFrame({k: out[k].astype(np.float64) for k in LAI_VARIABLES})


def signature():
    """Input: embedding + query position/day; output: LAI statistics; param: interval."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    inputs = Schema(
        [
            ColSpec(Array("double"), "embedding"),
            ColSpec("double", "x_rel"),
            ColSpec("double", "y_rel"),
            ColSpec("double", "doy"),
            ColSpec(Array("double"), "partner_embedding", required=False),
            ColSpec("double", "partner_weight", required=False),
        ]
    )
    outputs = Schema([ColSpec("double", k) for k in LAI_VARIABLES])
    params = ParamSchema([ParamSpec("interval", "double", 0.9)])
    return ModelSignature(inputs=inputs, outputs=outputs, params=params)


def query_frame(
    embeddings: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    dates: pd.DatetimeIndex | np.ndarray,
    *,
    blend_days: float | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Model input rows for point-dates, and the mask of the point-dates a chunk covers.

    Points are map ``x``, ``y`` in the embeddings' CRS, one date each; the rows are those of
    the covered point-dates. Near a window boundary a row also carries the neighbouring
    window's embedding and its weight (``blend_days``:
    :func:`releo.products.decode.pair_queries`).
    """
    q = pair_queries(embeddings, x, y, dates, blend_days=blend_days)
    frame = pd.DataFrame(
        {
            "embedding": list(q.table[q.owner].astype(np.float64)),
            "x_rel": q.u.astype(np.float64),
            "y_rel": q.v.astype(np.float64),
            "doy": q.doy.astype(np.float64),
            "partner_embedding": list(q.table[q.partner].astype(np.float64)),
            "partner_weight": q.weight.astype(np.float64),
        }
    )
    return frame, q.valid


def beats(new: float | None, current: float | None, lower_is_better: bool = True) -> bool:
    """Whether a challenger's metric ``new`` beats the champion's ``current``.

    ``current`` None: no champion, which any model beats; a missing/NaN challenger value
    beats no champion.
    """
    if current is None:
        return True
    if new is None or not math.isfinite(new):
        return False
    if not math.isfinite(current):
        return True
    return new < current if lower_is_better else new > current


def _number(value) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out


def champion_metric(
    client, name: str, alias: str, metric: str
) -> tuple[ModelVersion | None, float | None]:
    """The version holding ``alias`` (None if none) and its ``metric``.

    The metric is the version's tag, else its run's metric (NaN when it has neither).
    """
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None, None
    value = _number(version.tags.get(metric))
    if value is None and version.run_id:
        value = _number(client.get_run(version.run_id).data.metrics.get(metric))
    return version, (math.nan if value is None else value)


def _code_copy(tmp: Path) -> Path:
    """A copy of the releo package without caches, shipped with the model."""
    import releo

    target = tmp / "releo"
    shutil.copytree(
        Path(releo.__file__).parent, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
    )
    return target


def _requirements() -> list[str]:
    import pydantic

    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"numpy=={np.__version__}",
        f"pandas=={pd.__version__}",
        f"xarray=={xr.__version__}",
        f"pydantic=={pydantic.__version__}",
    ]


def log_decoder(
    model_path: Path, embedding_dim: int, interval: float, calibration: LaiCalibration
) -> ModelInfo:
    """Log the decoder (with its LAI calibration) as a pyfunc model in the active run.

    Returns:
        MLflow's ModelInfo.
    """
    rng = np.random.default_rng(0)
    example = pd.DataFrame(
        {
            "embedding": list(rng.normal(size=(2, embedding_dim))),
            "x_rel": [0.25, 0.75],
            "y_rel": [0.5, 0.5],
            "doy": [120.0, 200.0],
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        return mlflow.pyfunc.log_model(
            name=ARTIFACT,
            python_model=str(Path(__file__).with_name("pyfunc_model.py")),
            artifacts={"model": str(model_path)},
            code_paths=[str(_code_copy(Path(tmp)))],
            signature=signature(),
            input_example=example,
            pip_requirements=_requirements(),
            model_config={"interval": interval, **calibration.fields()},
        )


def decision_metric(cfg, metrics: dict) -> tuple[str, float | None]:
    """The metric the registry compares and the challenger's value.

    ``cfg.metric``, else the first of ``cfg.fallback_metrics`` with a finite value in
    ``metrics`` (a site without field surveys has no ``lai_rmse_field``), else ``cfg.metric``
    without a value.
    """
    names = [cfg.metric, *cfg.fallback_metrics]
    if not any(name in metrics for name in names):
        raise DataError(f"metrics/evaluate.json: none of {names}; rerun the evaluate stage")
    for name in names:
        value = _number(metrics.get(name))
        if value is not None and math.isfinite(value):
            return name, value
    return cfg.metric, None
