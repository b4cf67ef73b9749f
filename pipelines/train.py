"""DVC stage ``train``: gate the site and chunk index, then train with the tuned weights."""

from pathlib import Path

from releo.config import load_params
from releo.stage import stage
from releo.timings import timed
from releo.train.inputs import gate_training_inputs
from releo.train.pipeline import INDEX, run_train


def main() -> None:
    with stage("train"), timed("train") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        metrics = run_train(params, Path.cwd())
        if metrics["site_has_truth"]:
            lai = (
                f"val LAI RMSE {metrics['lai_rmse_truth_val']:.3f} "
                f"(SNAP {metrics['snap_lai_rmse_truth_val']:.3f})"
            )
        else:
            lai = f"no truth: val LAI RMSE vs SNAP {metrics['lai_rmse_snap_val']:.3f}"
        print(
            f"{lai}, {metrics['epochs']} epochs on {metrics['workers']} worker(s), "
            f"kept epoch {metrics['selected_epoch']} (by {metrics['select_metric']})"
        )


if __name__ == "__main__":
    main()
