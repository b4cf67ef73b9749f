"""What the distributed trainer needs from the model side, as picklable callables.

Ray ships a :class:`Task` to every worker. :func:`physics_task` is the platform's model (the
physics-informed autoencoder and its plain-torch loop); tests and benchmarks may bring others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn
from torch.utils.data import Dataset

from releo.data.chunks import collate_chunks
from releo.models import LossWeights, ModelConfig, build_model
from releo.train import loop


@dataclass(frozen=True)
class Task:
    """Model, data and epoch functions of a training problem."""

    build_model: Callable[[dict], nn.Module]
    """Model from the ``model`` params section (a plain dict)."""
    loss_weights: Callable[[dict], Any]
    """Loss-weights object from the ``loss_weights`` section."""
    make_datasets: Callable[[Path, Path, dict], dict[str, Dataset]]
    """``(data_dir, index_path, model)`` → datasets per split (``train`` and the validation
    split) as the model of the ``model`` params section reads them."""
    collate: Callable[[list], Any]
    train_one_epoch: Callable[..., dict[str, float]]
    """``(model, loader, optimizer, weights, *, max_batches, scheduler)`` → mean loss terms;
    ``model`` exposes ``train()``, ``parameters()`` and ``loss(batch, weights)``."""
    evaluate: Callable[..., dict[str, float]]
    """``(model, loader, weights)`` → validation metrics (``loss`` included)."""
    site_dataset: Callable[[Path, float, int, dict], Dataset] | None = None
    """``(site_dir, chunk_m, days, model)`` → the training chunks of a further site
    (``train.sites``); None: the task learns from its own site only."""


def _physics_model(model: dict) -> nn.Module:
    return build_model(ModelConfig(**model))


def _physics_weights(weights: dict) -> LossWeights:
    return LossWeights(**weights)


def _physics_datasets(data_dir: Path, index: Path, model: dict) -> dict[str, Dataset]:
    context_days = ModelConfig(**model).context_days
    return loop.make_datasets(data_dir, index, with_truth=True, context_days=context_days)


def _physics_site(site_dir: Path, chunk_m: float, days: int, model: dict) -> Dataset:
    context_days = ModelConfig(**model).context_days
    return loop.site_train_dataset(site_dir, chunk_m, days, context_days=context_days)


def physics_task() -> Task:
    """The physics-informed autoencoder (``releo.models``) with ``releo.train.loop``."""
    return Task(
        build_model=_physics_model,
        loss_weights=_physics_weights,
        make_datasets=_physics_datasets,
        collate=collate_chunks,
        train_one_epoch=loop.train_one_epoch,
        evaluate=loop.evaluate,
        site_dataset=_physics_site,
    )
