"""DVC stage ``register``: log the LAI decoder to MLflow as a pyfunc model with the evaluation
metrics, register it, and make it champion only if it beats the current champion."""

import json
from pathlib import Path

from releo.config import load_params
from releo.data.errors import DataError
from releo.products.decode import LaiCalibration
from releo.products.evaluate import EVALUATE_METRICS
from releo.products.registry import run_register
from releo.products.stages import CALIBRATION, MODEL
from releo.stage import stage
from releo.timings import timed


def _evaluation() -> dict:
    try:
        return json.loads(EVALUATE_METRICS.read_text())
    except FileNotFoundError as err:
        raise DataError(f"{EVALUATE_METRICS}: not found; run the evaluate stage first") from err
    except json.JSONDecodeError as err:
        raise DataError(f"{EVALUATE_METRICS}: not valid JSON ({err})") from err


def main() -> None:
    with stage("register"), timed("register"):
        params = load_params()
        if not MODEL.is_file():
            raise DataError(f"{MODEL}: not found; run the train stage first")
        calibration = LaiCalibration.load(CALIBRATION)
        result = run_register(params, Path.cwd(), _evaluation(), MODEL, calibration)
        print(f"{result['model_name']} v{result['version']}: {result['decision']}")
        if result["metric_fallback"]:
            print(f"compared on {result['metric']}: no {result['metric_configured']} here")


if __name__ == "__main__":
    main()
