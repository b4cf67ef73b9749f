"""Rate–distortion of the chunk embeddings: held-out LAI RMSE against the embedding size.

For each size (default 64, 128, 256, 512 features) a model is trained from scratch with the
same budget (plain-torch loop, same seed, epochs and steps, params.yaml's model and the tuned
loss weights), every chunk is embedded and stored in float16 as the `embed` stage does, and LAI
decoded from the embeddings alone is scored against the simulator truth on the held-out
chunks (val + test, every pixel at every S2 date), next to SNAP on the same pixels.

Needs the default site and chunk index (`make run` first). Long: about (epochs × train chunks /
batch) steps per size. Run with e.g.

    OMP_NUM_THREADS=2 .venv/bin/python benchmarks/rate_distortion.py --epochs 3

Writes benchmarks/results/rate_distortion.json and rate_distortion.png.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from releo.config import load_params
from releo.data.chunks import ChunkDataset
from releo.data.io import open_cube
from releo.data.site import open_site
from releo.models import LossWeights, ModelConfig, build_model
from releo.models.config import slot_geometry
from releo.products.embed import embeddings_cube, encode_chunks
from releo.products.evaluate import held_out_estimates, held_out_mask
from releo.products.scores import scores
from releo.train.loop import fit, make_datasets
from report import RESULTS_DIR, report


def chunk_input_bytes(index: pd.DataFrame, size_px: int) -> float:
    """Mean bytes of a chunk's raw inputs as stored: S2 10 bands uint16 + mask uint8 per date,
    S1 VV/VH/incidence float32 per date."""
    s2 = index["n_s2"].mean() * size_px**2 * (10 * 2 + 1)
    s1 = index["n_s1"].mean() * size_px**2 * 3 * 4
    return float(s2 + s1)


def slots_for(
    dim: int, residual_dim: int, slot_features: int, power: bool, chunk_wide: int = 8
) -> int:
    """Most field slots (a square number) that fit z's common part with ``chunk_wide``
    features to spare: 49 at the default 256 features (Voronoi slots of 2 features)."""
    room = (dim - 2 * residual_dim - chunk_wide) // (slot_geometry(power) + slot_features)
    return max(1, math.isqrt(max(room, 1))) ** 2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--max-batches", type=int, default=None, help="steps per epoch cap")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = parser.parse_args()

    params = load_params(args.params)
    index_path = Path("chunks/index.parquet")
    index = pd.read_parquet(index_path)
    site = open_site(params.data_dir)
    truth = open_cube(site.path("truth"))[["lai", "land_cover"]]
    context_days = params.model.context_days
    datasets = make_datasets(params.data_dir, index, context_days=context_days)
    weights_path = Path("tune/best_weights.json")
    weights = params.loss_weights.model_dump()
    if weights_path.exists():
        weights.update(json.loads(weights_path.read_text()))
    mask = held_out_mask(index, (site.s2.sizes["y"], site.s2.sizes["x"]), ["val", "test"])
    pixel = float(abs(site.s2.x.values[1] - site.s2.x.values[0]))
    raw = chunk_input_bytes(index, int(index["size_px"].iloc[0]))
    all_chunks = ChunkDataset(site.s2.load(), site.s1.load(), index, context_days=context_days)

    rows = []
    for dim in args.dims:
        base = params.model.model_dump()
        slots = slots_for(dim, base["residual_dim"], base["slot_features"], base["slot_power"])
        cfg = ModelConfig(**{**base, "embedding_dim": dim, "field_slots": slots})
        torch.manual_seed(args.seed)
        model = build_model(cfg)
        started = time.perf_counter()
        fit(
            model, datasets, LossWeights(**weights), args.epochs, params.train.lr, args.seed,
            progress=False, batch_size=params.train.batch_size, max_batches=args.max_batches,
            eval_split="none",
        )  # fmt: skip
        train_s = time.perf_counter() - started
        z = encode_chunks(model.eval(), all_chunks, batch_size=8)
        cube = embeddings_cube(
            z, index, crs=site.crs, pixel_size_m=pixel, chunk_days=params.chunks.days,
            dtype="float16",
        )  # fmt: skip
        rows, cols = np.nonzero(mask)
        est = held_out_estimates(model, cube, site, truth, rows, cols, interval=0.9, baseline=None)
        ours = scores(est.lai, est.truth, est.low, est.high)
        snap = scores(est.snap, est.truth)
        at_snap = np.isfinite(est.snap)
        row = {
            "embedding_dim": dim,
            "field_slots": slots,
            "bytes_per_chunk": dim * 2,
            "compression_vs_inputs": raw / (dim * 2),
            "lai_rmse_truth": ours["rmse"],
            "lai_r2_truth": ours["r2"],
            "lai_coverage90_truth": ours["coverage"],
            "lai_rmse_truth_at_snap": scores(est.lai[at_snap], est.truth[at_snap])["rmse"],
            "snap_lai_rmse_truth": snap["rmse"],
            "train_seconds": train_s,
        }
        rows.append(row)
        print(json.dumps(row))

    figure = RESULTS_DIR / "rate_distortion.png"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot([r["bytes_per_chunk"] for r in rows], [r["lai_rmse_truth"] for r in rows], "o-",
            label="decoded from embeddings")  # fmt: skip
    ax.axhline(rows[0]["snap_lai_rmse_truth"], color="tab:orange", ls="--", label="SNAP")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bytes per chunk (float16 embedding)")
    ax.set_ylabel("held-out LAI RMSE vs truth")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(figure)
    results = {
        "epochs": args.epochs,
        "max_batches_per_epoch": args.max_batches,
        "raw_input_bytes_per_chunk": raw,
        "sizes": rows,
        "figure": str(figure),
    }
    report("rate_distortion", results)


if __name__ == "__main__":
    main()
