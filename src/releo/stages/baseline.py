"""DVC stage ``baseline``: gate the site and chunk index, then train the per-pixel inversion.

The PROSAIL-VAE inversion (``releo.models.pixel``) is trained on the train split and scored on
the validation split; writes ``baseline/model.pt`` and ``metrics/baseline.json``.
"""

from pathlib import Path
from typing import Any

from releo.config import load_params
from releo.data.chunks import INDEX
from releo.data.io import write_json
from releo.data.site import open_site
from releo.models.pixel import save_pixel_inversion
from releo.models.pixel_train import evaluate_pixel_inversion, train_pixel_inversion
from releo.stage import stage
from releo.timings import timed
from releo.train.inputs import gate_training_inputs

MODEL = Path("baseline/model.pt")
METRICS = Path("metrics/baseline.json")


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("baseline"), timed("baseline") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        model, history = train_pixel_inversion(params.data_dir, INDEX, params.baseline)
        save_pixel_inversion(model, MODEL)
        clock.record(train_seconds=round(history[-1]["elapsed"], 2))
        has_truth = open_site(params.data_dir).has_truth
        scores: dict[str, Any] = {
            "train_steps": params.baseline.steps,
            "site_has_truth": has_truth,
        }
        if has_truth:  # scored here where truth exists; stage evaluate scores it on any site
            scores |= evaluate_pixel_inversion(
                model, params.data_dir, INDEX, split="val",
                max_samples=params.baseline.score_samples, seed=params.baseline.seed,
            )  # fmt: skip
            print(f"per-pixel inversion: val LAI RMSE {scores['lai_rmse_truth']:.3f}")
        else:
            print("per-pixel inversion: no simulator truth to score it on (see stage evaluate)")
        write_json(scores, METRICS)
