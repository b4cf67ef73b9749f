"""DVC stage ``embed``: gate the site and chunk index, then embed every chunk.

Ray tasks (:func:`releo.products.regions.embed_region`) on the local cores, or on the
``$RAY_ADDRESS`` cluster; writes ``embeddings/embeddings.zarr`` (the chunk embeddings by window,
row and col) and ``metrics/embed.json``.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd

from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.io import atomic_dir, file_sha256, write_json
from releo.data.site import open_site
from releo.distributed import (
    create_region_cube,
    finish_cube,
    map_tasks,
    ray_session,
    regions,
    use_ray,
)
from releo.products.embed import embeddings_cube, load_autoencoder
from releo.products.regions import EMBED_REGION, embed_region
from releo.stage import stage
from releo.stages.train import MODEL
from releo.timings import record, timed
from releo.train.inputs import gate_training_inputs

EMBEDDINGS = Path("embeddings/embeddings.zarr")
EMBED_METRICS = Path("metrics/embed.json")


def run_embed(
    params: Params, root: Path = Path(), *, region: tuple[int, int, int] = EMBED_REGION
) -> dict:
    """Stage ``embed``: encode every chunk of the site; write the cube and its metrics.

    Runs as Ray tasks over blocks of ``region`` chunks (windows, rows, cols).
    """
    root = Path(root).resolve()
    cfg = params.products.embed
    started = time.perf_counter()
    model, _ = load_autoencoder(root / MODEL)
    site = open_site(root / params.data_dir, lazy=True)
    index = pd.read_parquet(root / INDEX)
    dim = model.cfg.embedding_dim
    period = site.period
    template = embeddings_cube(
        None,
        index,
        crs=site.crs,
        pixel_size_m=float(abs(site.s2.x.values[1] - site.s2.x.values[0])),
        chunk_days=params.chunks.days,
        dtype=cfg.dtype,
        attrs={
            "model_sha256": file_sha256(root / MODEL),
            "data_start": str(period[0].date()),
            "data_end": str(period[1].date()),
        },
        embedding_dim=dim,
        chunks=region,
    )
    place = index[["window", "row", "col"]].to_numpy()
    tasks = []
    for block in regions(template["embedding"].shape[:3], region):
        bounds = zip(place.T, block, strict=True)
        inside = np.all([(p >= s.start) & (p < s.stop) for p, s in bounds], axis=0)
        if inside.any():
            tasks.append(
                {
                    "data_dir": str(root / params.data_dir),
                    "model_path": str(root / MODEL),
                    "rows": index[inside],
                    "region": block,
                    "batch_size": cfg.batch_size,
                    "dtype": cfg.dtype,
                    "refine_steps": cfg.refine_steps,
                    "refine_lr": cfg.refine_lr,
                    "refine_terms": tuple(cfg.refine_terms),
                }
            )
    parallel = use_ray(len(tasks))
    with atomic_dir(root / EMBEDDINGS) as tmp:
        create_region_cube(template, tmp, {"embedding": (*region, dim)})
        with ray_session(cfg.workers) if parallel else nullcontext():
            parts = map_tasks(
                embed_region,
                [{**task, "out": str(tmp)} for task in tasks],
                workers=cfg.workers,
                in_process=not parallel,
            )
        finish_cube(tmp)
    error = max((p["quantisation_max_abs_error"] for p in parts), default=math.nan)
    metrics = {
        "chunks": len(index),
        "embedding_dim": dim,
        "dtype": cfg.dtype,
        "bytes_per_chunk": int(dim * np.dtype(cfg.dtype).itemsize),
        "quantisation_max_abs_error": error,
        "embedding_abs_max": max((p["embedding_abs_max"] for p in parts), default=math.nan),
        "site_has_truth": site.has_truth,  # never used here: the record of what the site holds
        "tasks": len(tasks),
    }
    # timings stay out of DVC's metrics (releo.timings)
    record(embed_seconds=round(time.perf_counter() - started, 2), embed_ray=parallel)
    write_json(metrics, root / EMBED_METRICS)
    return metrics


def main() -> None:
    """Run the stage in the project of the working directory."""
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
