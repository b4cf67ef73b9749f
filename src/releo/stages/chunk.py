"""DVC stage ``chunk``: gate the site's inputs, then tile it into train/val/test chunks.

Writes the chunk index (:data:`releo.data.chunks.INDEX`) and ``metrics/chunks.json``.
"""

from pathlib import Path

from releo.config import load_params
from releo.data.chunks import INDEX, check_no_leak, chunk_index, chunk_summary
from releo.data.io import write_json, write_table
from releo.data.site import open_site, validate_site
from releo.stage import stage
from releo.timings import timed

METRICS = Path("metrics/chunks.json")


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("chunk"), timed("chunk") as clock:
        params = load_params()
        site = open_site(params.data_dir, lazy=True)  # gates and index stream the cubes
        with clock.part("gates"):
            gates = validate_site(site, params.quality.context_root)
        cfg = params.chunks
        index = chunk_index(
            site.s2, site.s1, size_m=cfg.size_m, days=cfg.days,
            block_chunks=cfg.block_chunks, split=cfg.split, seed=cfg.seed,
        )  # fmt: skip
        check_no_leak(index)
        write_table(index, INDEX)
        summary = chunk_summary(index)
        summary["site_has_truth"] = site.has_truth  # stages score against truth only where it is
        write_json(summary, METRICS)
        # GE gates report their seconds; plain checks (e.g. the meteo contract) a dict
        per_gate = {k: round(g.seconds, 2) for k, g in gates.items() if hasattr(g, "seconds")}
        clock.record(gate_seconds=per_gate)
