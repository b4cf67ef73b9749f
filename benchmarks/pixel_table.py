"""``releo lai`` benchmark: campaign-shaped pixel tables decoded in the model's windows.

Simulates a two-year site (5-day S2 revisit) and draws a campaign-shaped table from it: 448
points x (147 S2 dates + 30 requested dates, one every 25 days, with empty bands) = 79,296
rows, ~30 % of the S2 rows cloudy with the values real L2A tables hold there (a third of them
bright, 1.0-1.6, a tenth -10000). Each ``releo lai`` run (gate, decode, write) is a child
process, so its peak RSS is its own; the same for 572 points (101,244 rows) and for one
fine-tuning epoch on the 79,296 rows. SNAP's LAI is timed on the same rows and threads. Run with
`make bench-lai` (or `.venv/bin/python benchmarks/pixel_table.py`); uses `models/model.pt` when
present (the speed depends on the architecture, not the weights), else an untrained model of
params.yaml's architecture. Writes benchmarks/results/pixel_table.json and prints the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from releo.config import load_params
from releo.data.contracts import S1_INCIDENCE, S1_POLARISATIONS, S2_ANGLES, S2_BANDS
from releo.data.io import write_table
from releo.data.simulate import SimulationConfig, simulate_site
from releo.models import ModelConfig, build_model
from releo.models.checkpoint import save_autoencoder
from releo.physics import snap_lai
from releo.products.pixel_table import site_pixel_table
from report import report

REQUESTED_EVERY_DAYS = 25  # field-survey dates asked for, without acquisition


def campaign_table(site: Path, points: int, seed: int) -> pd.DataFrame:
    """A campaign-shaped pixel table of ``points`` points of ``site``: every S2 date, cloudy
    rows holding L2A's values, and requested dates with empty bands."""
    table = site_pixel_table(site, points, seed=seed).drop(columns=["truth_lai"])
    rng = np.random.default_rng(seed)
    cloudy = np.flatnonzero(table["cloud_mask"].to_numpy() == 1)
    kind = rng.random(cloudy.size)
    bands = table[list(S2_BANDS)].to_numpy(np.float32, copy=True)
    bright = cloudy[kind < 1 / 3]
    bands[bright] = rng.uniform(1.0, 1.6, (bright.size, 1)) * rng.uniform(0.9, 1.0, (1, 10))
    bands[cloudy[kind > 0.9]] = -10000.0
    table[list(S2_BANDS)] = bands
    first, last = table["date"].min(), table["date"].max()
    asked = pd.date_range(first.normalize() + pd.Timedelta(hours=12), last, freq="25D")
    per_point = table.drop_duplicates("point_id")[["point_id", "x", "y", "crs"]]
    requested = per_point.merge(pd.DataFrame({"date": asked}), how="cross")
    requested["cloud_mask"] = 1
    for name in (*S2_BANDS, *S2_ANGLES, *S1_POLARISATIONS, S1_INCIDENCE):
        requested[name] = np.nan
    table = pd.concat([table, requested], ignore_index=True)
    return table.sort_values(["point_id", "date"], kind="stable").reset_index(drop=True)


def child(args: argparse.Namespace) -> None:
    """One ``releo lai`` run in this process; prints its summary and peak RSS as JSON."""
    from releo.products.pixel_table import run_lai

    torch.set_num_threads(args.threads)
    summary = run_lai(
        args.table, args.out, model_path=args.model, fine_tune_epochs=args.fine_tune_epochs,
        chunk_days=10, context_root=args.gx,
    )  # fmt: skip
    summary["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(summary))


def releo_lai(table: Path, model: Path, work: Path, threads: int, epochs: int = 0) -> dict:
    command = [
        sys.executable, __file__, "--child", "--table", str(table), "--model", str(model),
        "--out", str(work / f"{table.stem}_lai.parquet"), "--gx", str(work / "gx"),
        "--threads", str(threads), "--fine-tune-epochs", str(epochs),
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["wall_seconds"] = time.perf_counter() - started
    return summary


def snap_rate(table: pd.DataFrame, min_seconds: float = 3.0) -> float:
    """SNAP LAI rows per second on the table's rows (best of repeats lasting ``min_seconds``)."""
    bands = {b: table[b].to_numpy(np.float32) for b in S2_BANDS}
    angles = {a: table[a].to_numpy(np.float32) for a in S2_ANGLES}
    snap_lai(bands, angles)  # warm-up
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        snap_lai(bands, angles)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return len(table) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (cores used)")
    parser.add_argument("--points", type=int, default=448)
    parser.add_argument("--big-points", type=int, default=572, help="the 100,000-row table")
    parser.add_argument("--cloudiness", type=float, default=0.25, help="~30 %% cloudy S2 rows")
    parser.add_argument("--model", type=Path, default=Path("models/model.pt"))
    parser.add_argument("--fine-tune-epochs", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--table", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--gx", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_lai_") as tmp:
        work = Path(tmp)
        site = SimulationConfig(
            seed=3, width_m=300, height_m=300, start_date=date(2024, 1, 1),
            end_date=date(2025, 12, 31), cloudiness=args.cloudiness,
        )  # fmt: skip
        simulate_site(site, work / "site", progress=False)
        model, source = args.model, str(args.model)
        if not model.is_file():
            torch.manual_seed(0)
            params = load_params("params.yaml") if Path("params.yaml").exists() else None
            cfg = params.model if params is not None else ModelConfig()
            weights = params.loss_weights.model_dump() if params is not None else {}
            model, source = work / "model.pt", "untrained, params.yaml architecture"
            save_autoencoder(build_model(cfg), cfg.model_dump(), weights, model)
        results: dict = {"model": source}
        for name, points in (("campaign", args.points), ("big", args.big_points)):
            table = campaign_table(work / "site", points, seed=0)
            path = work / f"{name}.parquet"
            write_table(table, path)
            s2 = table["B02"].notna() | (table["cloud_mask"] == 0)
            run = releo_lai(path, model, work, args.threads)
            decode_rate = len(table) / run["decode_seconds"]
            results[name] = {
                "rows": len(table),
                "points": points,
                "cloudy_s2_rows_fraction": float((table.loc[s2, "cloud_mask"] == 1).mean()),
                "requested_rows": int((~s2).sum()),
                "window_days": run["window_days"],
                "context_days": run["context_days"],
                "lai_rows": run["lai_rows"],
                "releo_lai_seconds": run["wall_seconds"],
                "run_lai_seconds": run["seconds"],
                "decode_seconds": run["decode_seconds"],
                "decode_rows_per_s": decode_rate,
                "releo_lai_rows_per_s": len(table) / run["wall_seconds"],
                "peak_rss_mb": run["peak_rss_mb"],
            }
            if name == "campaign":
                snap = snap_rate(table)
                results[name]["snap_rows_per_s"] = snap
                results[name]["decode_vs_snap"] = decode_rate / snap
                tuned = releo_lai(path, model, work, args.threads, epochs=1)
                results[name]["fine_tune_epoch_seconds"] = tuned["fine_tune_seconds"]
                results[name]["fine_tune_loss"] = tuned["fine_tune_losses"][0]
                results[name]["fine_tune_peak_rss_mb"] = tuned["peak_rss_mb"]
        results["load_average_1min"] = os.getloadavg()[0]
        report("pixel_table", results)


if __name__ == "__main__":
    main()
