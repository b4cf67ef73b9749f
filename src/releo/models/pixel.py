"""Per-pixel physics-informed inversion (PROSAIL-VAE style): the baseline of the chunk model.

After Zérah et al. (2024, PROSAIL-VAE, Remote Sens. Environ. 312, 114309): an MLP encoder maps
one clear S2 spectrum (10 bands) and its geometry to a :class:`BoundedNormal` per PROSAIL
variable (the ranges and priors of :mod:`releo.models.distributions`); PROSAIL at the
acquisition's geometry decodes a sample back to the 10 bands. Training is self-supervised,
without labels: Gaussian NLL of the observed reflectances (the L2A noise model plus a learned
per-band model error) + ``kl_weight`` × KL of each variable to its prior. No temporal or
spatial context: each pixel-date is inverted on its own, like SNAP.

Training and evaluation on a site live in :mod:`releo.models.pixel_train`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from releo.data.errors import DataError
from releo.models.checkpoint import save_torch
from releo.models.distributions import VARIABLE_RANGES, BoundedNormal, prior_logit
from releo.models.encoder import S2_CENTRE, S2_SPREAD
from releo.models.forward import PROSAIL_DECODED, s2_noise_sigma, s2_reflectance

INVERTED: tuple[str, ...] = PROSAIL_DECODED
"""The PROSAIL variables inverted per pixel (geometry comes with the observation)."""

CHECKPOINT_KIND = "releo.pixel_inversion"
PREDICT_BLOCK = 65536  # pixel-dates encoded at once (bounds memory)


class BaselineConfig(BaseModel):
    """``params.yaml: baseline``: the per-pixel inversion, its training budget and sampling.

    Defaults train in about a minute on 2 CPU cores: ``steps`` × ``batch_size`` = 512 k
    PROSAIL evaluations (eager band path, ~20–40 µs per spectrum forward + backward).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_width: int = Field(128, ge=8, description="width of the encoder MLP")
    layers: int = Field(3, ge=1, description="hidden layers of the encoder MLP")
    samples: int = Field(
        200_000, ge=1, description="clear train pixel-dates drawn once to train on"
    )
    steps: int = Field(1000, ge=1, description="optimisation steps (minibatches)")
    batch_size: int = Field(512, ge=1, description="pixel-dates per step")
    lr: float = Field(5e-3, gt=0, description="AdamW learning rate (cosine-decayed)")
    kl_weight: float = Field(1.0, ge=0, description="weight of the KL to the priors (1: ELBO)")
    log_every: int = Field(100, ge=1, description="steps between history records")
    fused_prosail: bool = Field(
        False, description="torch.compile-d PROSAIL (compiles for 20-40 s on first use)"
    )
    score_samples: int | None = Field(
        1_000_000, ge=1, description="val pixel-dates scored at most (above: a seeded sample)"
    )
    seed: int = Field(0, ge=0, description="seed of the sampling, initialisation and batches")


def spectrum_features(bands: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Encoder input (N, 14): standardised bands and the geometry.

    Bands are standardised like the chunk encoder's; the geometry is cos sun zenith, cos view
    zenith, and cos and sin relative azimuth.
    """
    centre, spread = bands.new_tensor(S2_CENTRE), bands.new_tensor(S2_SPREAD)
    rad = torch.deg2rad(angles)
    geometry = torch.stack([rad[:, 0].cos(), rad[:, 1].cos(), rad[:, 2].cos(), rad[:, 2].sin()], 1)
    return torch.cat([(bands - centre) / spread, geometry], dim=1)


class PixelInversion(nn.Module):
    """Spectrum + geometry → BoundedNormal per PROSAIL variable → PROSAIL S2 bands."""

    def __init__(self, cfg: BaselineConfig):
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        width_in = 14
        for _ in range(cfg.layers):
            layers += [nn.Linear(width_in, cfg.hidden_width), nn.GELU()]
            width_in = cfg.hidden_width
        head = nn.Linear(width_in, 2 * len(INVERTED))
        nn.init.normal_(head.weight, std=1e-2)
        with torch.no_grad():  # start at the prior medians with a moderate spread
            head.bias[: len(INVERTED)] = torch.tensor([prior_logit(n) for n in INVERTED])
            head.bias[len(INVERTED) :] = -1.0
        self.net = nn.Sequential(*layers, head)
        # Learned model error per band, added to the L2A noise (absorbs what PROSAIL lacks).
        self.log_sigma = nn.Parameter(torch.full((10,), math.log(0.01)))

    def forward(self, bands: torch.Tensor, angles: torch.Tensor) -> dict[str, BoundedNormal]:
        """Distributions (N,) of each inverted variable for bands (N, 10) and angles (N, 3).

        Angles are sun zenith, view zenith and relative azimuth, in degrees.
        """
        raw = self.net(spectrum_features(bands, angles))
        k = len(INVERTED)
        scale = nn.functional.softplus(raw[:, k:]) + 1e-3
        return {
            name: BoundedNormal(raw[:, i], scale[:, i], *VARIABLE_RANGES[name])
            for i, name in enumerate(INVERTED)
        }

    def loss(
        self, bands: torch.Tensor, angles: torch.Tensor, platform: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Mean per pixel-date of ``nll``, ``kl`` and ``total`` = nll + kl_weight · kl.

        ``nll`` is Gaussian, summed over bands; ``kl`` is summed over variables. ``platform`` (N,)
        holds the SRF codes.
        """
        dists = self(bands, angles)
        values = {k: d.rsample() for k, d in dists.items()}
        pred = s2_reflectance(values, angles, platform, fused=self.cfg.fused_prosail)
        noise = s2_noise_sigma(pred.detach())
        var = noise**2 + torch.exp(2 * self.log_sigma)
        nll = (0.5 * ((bands - pred) ** 2 / var + torch.log(var))).sum(-1).mean()
        kl = sum(d.kl_to_prior(prior_logit(k)) for k, d in dists.items()).mean()
        return {"nll": nll, "kl": kl, "total": nll + self.cfg.kl_weight * kl}


def _as_tensor(values, name: str, width: int) -> torch.Tensor:
    out = torch.as_tensor(np.asarray(values, dtype=np.float32))
    if out.dim() != 2 or out.shape[1] != width:
        raise ValueError(f"{name}: expected shape (N, {width}), got {tuple(out.shape)}")
    return out


@torch.no_grad()
def predict_pixel_variables(
    model: PixelInversion, bands, angles, variables: tuple[str, ...] = ("lai",)
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(median, standard deviation) arrays (N,) of ``variables`` for bands and angles.

    Bands are (N, 10), angles (N, 3) (sun zenith, view zenith, relative azimuth, degrees), numpy or
    torch.

    Rows with a non-finite band or angle get NaN. Blocks of ``PREDICT_BLOCK`` rows.
    """
    bands, angles = _as_tensor(bands, "bands", 10), _as_tensor(angles, "angles", 3)
    if bands.shape[0] != angles.shape[0]:
        raise ValueError(f"bands has {bands.shape[0]} rows, angles {angles.shape[0]}")
    ok = torch.isfinite(bands).all(1) & torch.isfinite(angles).all(1)
    n = len(ok)
    out = {v: (np.full(n, np.nan, np.float32), np.full(n, np.nan, np.float32)) for v in variables}
    rows = ok.nonzero().flatten()
    model.eval()
    for start in range(0, rows.numel(), PREDICT_BLOCK):
        sel = rows[start : start + PREDICT_BLOCK]
        dists = model(bands[sel], angles[sel])
        for v in variables:
            out[v][0][sel.numpy()] = dists[v].median.numpy()
            out[v][1][sel.numpy()] = dists[v].stddev.numpy()
    return out


def predict_pixel_lai(model: PixelInversion, bands, angles) -> tuple[np.ndarray, np.ndarray]:
    """LAI median and standard deviation (N,) for bands (N, 10) and angles (N, 3), degrees."""
    return predict_pixel_variables(model, bands, angles, ("lai",))["lai"]


def save_pixel_inversion(model: PixelInversion, path: str | os.PathLike[str]) -> Path:
    """Write the state dict and config of ``model`` to ``path`` (torch.save), atomically."""
    state = {"kind": CHECKPOINT_KIND, "model": model.state_dict()}
    return save_torch({**state, "config": model.cfg.model_dump()}, path)


def load_pixel_inversion(path: str | os.PathLike[str]) -> PixelInversion:
    """The model saved by :func:`save_pixel_inversion`, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: pixel inversion model not found")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle/zip errors of a corrupt or foreign file
        raise DataError(f"{path}: cannot read the model: {type(err).__name__}: {err}") from err
    if not isinstance(saved, dict) or saved.get("kind") != CHECKPOINT_KIND:
        raise DataError(f"{path}: not a pixel inversion model (kind {CHECKPOINT_KIND!r})")
    model = PixelInversion(BaselineConfig(**saved["config"]))
    model.load_state_dict(saved["model"])
    return model.eval()
