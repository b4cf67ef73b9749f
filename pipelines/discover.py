"""DVC stage ``discover``: gate the site and chunk index, then residual analysis and SINDy
equations of the residuals, the decoded LAI and (simulated sites) the planted effects."""

from pathlib import Path

from releo.config import load_params
from releo.discover.pipeline import INDEX, run_discover
from releo.stage import stage
from releo.timings import timed
from releo.train.inputs import gate_training_inputs


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def main() -> None:
    with stage("discover"), timed("discover") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        metrics = run_discover(params, Path.cwd())
        if metrics["skipped"]:
            return  # run_discover said why; metrics/discover.json says it too
        print(
            f"truth: structure F1 {_num(metrics['truth_structure_f1'])}, max coefficient error "
            f"{_num(metrics['truth_max_coef_rel_error'])}; learned residuals: structure F1 "
            f"{_num(metrics['latent_structure_f1'])}, held-out simulation R² "
            f"{_num(metrics['latent_sim_r2'])}; LAI simulation R² {_num(metrics['lai_sim_r2'])}"
        )
        for note in metrics["notes"]:
            print(f"note: {note}")


if __name__ == "__main__":
    main()
