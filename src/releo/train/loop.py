"""Plain-torch training of the physics autoencoder: batching, datasets, epochs, evaluation."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sized
from pathlib import Path

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from releo.data.chunks import SPLITS, ChunkDataset, chunk_index, collate_chunks
from releo.data.io import open_cube
from releo.data.site import open_site
from releo.models import LossWeights, PhysicsAutoencoder
from releo.models.autoencoder import LOSS_TERMS
from releo.train.metrics import evaluate_batch, finish_metrics

WEIGHT_DECAY = 1e-4  # AdamW's weight decay, for every training of the chunk model
CLIP_NORM = (
    5.0  # gradient-norm clip: the gradients of badly placed early distributions stay bounded
)


def adamw_cosine(
    parameters: Iterable[torch.nn.Parameter],
    lr: float,
    steps: int,
    weight_decay: float = WEIGHT_DECAY,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """AdamW from ``lr``, cosine-decayed to 0 over ``steps`` steps: every trainer's optimiser."""
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))


def dataset_len(dataset: Dataset) -> int:
    """``len(dataset)``; a TypeError for a dataset without a length (an iterable one)."""
    if not isinstance(dataset, Sized):
        raise TypeError(f"{type(dataset).__name__} has no len()")
    return len(dataset)


def make_datasets(
    data_dir: str | Path,
    index: pd.DataFrame | str | Path,
    with_truth: bool = True,
    context_days: int = 0,
) -> dict[str, Dataset]:
    """Train/val/test chunk datasets of a site, streamed from its stores.

    Each item reads its own chunk: the site is never held whole, whatever its size.

    Items carry the encoder's ``context_days`` of observations around each window.

    Val and test items also carry the simulator's truth LAI (when ``with_truth`` and the site
    has one) and the reference (SNAP) LAI, for evaluation; train items never do.
    """
    site = open_site(data_dir, lazy=True)
    if not isinstance(index, pd.DataFrame):
        index = pd.read_parquet(index)
    s2, s1 = site.s2, site.s1
    truth = None
    if with_truth and site.path("truth").exists():
        truth = open_cube(site.path("truth"), lazy=True)[["lai"]]
    reference = site.reference[["lai"]] if site.reference is not None else None
    out: dict[str, Dataset] = {
        "train": ChunkDataset(s2, s1, index, "train", context_days=context_days)
    }
    for split in SPLITS[1:]:
        out[split] = ChunkDataset(
            s2, s1, index, split, truth=truth, reference=reference, context_days=context_days
        )
    return out


def site_train_dataset(
    site_dir: str | Path, chunk_m: float, days: int, context_days: int = 0
) -> ChunkDataset:
    """Every chunk of a further training site (``chunk_m`` × ``days``).

    Without truth or reference: the physics losses need neither.
    """
    site = open_site(site_dir, lazy=True)
    s2, s1 = site.s2, site.s1
    index = chunk_index(s2, s1, size_m=chunk_m, days=days, split={"train": 1, "val": 0, "test": 0})
    index["chunk_id"] = f"{Path(site_dir).name}/" + index["chunk_id"]
    return ChunkDataset(s2, s1, index, "train", context_days=context_days)


def train_one_epoch(
    model: PhysicsAutoencoder,
    loader: Iterable[dict],
    optimizer: torch.optim.Optimizer,
    weights: LossWeights,
    *,
    max_batches: int | None = None,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    clip_norm: float = CLIP_NORM,
) -> dict[str, float]:
    """One pass over ``loader``; returns the mean of each loss term (and ``total``)."""
    model.train()
    sums: dict[str, float] = {}
    n = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        optimizer.zero_grad(set_to_none=True)
        terms = model.loss(batch, weights)
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


@torch.no_grad()
def evaluate(
    model: PhysicsAutoencoder, loader: Iterable[dict], weights: LossWeights, *, seed: int = 0
) -> dict[str, float]:
    """Validation metrics: loss terms, reconstruction RMSE and, with truth, LAI RMSE.

    S2/S1 reconstruction RMSE (clear S2 observations, all S1), per-band/polarisation RMSE, and —
    when batches carry truth — LAI RMSE against the simulator truth at the S2 dates (all, clear,
    cloudy pixels; between acquisitions; from the embedding alone) next to the SNAP reference's RMSE
    against the same truth.

    Deterministic: the query sampling of the loss uses its own seeded RNG stream.
    """
    model.eval()
    losses: dict[str, float] = {}
    sums: dict[str, list[float]] = {}
    n = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for batch in loader:
            terms = model.loss(batch, weights)
            for k, v in terms.items():
                losses[k] = losses.get(k, 0.0) + float(v)
            evaluate_batch(model, batch, sums)
            n += 1
    out = {"loss": losses.get("total", float("nan")) / max(n, 1)}
    out.update({f"loss_{k}": losses.get(k, float("nan")) / max(n, 1) for k in LOSS_TERMS})
    out.update(finish_metrics(sums))
    return out


def fit(
    model: PhysicsAutoencoder,
    datasets: dict[str, Dataset],
    weights: LossWeights,
    epochs: int,
    lr: float,
    seed: int,
    progress: bool = True,
    *,
    batch_size: int = 4,
    max_batches: int | None = None,
    eval_split: str = "val",
    eval_every: int = 1,
) -> list[dict[str, float]]:
    """Train ``model`` with AdamW (cosine-decayed ``lr``) on ``datasets["train"]``.

    Runs ``epochs`` epochs and returns one record per epoch (train loss terms, ``val_*`` metrics
    every ``eval_every`` epochs and at the end, seconds). Deterministic for ``seed``.
    """
    torch.manual_seed(seed)
    loader = DataLoader(
        datasets["train"],
        batch_size=batch_size,
        shuffle=True,
        collate_fn=collate_chunks,
        generator=torch.Generator().manual_seed(seed),
    )
    evaluation = None
    if eval_split in datasets and dataset_len(datasets[eval_split]):
        evaluation = DataLoader(
            datasets[eval_split], batch_size=batch_size, collate_fn=collate_chunks
        )
    steps = epochs * (min(len(loader), max_batches) if max_batches else len(loader))
    optimizer, scheduler = adamw_cosine(model.parameters(), lr, steps)
    history = []
    bar = tqdm(range(epochs), desc="fit", unit="epoch", disable=not progress)
    for epoch in bar:
        start = time.perf_counter()
        record: dict[str, float] = {"epoch": epoch}
        train = train_one_epoch(
            model, loader, optimizer, weights, max_batches=max_batches, scheduler=scheduler
        )
        record.update({f"train_{k}": v for k, v in train.items()})
        record["train_time_s"] = time.perf_counter() - start
        if evaluation is not None and ((epoch + 1) % eval_every == 0 or epoch + 1 == epochs):
            metrics = evaluate(model, evaluation, weights, seed=seed)
            record.update({f"{eval_split}_{k}": v for k, v in metrics.items()})
        record["time_s"] = time.perf_counter() - start
        history.append(record)
        shown = {"loss": train.get("total", float("nan"))}
        if f"{eval_split}_lai_rmse_truth" in record:
            shown["lai_rmse"] = record[f"{eval_split}_lai_rmse_truth"]
        bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
    return history
