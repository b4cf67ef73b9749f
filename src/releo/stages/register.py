"""DVC stage ``register``: log the LAI decoder to MLflow and register it, champion if it wins.

The decoder is logged as a pyfunc model (:mod:`releo.products.registry`) with the evaluation
metrics, registered, and made champion only if it beats the current champion; writes
``metrics/register.json``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from releo import tracking
from releo.config import Params, load_params
from releo.data.errors import DataError
from releo.data.io import file_sha256
from releo.products.decode import LaiCalibration
from releo.products.registry import beats, champion_metric, decision_metric, log_decoder
from releo.stage import stage
from releo.stages.calibrate import CALIBRATION
from releo.stages.evaluate import EVALUATE_METRICS, PLOTS
from releo.stages.train import MODEL
from releo.timings import timed, write_metrics

REGISTER_METRICS = Path("metrics/register.json")


def run_register(
    params: Params,
    root: Path,
    metrics: dict,
    model_path: Path,
    calibration: LaiCalibration | None = None,
) -> dict:
    """Stage ``register``: log and register the decoder, champion if it beats the current one.

    Logs the decoder and its ``calibration`` (stage ``calibrate``; None: the identity) with
    the evaluation ``metrics``, registers it as ``products.registry.model_name`` and gives it
    the champion alias only if it beats the current champion on ``products.registry.metric``
    (else the challenger alias).
    """
    import mlflow
    from mlflow import MlflowClient

    cfg = params.products.registry
    root = Path(root)
    calibration = calibration or LaiCalibration()
    metric, value = decision_metric(cfg, metrics)
    if metric != cfg.metric:
        print(f"register: no {cfg.metric} on this site; comparing {metric} instead")
    payload = torch.load(model_path, map_location="cpu", weights_only=True)
    with tracking.stage_run(params, root, "register") as run:
        train_run = tracking.training_run_id(params.tracking, file_sha256(model_path))
        mlflow.set_tag("train_run_id", train_run or "")
        client = MlflowClient()
        champion, before = champion_metric(client, cfg.model_name, cfg.champion_alias, metric)
        promoted = beats(value, before, cfg.lower_is_better)
        alias = cfg.champion_alias if promoted else cfg.challenger_alias
        numbers = tracking.finite_metrics(metrics)
        mlflow.log_params(
            {
                **{f"model.{k}": v for k, v in payload["config"].items()},
                "evaluate.splits": ",".join(metrics.get("splits", [])),
                "registry.metric": metric,
                "registry.metric_configured": cfg.metric,
                **calibration.fields("calibration."),
            }
        )
        mlflow.log_dict(metrics, "evaluate.json")
        for figure in sorted((root / PLOTS).glob("*.png")):
            mlflow.log_artifact(str(figure), "evaluate")
        info = log_decoder(model_path, int(payload["config"]["embedding_dim"]),
                           float(metrics.get("interval", 0.9)), calibration)  # fmt: skip
        mlflow.log_metrics(numbers, model_id=info.model_id)
        version = mlflow.register_model(
            info.model_uri,
            cfg.model_name,
            tags={
                k: str(v)
                for k, v in numbers.items()
                if k.startswith(("lai_", "snap_", "baseline_"))
            },
        )
        client.set_registered_model_alias(cfg.model_name, alias, version.version)
        before_text = (
            "none" if before is None or champion is None else f"{before:.4g} (v{champion.version})"
        )
        decision = (
            f"{metric} {value if value is None else f'{value:.4g}'} vs champion {before_text}: "
            f"{'promoted to' if promoted else 'kept as'} {alias}"
        )
        client.set_model_version_tag(cfg.model_name, version.version, "decision", decision)
        client.set_model_version_tag(
            cfg.model_name, version.version, "promoted", str(promoted).lower()
        )
        mlflow.set_tags(
            {
                "registered_model": cfg.model_name,
                "registered_version": version.version,
                "alias": alias,
                "promoted": str(promoted).lower(),
                "decision": decision,
            }
        )
    result = {
        "model_name": cfg.model_name,
        "version": int(version.version),
        "alias": alias,
        "promoted": promoted,
        "metric": metric,
        "metric_configured": cfg.metric,
        "metric_fallback": metric != cfg.metric,
        "site_has_truth": (metrics.get("references") or {}).get("truth"),
        metric: value,
        f"champion_{metric}_before": before if before is None or math.isfinite(before) else None,
        "champion_version_before": None if champion is None else int(champion.version),
        "decision": decision,
        "model_uri": f"models:/{cfg.model_name}/{version.version}",
        "mlflow_run_id": run.run_id,
    }
    write_metrics(result, root / REGISTER_METRICS)
    return result


def _evaluation() -> dict:
    try:
        return json.loads(EVALUATE_METRICS.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{EVALUATE_METRICS}: not found; run the evaluate stage first") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{EVALUATE_METRICS}: not valid JSON ({err})") from err


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("register"), timed("register"):
        params = load_params()
        if not MODEL.is_file():
            raise DataError(f"{MODEL}: not found; run the train stage first")
        calibration = LaiCalibration.load(CALIBRATION)
        result = run_register(params, Path.cwd(), _evaluation(), MODEL, calibration)
        print(f"{result['model_name']} v{result['version']}: {result['decision']}")
        if result["metric_fallback"]:
            print(f"compared on {result['metric']}: no {result['metric_configured']} here")
