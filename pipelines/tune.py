"""DVC stage ``tune``: gate the site and chunk index, then search the physics-loss weights."""

from pathlib import Path

from releo.config import load_params
from releo.stage import stage
from releo.timings import timed
from releo.train.inputs import gate_training_inputs
from releo.train.pipeline import INDEX, run_tune


def main() -> None:
    with stage("tune"), timed("tune") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        summary = run_tune(params, Path.cwd())
        if summary["trials"]:
            print(
                f"objective {summary['metric']}: default {summary['objective_default']:.4g}, "
                f"best {summary['objective_best']:.4g} ({summary['trials']} trials)"
            )


if __name__ == "__main__":
    main()
