"""Data benchmark: simulator throughput, Zarr I/O against numpy, quality-gate share of a stage.

Run with `make bench-data` (or `.venv/bin/python benchmarks/data.py`). Writes
benchmarks/results/data.json and prints the figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from releo.data.chunks import chunk_index
from releo.data.contracts import S2_BANDS
from releo.data.io import open_cube, write_cube, write_table
from releo.data.simulate import SimulationConfig, simulate_site
from releo.data.site import open_site, validate_site
from report import report


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-m", type=float, default=1000.0, help="side of the simulated site")
    parser.add_argument("--days", type=int, default=120, help="simulated period")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cfg = SimulationConfig(
            width_m=args.size_m,
            height_m=args.size_m,
            end_date=SimulationConfig().start_date.fromordinal(
                SimulationConfig().start_date.toordinal() + args.days - 1
            ),
        )
        t0 = time.perf_counter()
        simulate_site(cfg, tmp / "site")
        sim_seconds = time.perf_counter() - t0

        # Stage-like run: open, gate, chunk, write; the gate's share of it.
        t0 = time.perf_counter()
        site = open_site(tmp / "site")
        g0 = time.perf_counter()
        validate_site(site, tmp / "gx")
        gate_seconds = time.perf_counter() - g0
        index = chunk_index(site.s2, site.s1, size_m=500.0, days=10)
        write_table(index, tmp / "chunks" / "index.parquet")
        stage_seconds = time.perf_counter() - t0

        ny, nx = site.s2.sizes["y"], site.s2.sizes["x"]
        pixel_dates = ny * nx * (site.s2.sizes["time"] + site.s1.sizes["time"])

        # Zarr (sharded, uint16-scaled, compressed) against a plain float32 numpy array.
        cube = site.s2
        stack = np.stack([cube[b].values for b in S2_BANDS]).astype(np.float32)
        mb = stack.nbytes / 1e6
        t0 = time.perf_counter()
        write_cube(cube, tmp / "bench.zarr")
        zarr_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        open_cube(tmp / "bench.zarr").load()
        zarr_read = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.save(tmp / "bench.npy", stack)
        npy_write = time.perf_counter() - t0
        t0 = time.perf_counter()
        np.load(tmp / "bench.npy")
        npy_read = time.perf_counter() - t0
        zarr_bytes = dir_bytes(tmp / "bench.zarr")

    results = {
        "simulated_pixel_dates": pixel_dates,
        "simulator_seconds": sim_seconds,
        "simulator_pixel_dates_per_s": pixel_dates / sim_seconds,
        "cube_megabytes_float32": mb,
        "zarr_write_mb_per_s": mb / zarr_write,
        "zarr_read_mb_per_s": mb / zarr_read,
        "numpy_save_mb_per_s": mb / npy_write,
        "numpy_load_mb_per_s": mb / npy_read,
        "zarr_write_vs_numpy": npy_write / zarr_write,
        "zarr_read_vs_numpy": npy_read / zarr_read,
        "zarr_compression_ratio": stack.nbytes / zarr_bytes,
        "quality_gate_seconds": gate_seconds,
        "stage_seconds": stage_seconds,
        "quality_gate_fraction_of_stage": gate_seconds / stage_seconds,
    }
    report("data", results)


if __name__ == "__main__":
    main()
