"""Products benchmark: LAI decoding throughput from chunk embeddings next to SNAP LAI, and the
projected cost of a year of weekly 10 m LAI over France.

Rates are per wall-clock second and per CPU-second (the core-hours of the projection use the
latter, which other processes on the machine barely affect). Run with `make bench-products`
(or `.venv/bin/python benchmarks/products.py`). Uses the trained
`models/model.pt` when present (throughput depends on the architecture, not on the weights),
else a freshly initialised model of the default architecture. Writes
benchmarks/results/products.json and prints the figures.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from releo.data.contracts import S2_BANDS
from releo.models import ModelConfig, build_model
from releo.physics import snap_lai
from releo.products.decode import decode_grid, decode_queries
from releo.products.embed import load_autoencoder
from report import report

FRANCE_PIXELS = 5.5e9  # 10 m pixels over metropolitan France (~550,000 km²)
WEEKS = 52


def rate(fn, n_items: int, min_seconds: float = 3.0) -> tuple[float, float]:
    """Items per wall-clock second and per CPU-second (all threads) of ``fn``: best of repeated
    calls lasting at least ``min_seconds``. The CPU-second rate is what core-hours need and is
    little affected by other processes sharing the cores; the wall-clock one is."""
    fn()  # warm-up
    wall, cpu, spent = float("inf"), float("inf"), 0.0
    while spent < min_seconds:
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        wall, cpu, spent = min(wall, dt), min(cpu, dc), spent + dt
    return n_items / wall, n_items / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores used)")
    parser.add_argument("--chunks", type=int, default=8, help="chunks decoded per repeat")
    parser.add_argument("--chunk-px", type=int, default=100, help="10 m pixels per chunk side")
    parser.add_argument("--batch-queries", type=int, default=65536)
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--embeddings", type=Path, default=Path("embeddings/embeddings.zarr"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.model.is_file():
        model, _ = load_autoencoder(args.model)
        source = str(args.model)
    else:
        torch.manual_seed(0)
        model, source = build_model(ModelConfig(fused_prosail=False)).eval(), "untrained default"
    dim = model.cfg.embedding_dim

    # One weekly date per chunk: every 10 m pixel of `chunks` chunks, float32 embeddings.
    rng = np.random.default_rng(0)
    table = rng.normal(size=(args.chunks, dim)).astype(np.float32)
    n_px = args.chunk_px**2
    centres = (np.arange(args.chunk_px) + 0.5) / args.chunk_px
    v, u = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
    owner = np.repeat(np.arange(args.chunks), n_px)
    u, v = np.tile(u, args.chunks), np.tile(v, args.chunks)
    doy = np.repeat(rng.integers(1, 366, args.chunks), n_px).astype(np.float32)
    n = len(owner)
    decode_rate, decode_cpu = rate(
        lambda: decode_queries(model, table, owner, u, v, doy, batch_queries=args.batch_queries),
        n,
    )

    def median_only() -> torch.Tensor:
        shape = (args.chunks, -1)
        with torch.no_grad():
            q = [torch.as_tensor(a).view(shape) for a in (u, v, doy)]
            return model.decode(torch.as_tensor(table), *q)["lai"].median

    median_rate, median_cpu = rate(median_only, n)

    # SNAP LAI (numpy, the operational per-pixel network) on the same machine and threads.
    n_snap = 1_000_000
    bands = {b: rng.uniform(0.02, 0.4, n_snap).astype(np.float32) for b in S2_BANDS}
    angles = {
        "sun_zenith": np.full(n_snap, 40.0, np.float32),
        "view_zenith": np.full(n_snap, 5.0, np.float32),
        "relative_azimuth": np.full(n_snap, 100.0, np.float32),
    }
    snap_rate, snap_cpu = rate(lambda: snap_lai(bands, angles), n_snap)

    results: dict = {
        "model": source,
        "embedding_dim": dim,
        "decode_lai_pixel_dates_per_s": decode_rate,
        "decode_lai_pixel_dates_per_cpu_s": decode_cpu,
        "decode_lai_median_only_pixel_dates_per_s": median_rate,
        "decode_lai_median_only_pixel_dates_per_cpu_s": median_cpu,
        "snap_lai_pixels_per_s": snap_rate,
        "snap_lai_pixels_per_cpu_s": snap_cpu,
        "decode_vs_snap_per_cpu_s": decode_cpu / snap_cpu,
        "load_average_1min": os.getloadavg()[0],
    }
    if args.embeddings.exists():
        # The stage path on the default site: one weekly 10 m map of the whole site.
        import pandas as pd

        from releo.data.io import open_cube
        from releo.products.grid import ChunkLayout, Grid

        cube = open_cube(args.embeddings)
        layout = ChunkLayout.from_embeddings(cube)
        grid = Grid.from_bounds(layout.bounds, 10.0, layout.crs)
        days = pd.date_range(layout.period[0], periods=4, freq="7D")
        results["decode_grid_pixel_dates_per_s"], results["decode_grid_pixel_dates_per_cpu_s"] = (
            rate(lambda: decode_grid(model, cube, grid, days), grid.shape[0] * grid.shape[1] * 4)
        )
    work = FRANCE_PIXELS * WEEKS
    results.update(
        {
            "france_weekly_10m_pixel_dates": work,
            "france_weekly_10m_core_hours": work / decode_cpu / 3600,
            "france_weekly_10m_snap_core_hours": work / snap_cpu / 3600,
            "cores": args.threads,
        }
    )
    report("products", results)


if __name__ == "__main__":
    main()
