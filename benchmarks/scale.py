"""Scale benchmark: seconds per km² and peak memory of releo's stages on 2, 8 and 16 km sites.

Run with `make bench-scale` (or `.venv/bin/python benchmarks/scale.py`). Each stage of each site
runs in its own subprocess; its peak memory is that of the subprocess and everything it starts
(the local Ray and its workers). Writes benchmarks/results/scale.json and prints the figures.

Stages are rows of ``STAGES``: a function ``(site_dir, work_dir) -> dict`` of extra figures,
run in order on the site's work folder laid out as a project (index, model, embeddings,
products), so each stage reads what the one before wrote. The model is a fresh one of the
default architecture after one epoch: speed and memory depend on the architecture, not the
weights.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

DEFAULT_SIZES_KM = (2, 8, 16)
DEFAULT_DAYS = 20
"""Simulated period: 20 days keep the whole benchmark within ~15 minutes here."""
START = dt.date(2025, 5, 1)
"""In the growing season: the field-survey gate needs a survey campaign in the period."""


# ------------------------------------------------------------------------------------ stages


def stage_simulate(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The simulator writing the site (date by date into scratch files, then shard by shard)."""
    from releo.data.simulate import SimulationConfig, simulate_site

    start = START
    config = SimulationConfig(
        start_date=start,
        width_m=size_km * 1000.0,
        height_m=size_km * 1000.0,
        end_date=start + dt.timedelta(days=days - 1),
    )
    simulate_site(config, site, progress=False)
    return {}


def stage_gates(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The chunk stage's quality gates on the lazily opened site (statistics streamed)."""
    from releo.data.site import open_site, validate_site

    validate_site(open_site(site, lazy=True), work / "gx")
    return {}


def stage_chunk_index(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The chunk stage's index on lazily opened cubes: the mask streamed a row of chunks at a
    time, then the table written."""
    from releo.data.chunks import INDEX, chunk_index
    from releo.data.io import open_cube, write_table
    from releo.data.site import SITE_FILES

    cfg = project_params(site).chunks
    s2 = open_cube(site / SITE_FILES["s2"], lazy=True)
    s1 = open_cube(site / SITE_FILES["s1"], lazy=True)
    index = chunk_index(s2, s1, size_m=cfg.size_m, days=cfg.days, block_chunks=cfg.block_chunks,
                        split=cfg.split, seed=cfg.seed)  # fmt: skip
    write_table(index, work / INDEX)
    return {"chunks": len(index)}


def stage_read(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The S2 cube read whole (open_cube), against numpy.load of the same float32 bands, and
    one 1 km chunk window read from the lazily opened cube."""
    from releo.data.contracts import S2_BANDS
    from releo.data.io import open_cube
    from releo.data.site import SITE_FILES

    path = site / SITE_FILES["s2"]
    open_cube(path)  # warm the page cache and the imports: both sides then read from memory
    t0 = time.perf_counter()
    cube = open_cube(path)
    zarr_s = time.perf_counter() - t0
    stack = np.stack([cube[b].values for b in S2_BANDS])
    del cube
    np.save(work / "bands.npy", stack)
    megabytes = stack.nbytes / 1e6
    del stack
    np.load(work / "bands.npy")
    t0 = time.perf_counter()
    np.load(work / "bands.npy")
    numpy_s = time.perf_counter() - t0
    lazy = open_cube(path, lazy=True)
    t0 = time.perf_counter()
    window = lazy[list(S2_BANDS)].isel(y=slice(0, 100), x=slice(0, 100)).compute()
    chunk_s = time.perf_counter() - t0
    return {
        "s2_float32_megabytes": megabytes,
        "zarr_read_mb_per_s": megabytes / zarr_s,
        "numpy_load_mb_per_s": megabytes / numpy_s,
        "zarr_read_vs_numpy": numpy_s / zarr_s,
        "one_chunk_read_seconds": chunk_s,
        "one_chunk_megabytes": sum(window[b].nbytes for b in S2_BANDS) / 1e6,
    }


def stage_train_epoch(site: Path, work: Path, size_km: float, days: int) -> dict:
    """One training epoch of a fresh model of the default architecture on the train chunks,
    streamed from the stores (the model it leaves is what embed and decode run)."""
    import torch
    from torch.utils.data import DataLoader

    from releo.data.chunks import INDEX, collate_chunks
    from releo.models import build_model
    from releo.models.checkpoint import save_autoencoder
    from releo.stages.train import MODEL
    from releo.train.loop import adamw_cosine, make_datasets, train_one_epoch

    params = project_params(site)
    torch.manual_seed(params.train.seed)
    model = build_model(params.model)
    train = make_datasets(site, work / INDEX, with_truth=False,
                          context_days=params.model.context_days)["train"]  # fmt: skip
    loader = DataLoader(train, batch_size=params.train.batch_size, shuffle=True,
                        collate_fn=collate_chunks)  # fmt: skip
    optimizer, scheduler = adamw_cosine(model.parameters(), params.train.lr, len(loader))
    weights = params.loss_weights
    train_one_epoch(model, loader, optimizer, weights, scheduler=scheduler)
    save_autoencoder(model, params.model.model_dump(), weights.model_dump(), work / MODEL)
    return {"train_chunks": len(train)}


def stage_embed(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The embed stage (Ray tasks on every core) with the model of ``train_epoch``."""
    from releo.stages.embed import run_embed

    return {"tasks": run_embed(project_params(site), work)["tasks"]}


def stage_decode(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The decode stage's request (weekly 10 m LAI over the site; Ray tasks on every core),
    compiled as a request of France's size is (each worker's one-off compile included)."""
    from releo.products.regions import decode_to_folder
    from releo.stages.decode import PRODUCTS
    from releo.stages.embed import EMBEDDINGS
    from releo.stages.train import MODEL
    from releo.timings import timed

    cfg = project_params(site).products.decode.model_copy(
        update={"geotiff": False, "quicklooks": False}
    )
    with timed("decode", work) as clock:
        metrics = decode_to_folder(
            cfg, work / EMBEDDINGS, work / MODEL, work / PRODUCTS, compile_from=0
        )
    return {
        "pixel_dates": metrics["pixel_dates"],
        "tasks": metrics["tasks"],
        "pixel_dates_per_s": clock.values["pixel_dates_per_s"],
    }


def stage_baseline(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The baseline stage: the per-pixel inversion trained on a sample of the train split's
    clear pixel-dates (a fixed budget of steps), then scored on the val split's."""
    from releo.data.chunks import INDEX
    from releo.models.pixel import save_pixel_inversion
    from releo.models.pixel_train import evaluate_pixel_inversion, train_pixel_inversion
    from releo.stages.baseline import MODEL

    cfg = project_params(site).baseline
    model, _ = train_pixel_inversion(site, work / INDEX, cfg)
    save_pixel_inversion(model, work / MODEL)
    scores = evaluate_pixel_inversion(
        model, site, work / INDEX, "val", max_samples=cfg.score_samples, seed=cfg.seed
    )
    return {"scored_pixel_dates": scores["n_pixel_dates"]}


def stage_evaluate(site: Path, work: Path, size_km: float, days: int) -> dict:
    """The evaluate stage: held-out pixel-dates against the truth, SNAP and the surveys, with
    the baseline of ``baseline`` (Ray tasks over blocks of the site where it has several)."""
    from releo.models.pixel import load_pixel_inversion
    from releo.stages.baseline import MODEL
    from releo.stages.evaluate import run_evaluate

    baseline = load_pixel_inversion(work / MODEL)
    metrics = run_evaluate(project_params(site), work, baseline=baseline)
    return {
        "held_out_pixels": metrics["held_out_pixels"],
        "scored_pixels": metrics["scored_pixels"],
    }


def project_params(site: Path):
    """The default params.yaml with ``site`` as the data folder."""
    from releo.config import load_params

    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    return params.model_copy(update={"data_dir": site})


Stage = Callable[[Path, Path, float, int], dict]
STAGES: dict[str, Stage] = {
    "simulate": stage_simulate,
    "gates": stage_gates,
    "chunk_index": stage_chunk_index,
    "read": stage_read,
    "train_epoch": stage_train_epoch,
    "embed": stage_embed,
    "decode": stage_decode,
    "baseline": stage_baseline,
    "evaluate": stage_evaluate,
}
"""Run in this order for each site; every stage after ``simulate`` reads the simulated site."""
CHUNK_STAGE = ("gates", "chunk_index")
"""The work of the DVC ``chunk`` stage."""


PIPELINE = ("chunk", "train_epoch", "embed", "decode", "evaluate")
"""The stages whose scaling the headline ratios judge (``chunk``: the gates and the index).

Not ``baseline``: its training is a fixed number of steps whatever the area."""
CLUSTER_CORES = 250 * 32  # the seeds' cluster: 250 nodes x 32 cores


def france(site: dict, days: int, smaller: dict | None = None) -> dict:
    """A year of France from the ``site``'s measured rates: embed (every chunk of every
    window) and weekly 10 m LAI decoding, in core-hours and hours on ``CLUSTER_CORES``.

    Both stages ran on every core of this machine: a core-second is a wall second times the
    cores. Decoding is projected at its marginal rate from the ``smaller`` site to ``site``
    (the start-up of Ray and of each worker's compile cancel out; a France-sized run amortises
    them), and also at ``site``'s own rate, start-up included. France's size and the weeks are
    those of ``make bench-products``.
    """
    from products import FRANCE_PIXELS, WEEKS  # here: it imports torch

    cores = os.cpu_count() or 1
    stages = site["stages"]
    window_days = project_params(Path()).chunks.days
    km2 = FRANCE_PIXELS / 1e4  # 10 m pixels
    embed_s_per_km2_year = (
        stages["embed"]["seconds_per_km2"] / max(1.0, days / window_days) * 365.0 / window_days
    )
    embed_core_hours = embed_s_per_km2_year * cores * km2 / 3600.0
    decode = stages["decode"]
    rate = decode["pixel_dates_per_s"]
    if smaller is not None:
        small = smaller["stages"]["decode"]
        rate = (decode["pixel_dates"] - small["pixel_dates"]) / (
            decode["seconds"] - small["seconds"]
        )

    def core_hours(pixel_dates_per_s: float) -> float:
        return FRANCE_PIXELS * WEEKS / pixel_dates_per_s * cores / 3600.0

    return {
        "embed_core_hours": embed_core_hours,
        "embed_cluster_hours": embed_core_hours / CLUSTER_CORES,
        "decode_core_hours": core_hours(rate),
        "decode_cluster_hours": core_hours(rate) / CLUSTER_CORES,
        "decode_pixel_dates_per_core_second": rate / cores,
        "decode_core_hours_with_startup": core_hours(decode["pixel_dates_per_s"]),
    }


# ----------------------------------------------------------------------------------- harness


def run_stage(name: str, site: Path, work: Path, size_km: float, days: int) -> dict:
    """Run one stage in a fresh interpreter; its seconds, peak RSS and figures."""
    cmd = [sys.executable, __file__, "--stage", name, "--site", str(site), "--work", str(work),
           "--size-km", str(size_km), "--days", str(days)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"stage {name} ({size_km} km) failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


class TreeMemory:
    """Peak memory of this process and its descendants (a local Ray's workers included),
    sampled every ``interval`` seconds in a thread: the sum of their proportional set sizes
    (shared pages counted once over the processes sharing them)."""

    def __init__(self, interval: float = 0.5):
        import threading

        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        import psutil

        total = 0
        me = psutil.Process()
        for proc in [me, *me.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # just exited
                total += proc.memory_full_info().pss
        return total / 2**20

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self._sample())

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def child(name: str, site: Path, work: Path, size_km: float, days: int) -> None:
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with TreeMemory() as tree:
        figures = STAGES[name](site, work, size_km, days)
    seconds = time.perf_counter() - t0
    own_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux
    print(json.dumps({"seconds": seconds, "peak_rss_mb": max(own_mb, tree.peak_mb),
                      "stage_process_peak_rss_mb": own_mb, **figures}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-km", type=float, nargs="+", default=list(DEFAULT_SIZES_KM))
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="simulated period")
    parser.add_argument("--stage", choices=list(STAGES), help=argparse.SUPPRESS)
    parser.add_argument("--site", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size-km", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        child(args.stage, args.site, args.work, args.size_km, args.days)
        return

    sites: dict[str, dict] = {}
    for size_km in args.sizes_km:
        area = size_km**2
        stages = {}
        with tempfile.TemporaryDirectory() as tmp:
            site, work = Path(tmp) / "site", Path(tmp) / "work"
            for name in STAGES:
                result = run_stage(name, site, work, size_km, args.days)
                result["seconds_per_km2"] = result["seconds"] / area
                stages[name] = result
                print(f"{size_km:g} km {name}: {result['seconds']:.1f} s, "
                      f"{result['peak_rss_mb']:.0f} MB", flush=True)  # fmt: skip
        seconds = sum(stages[s]["seconds"] for s in CHUNK_STAGE)
        stages["chunk"] = {
            "seconds": seconds,
            "peak_rss_mb": max(stages[s]["peak_rss_mb"] for s in CHUNK_STAGE),
            "seconds_per_km2": seconds / area,
        }
        sites[f"{size_km:g}km"] = {"km2": area, "stages": stages}

    results: dict = {"days": args.days, "sites": sites}
    small, large = f"{min(args.sizes_km):g}km", f"{max(args.sizes_km):g}km"
    if small != large:
        s, g = sites[small]["stages"], sites[large]["stages"]
        ratios = {
            name: {
                "time_per_km2": g[name]["seconds_per_km2"] / s[name]["seconds_per_km2"],
                "peak_memory": g[name]["peak_rss_mb"] / s[name]["peak_rss_mb"],
            }
            for name in (*STAGES, "chunk")
        }
        results["per_stage_ratios_16_vs_2"] = ratios
        if len(args.sizes_km) > 2:  # the next-largest site: start-up costs amortised
            m = sites[f"{sorted(args.sizes_km)[-2]:g}km"]["stages"]
            results["per_stage_time_per_km2_ratios_largest_two"] = {
                name: g[name]["seconds_per_km2"] / m[name]["seconds_per_km2"]
                for name in (*STAGES, "chunk")
            }
        # the worst pipeline stage: furthest from constant time per km², most memory growth
        piped = [ratios[name] for name in PIPELINE]
        results["time_per_km2_ratio_16_vs_2"] = max(
            (r["time_per_km2"] for r in piped), key=lambda r: abs(np.log(r))
        )
        results["peak_memory_ratio_16_vs_2"] = max(r["peak_memory"] for r in piped)
    results["zarr_read_vs_numpy"] = sites[large]["stages"]["read"]["zarr_read_vs_numpy"]
    smaller = sites[f"{sorted(args.sizes_km)[-2]:g}km"] if len(args.sizes_km) > 1 else None
    results["france"] = france(sites[large], args.days, smaller)
    results["france_decode_core_hours"] = results["france"]["decode_core_hours"]
    results["cores"] = os.cpu_count()
    from report import report  # here, not at the top: it imports torch into every stage

    report("scale", results)


if __name__ == "__main__":
    main()
