"""Shared by the benchmarks: stamp the machine, write results/<name>.json, print the figures."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from releo.data.io import write_json

RESULTS_DIR = Path(__file__).parent / "results"


def report(name: str, results: dict) -> Path:
    """Write ``results`` (plus machine facts) to ``results/<name>.json`` and print them."""
    results = {
        **results,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    path = write_json(results, RESULTS_DIR / f"{name}.json")
    width = max(map(len, results))
    for key, value in results.items():
        shown = f"{value:,.6g}" if isinstance(value, float) else value
        print(f"{key:<{width}}  {shown}")
    print(f"-> {path}")
    return path
