"""The trained chunk model on disk (``models/model.pt``): one writer, one reader."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from releo.data.errors import DataError
from releo.data.io import atomic_file
from releo.models.autoencoder import PhysicsAutoencoder, build_model
from releo.models.config import LossWeights, ModelConfig

SAVED_BEFORE_OPTIONS = {"slot_power": True, "context_days": 0, "hybrid_prior": None}
"""What a saved config that lacks an option meant (configs are saved whole, so a missing option
predates it): the slots of earlier models carried a power, their encoder read no context, and
they had no hybrid teacher."""


def save_torch(payload: dict, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` of ``payload`` to ``path``, atomically: the same payload, the same bytes.

    Saved through an open file: given a path, torch names the archive's root folder after the
    file, here a random temporary name, so the bytes (and DVC's hash) would change every time.
    """
    with atomic_file(path) as tmp, Path(tmp).open("wb") as f:
        torch.save(payload, f)
    return Path(path)


def save_autoencoder(model: torch.nn.Module, config: dict, weights: dict, path: str | Path) -> Path:
    """Write ``model``'s state dict, params and loss weights to ``path``, atomically.

    The params are its ``model`` params section (``config``); the loss weights are those it was
    trained with.
    """
    return save_torch({"model": model.state_dict(), "config": config, "weights": weights}, path)


def trained_weights(payload: dict) -> LossWeights:
    """The loss weights a saved payload's model was trained with (the defaults if unrecorded)."""
    return LossWeights(**payload.get("weights", {}))


def model_from_payload(payload: dict) -> PhysicsAutoencoder:
    """The model a saved payload holds (train mode), whatever options its config predates."""
    model = build_model(ModelConfig(**{**SAVED_BEFORE_OPTIONS, **payload["config"]}))
    model.load_state_dict(payload["model"])
    return model


def load_autoencoder(path: str | Path) -> tuple[PhysicsAutoencoder, dict]:
    """The trained model of ``path`` (eval mode) and its saved payload.

    Raises:
        DataError: for a missing or foreign file.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: trained model not found; run the train stage first")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = model_from_payload(payload)
    except Exception as err:  # zip/pickle/pydantic/state-dict errors of a foreign file
        raise DataError(f"{path}: cannot load the model: {type(err).__name__}: {err}") from err
    return model.eval(), payload
