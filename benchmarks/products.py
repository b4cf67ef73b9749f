"""Products benchmark: LAI decoding throughput from chunk embeddings next to SNAP LAI, the
projected cost of a year of weekly 10 m LAI over France, and the embed/decode stages on 1 and 2
Ray workers.

Decoding is measured three ways in the same run: ``before`` (the path up to issue 25: the model's
full decoder for every variable, then BoundedNormal's properties), the LAI-only path
(``eager``) and the same with its elementwise chains fused by torch.compile (``compiled``,
the stage default); the largest difference of their values from ``before`` is reported too.

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
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch

from releo.data.contracts import S2_BANDS
from releo.models import ModelConfig, build_model
from releo.physics import snap_lai
from releo.products import decode as decode_module
from releo.products.decode import LAI_VARIABLES, Queries, decode_grid, decode_queries
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


def before_decode_lai(model, z, u, v, doy, interval=0.9, calibration=None, compiled=False):
    """The decode path before issue 25: every variable through the model's decoder, then
    BoundedNormal's median, stddev (its two moments) and quantiles."""
    cal = calibration or decode_module.LaiCalibration()
    with torch.no_grad():
        dist = cal.widen(model.decode(z, u, v, doy, detail=None)["lai"])
        q = (1.0 - interval) / 2
        return {
            "lai": cal.censor(dist.median),
            "lai_std": dist.stddev,
            "lai_low": cal.censor(dist.icdf(q)),
            "lai_high": cal.censor(dist.icdf(1.0 - q)),
        }


def max_difference(a: dict, b: dict) -> float:
    return max(float(np.nanmax(np.abs(a[k] - b[k]))) for k in LAI_VARIABLES)


def ray_scaling() -> dict:
    """The embed and decode stages on a local Ray of 1, then 2 CPUs: a simulated 500 m x 500 m
    site of 25 chunks of 100 m over 40 days (100 chunk-windows), the untrained default
    architecture, in 16 tasks; decode: daily 2 m LAI (62,500 px x 40 days) in 40 tasks. Embed is
    timed cold (a fresh Ray: worker start-up and loads included), decode after a warm-up run;
    the machine's other load shows here (``load_average_1min``)."""
    from releo.config import ChunkConfig, Params
    from releo.data.chunks import INDEX, chunk_index
    from releo.data.io import write_table
    from releo.data.simulate import SimulationConfig, simulate_site
    from releo.data.site import open_site
    from releo.distributed import ray_session
    from releo.products.config import DecodeConfig, EmbedConfig, ProductsConfig
    from releo.products.regions import decode_to_folder
    from releo.stages.embed import EMBEDDINGS, run_embed
    from releo.stages.train import MODEL

    site_cfg = SimulationConfig(
        width_m=500, height_m=500, start_date=date(2025, 5, 1), end_date=date(2025, 6, 9)
    )
    out: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        simulate_site(site_cfg, root / "data", progress=False)
        site = open_site(root / "data")
        index = chunk_index(site.s2, site.s1, size_m=100.0, days=10, split={"train": 1})
        write_table(index, root / INDEX)
        torch.manual_seed(0)
        cfg = ModelConfig(fused_prosail=False)
        (root / MODEL).parent.mkdir()
        torch.save(
            {"model": build_model(cfg).state_dict(), "config": cfg.model_dump(), "weights": {}},
            root / MODEL,
        )
        decode = DecodeConfig(
            resolution_m=2.0, step_days=1, geotiff=False, quicklooks=False, overview_panels=1
        )
        for workers in (1, 2):
            params = Params(
                data_dir=root / "data",
                site=site_cfg,
                chunks=ChunkConfig(size_m=100.0),
                model=cfg,
                products=ProductsConfig(embed=EmbedConfig(workers=workers), decode=decode),
            )
            with ray_session(workers):
                # embed timed cold (worker start, model and site loads included): a second run
                # would find the cells the workers fitted in the first (the encoder memoises them)
                t0 = time.perf_counter()
                run_embed(params, root, region=(1, 3, 3))  # 16 tasks
                embed_s = time.perf_counter() - t0
                decode_s = []
                for _ in range(2):  # warm-up (worker starts, loads), then timed
                    t0 = time.perf_counter()
                    metrics = decode_to_folder(
                        decode, root / EMBEDDINGS, root / MODEL, root / "products",
                        region=(4, 128, 128),
                    )  # fmt: skip
                    decode_s.append(time.perf_counter() - t0)
            pixel_dates = metrics["pixel_dates"]
            out[f"ray_{workers}_workers_embed_seconds_cold"] = embed_s
            out[f"ray_{workers}_workers_embed_chunks_per_s_cold"] = len(index) / embed_s
            out[f"ray_{workers}_workers_decode_pixel_dates_per_s"] = pixel_dates / decode_s[-1]
        out["ray_embed_chunks"] = len(index)
        out["ray_decode_pixel_dates"] = pixel_dates
        out["ray_decode_tasks"] = metrics["tasks"]
        for stage in ("embed_chunks_per_s_cold", "decode_pixel_dates_per_s"):
            out[f"ray_{stage}_speed_up_2_vs_1"] = (
                out[f"ray_2_workers_{stage}"] / out[f"ray_1_workers_{stage}"]
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores used)")
    parser.add_argument("--chunks", type=int, default=8, help="chunks decoded per repeat")
    parser.add_argument("--chunk-px", type=int, default=100, help="10 m pixels per chunk side")
    parser.add_argument("--batch-queries", type=int, default=65536)
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--embeddings", type=Path, default=Path("embeddings/embeddings.zarr"))
    parser.add_argument(
        "--no-ray", dest="ray", action="store_false", help="skip the 1 vs 2 Ray workers figures"
    )
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

    def run(compiled: bool = False) -> dict:
        queries = Queries.unblended(table, owner, u, v, doy)
        return decode_queries(model, queries, batch_queries=args.batch_queries, compiled=compiled)

    def run_before() -> dict:
        per_call = max(1, args.batch_queries // n_px)  # whole chunks per model call
        shape = (args.chunks, n_px)
        q = [torch.as_tensor(a, dtype=torch.float32).view(shape) for a in (u, v, doy)]
        z = torch.as_tensor(table)
        parts = [
            before_decode_lai(model, z[a : a + per_call], *(x[a : a + per_call] for x in q))
            for a in range(0, args.chunks, per_call)
        ]
        return {k: torch.cat([p[k] for p in parts]).reshape(-1).numpy() for k in LAI_VARIABLES}

    started = time.perf_counter()
    compiled_values = run(compiled=True)
    compile_s = time.perf_counter() - started
    before_values, eager_values = run_before(), run()
    before_rate, before_cpu = rate(run_before, n)
    eager_rate, eager_cpu = rate(run, n)
    decode_rate, decode_cpu = rate(lambda: run(compiled=True), n)

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
        "decode_lai_before_pixel_dates_per_s": before_rate,
        "decode_lai_before_pixel_dates_per_cpu_s": before_cpu,
        "decode_lai_eager_pixel_dates_per_s": eager_rate,
        "decode_lai_eager_pixel_dates_per_cpu_s": eager_cpu,
        "decode_lai_pixel_dates_per_s": decode_rate,
        "decode_lai_pixel_dates_per_cpu_s": decode_cpu,
        "decode_lai_speed_up_per_cpu_s": decode_cpu / before_cpu,
        "decode_lai_compile_seconds": compile_s,
        "decode_lai_max_abs_difference_eager": max_difference(before_values, eager_values),
        "decode_lai_max_abs_difference_compiled": max_difference(before_values, compiled_values),
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
    if args.ray:
        results.update(ray_scaling())
    work = FRANCE_PIXELS * WEEKS
    results.update(
        {
            "france_weekly_10m_pixel_dates": work,
            "france_weekly_10m_core_hours_before": work / before_cpu / 3600,
            "france_weekly_10m_core_hours": work / decode_cpu / 3600,
            "france_weekly_10m_snap_core_hours": work / snap_cpu / 3600,
            "cores": args.threads,
        }
    )
    report("products", results)


if __name__ == "__main__":
    main()
