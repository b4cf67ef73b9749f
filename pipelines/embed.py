"""DVC stage ``embed``: gate the site and chunk index, then embed every chunk (Ray tasks on
the local cores, or on the ``$RAY_ADDRESS`` cluster)."""

from pathlib import Path

from releo.config import load_params
from releo.products.stages import INDEX, run_embed
from releo.stage import stage
from releo.timings import timed
from releo.train.inputs import gate_training_inputs


def main() -> None:
    with stage("embed"), timed("embed") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        metrics = run_embed(params, Path.cwd())
        error = metrics["quantisation_max_abs_error"]
        print(
            f"{metrics['chunks']} chunks -> {metrics['embedding_dim']} features "
            f"({metrics['dtype']}, max quantisation error {error:.2g}) in "
            f"{metrics['tasks']} task(s)"
        )


if __name__ == "__main__":
    main()
