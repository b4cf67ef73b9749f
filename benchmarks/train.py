"""Training throughput on the default site: 1 and 2 Ray Train workers, scaling efficiency,
Ray start-up overhead and the share of a training step spent in PROSAIL.

Needs the pipeline's inputs (``make run`` or ``dvc repro chunk``). Budget: ``STEPS`` steps of
``params.train.batch_size`` chunks per worker and epoch, ``EPOCHS`` epochs, one validation
batch per epoch (validation time is excluded from the throughput).
"""

from __future__ import annotations

import shutil
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import torch

from releo.config import load_params
from releo.data.chunks import INDEX
from releo.train.loop import adamw_cosine
from releo.train.ray_train import RunSpec, fit, init_ray
from releo.train.task import physics_task
from report import report

ROOT = Path(__file__).resolve().parents[1]

EPOCHS, STEPS = 2, 6


def pixel_dates_per_chunk(index: pd.DataFrame) -> float:
    """Mean observed pixel-dates (S2 + S1 acquisitions x pixels) of a train chunk."""
    train = index[index["split"] == "train"]
    return float(((train["n_s2"] + train["n_s1"]) * train["size_px"] ** 2).mean())


def ray_run(spec: RunSpec, workers: int) -> dict:
    """Throughput of one Ray Train run; start-up = wall time not spent in epochs."""
    cfg = spec.train.model_copy(update={"num_workers": workers, "cpus_per_worker": 1})
    outcome = fit(replace(spec, train=cfg), name=f"bench-{workers}w-{time.time_ns()}")
    epochs = outcome.history
    train_s = sum(r["train_time_s"] for r in epochs[1:])  # epoch 0 warms caches up
    samples = sum(r["train_samples"] for r in epochs[1:]) * workers  # rank 0's shard x workers
    return {
        "samples_per_s": samples / train_s,
        "startup_s": outcome.seconds - sum(r["epoch_time_s"] for r in epochs),
        "wall_s": outcome.seconds,
    }


def prosail_share(spec: RunSpec, batches: int = 3) -> dict:
    """Share of a single-process training step spent in PROSAIL (forward + backward).

    The forward calls are timed in place; their backward is timed by replaying the recorded
    calls (same inputs) with a backward pass, since autograd runs it inside the step's.
    """
    from torch.utils.data import DataLoader

    import releo.models.forward as forward

    task = spec.task
    model = task.build_model(spec.model)
    weights = task.loss_weights(spec.loss_weights)
    data = task.make_datasets(spec.data_dir, spec.index_path, spec.model)["train"]
    loader = DataLoader(
        data, batch_size=spec.train.batch_size, shuffle=True, collate_fn=task.collate
    )
    optimizer, _ = adamw_cosine(model.parameters(), spec.train.lr, steps=1)
    original, calls = forward.prosail_s2_bands, []

    def timed(**kwargs):
        started = time.perf_counter()
        out = original(**kwargs)
        calls.append((time.perf_counter() - started, kwargs))
        return out

    task.train_one_epoch(model, loader, optimizer, weights, max_batches=1)  # warm-up
    forward.prosail_s2_bands, calls[:] = timed, []
    try:
        started = time.perf_counter()
        task.train_one_epoch(model, loader, optimizer, weights, max_batches=batches)
        step_s = time.perf_counter() - started
    finally:
        forward.prosail_s2_bands = original
    forward_s = sum(t for t, _ in calls)
    replay_fwd = replay_both = 0.0
    for _, kwargs in calls:
        inputs = {
            k: v.detach().clone().requires_grad_(v.is_floating_point())
            if isinstance(v, torch.Tensor)
            else v
            for k, v in kwargs.items()
        }
        started = time.perf_counter()
        out = original(**inputs)
        replay_fwd += time.perf_counter() - started
        out.sum().backward()
        replay_both += time.perf_counter() - started
    prosail_s = forward_s * replay_both / replay_fwd
    return {
        "step_s": step_s / batches,
        "prosail_forward_share": forward_s / step_s,
        "prosail_share": prosail_s / step_s,
    }


def main() -> None:
    params = load_params(ROOT / "params.yaml")
    if not (ROOT / INDEX).exists():
        raise SystemExit(f"{ROOT / INDEX} missing: run `make run` (or `dvc repro chunk`) first")
    train = params.train.model_copy(
        update={"epochs": EPOCHS, "max_batches_per_epoch": STEPS, "eval_max_batches": 1,
                "storage_path": ROOT / "ray_results" / "bench"}
    )  # fmt: skip
    spec = RunSpec(
        task=physics_task(),
        train=train,
        model=params.model.model_dump(),
        loss_weights=params.loss_weights.model_dump(),
        data_dir=ROOT / params.data_dir,
        index_path=ROOT / INDEX,
    )
    started = time.perf_counter()
    init_ray(train.model_copy(update={"ray_num_cpus": 2}))
    ray_init_s = time.perf_counter() - started
    one, two = ray_run(spec, 1), ray_run(spec, 2)
    shutil.rmtree(train.storage_path, ignore_errors=True)
    per_chunk = pixel_dates_per_chunk(pd.read_parquet(ROOT / INDEX))
    torch.set_num_threads(1)  # as in one worker
    share = prosail_share(spec)
    report(
        "train",
        {
            "batch_size": train.batch_size,
            "steps_per_epoch": STEPS,
            "fused_prosail": params.model.fused_prosail,
            "samples_per_s_1_worker": one["samples_per_s"],
            "samples_per_s_2_workers": two["samples_per_s"],
            "pixel_dates_per_s_1_worker": one["samples_per_s"] * per_chunk,
            "pixel_dates_per_s_2_workers": two["samples_per_s"] * per_chunk,
            "scaling_efficiency_2_workers": two["samples_per_s"] / (2 * one["samples_per_s"]),
            "ray_init_s": ray_init_s,
            "trainer_startup_s_1_worker": one["startup_s"],
            "trainer_startup_s_2_workers": two["startup_s"],
            "step_s_single_process": share["step_s"],
            "prosail_share_of_step": share["prosail_share"],
            "prosail_forward_share_of_step": share["prosail_forward_share"],
        },
    )


if __name__ == "__main__":
    main()
