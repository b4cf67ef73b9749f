"""Latent decoder: embedding (+ per-pixel detail) and query (x, y, t) → bounded physical variables.

Also the exclusive residual decoders of each modality.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.models.config import ModelConfig
from releo.models.distributions import (
    STATIC_VARIABLES,
    VARIABLE_RANGES,
    VARIABLES,
    BoundedNormal,
    prior_logit,
)
from releo.models.encoder import fourier_doy
from releo.models.slots import FieldSlots
from releo.physics.srf import band_centres_nm

S2_RESIDUAL_BOUND = 0.1  # reflectance: the exclusive effects are small additive terms
S1_RESIDUAL_BOUND = 3.0  # dB
MIN_SCALE = 1e-3
LOGIT_BOUND = 10.0
"""Soft bound on the decoded logit locations: sigmoid(±10) lies within 5·10⁻⁵ of a range's
ends, and an unbounded location let a grown embedding feed ever larger KL gradients (training
with the synthetic residual spectra diverged to a KL term of 10²³ within two epochs)."""


def mlp(n_in: int, width: int, n_out: int) -> nn.Sequential:
    """Two hidden GELU layers of ``width``."""
    return nn.Sequential(
        nn.Linear(n_in, width),
        nn.GELU(),
        nn.Linear(width, width),
        nn.GELU(),
        nn.Linear(width, n_out),
    )


def linear_layer(head: nn.Sequential, i: int = -1) -> nn.Linear:
    """Layer ``i`` of an :func:`mlp` head (by default its output layer), a linear layer."""
    layer = head[i]
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"expected an nn.Linear at layer {i}, got {type(layer).__name__}")
    return layer


def sample_map(field: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, N, C) of ``field`` (B, C, H, W) at chunk-relative (x, y) ∈ [0, 1]².

    Pixel centres are at (i + 0.5) / W, so a full-resolution map is read exactly.
    """
    grid = torch.stack([2 * x - 1, 2 * y - 1], dim=-1)[:, :, None]  # (B, N, 1, 2)
    out = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


def spectral_basis(degree: int) -> torch.Tensor:
    """Legendre polynomials in log-wavelength over the S2 band centres.

    Degrees 0..``degree``, shape (degree + 1, 10): the span of the S2 residual's spectra.

    Degree 2 holds the simulator's broad browning spectrum (rising from blue, flat in the
    SWIR) to 3 % (RMS), but leaves ~60 % of PROSAIL's reflectance change with LAI (the
    red-edge step) and ~75 % of its change with chlorophyll outside its span, so the residual
    cannot stand in for the canopy. Measured after 10 epochs at the tuned weights, on clear
    pixel-dates of the validation chunks: the true LAI predicted linearly from the decoded
    residual, R² 0.78 with a free 10-band spectrum, 0.54 with this basis; LAI bias −0.32 and
    −0.19.
    """
    log_centre = np.log(band_centres_nm())
    u = 2 * (log_centre - log_centre.min()) / (log_centre.max() - log_centre.min()) - 1
    basis = np.polynomial.legendre.legvander(u, degree).T
    return torch.tensor(basis, dtype=torch.float32)


class LatentDecoder(nn.Module):
    """Decoder from z to per-variable distributions at query positions and dates.

    Field slots are read at (x, y) (sharp parcel boundaries), next to chunk-wide features, the
    optional per-pixel detail and day-of-year Fourier features.

    The last ``2 · residual_dim`` features of z are the exclusive latents of S2 and S1; only the
    residual decoders read them, so the physical variables depend on the common part alone.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        common = cfg.embedding_dim - 2 * cfg.residual_dim
        self.to_global = nn.Linear(common - cfg.slot_code_dim, cfg.hidden_width // 2)
        self.slots = FieldSlots(cfg.field_slots, cfg.slot_features, power=cfg.slot_power)
        self.n_space = cfg.slot_features + cfg.detail_channels + 1 + cfg.hidden_width // 2
        n_time = 2 * cfg.fourier_frequencies
        self.dynamic = tuple(v for v in VARIABLES if v not in STATIC_VARIABLES)
        self.static_head = mlp(self.n_space, cfg.hidden_width, 2 * len(STATIC_VARIABLES))
        self.dynamic_head = mlp(self.n_space + n_time, cfg.hidden_width, 2 * len(self.dynamic))
        for head, names in (
            (self.static_head, STATIC_VARIABLES),
            (self.dynamic_head, self.dynamic),
        ):
            # Start near each variable's prior median, with a moderate spread.
            last = linear_layer(head)
            nn.init.normal_(last.weight, std=1e-2)
            with torch.no_grad():
                last.bias[: len(names)] = torch.tensor([prior_logit(n) for n in names])
                last.bias[len(names) :] = -3.0  # softplus: 0.05 logit units
        n_res = cfg.residual_dim + self.n_space + n_time
        # S2 residual = a few amplitudes × learned smooth spectra: exclusive optical effects
        # (browning, dust, residue) are broad and fixed in shape, while what PROSAIL explains
        # (pigments, the red edge, leaf water) is sharp (see spectral_basis).
        self.s2_residual = mlp(n_res, cfg.hidden_width // 2, cfg.s2_residual_rank)
        self.register_buffer("s2_basis", spectral_basis(cfg.s2_residual_degree), persistent=False)
        self.s2_spectra = nn.Parameter(
            0.1 * torch.randn(cfg.s2_residual_rank, cfg.s2_residual_degree + 1)
        )
        self.s1_residual = mlp(n_res, cfg.hidden_width // 2, 2)
        for head in (self.s2_residual, self.s1_residual):
            # Residuals start near zero: physics explains the observations first.
            nn.init.normal_(linear_layer(head).weight, std=1e-3)
            nn.init.zeros_(linear_layer(head).bias)

    def space_features(
        self, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor, detail: dict | None
    ) -> torch.Tensor:
        """Features (B, N, n_space) of the query positions x, y (B, N)."""
        cfg, common = self.cfg, z[:, : self.cfg.embedding_dim - 2 * self.cfg.residual_dim]
        code, chunk_wide = common[:, : cfg.slot_code_dim], common[:, cfg.slot_code_dim :]
        parts = [self.slots(code, x, y)]
        detail = {} if detail is None else detail
        detail_map = detail.get("map")
        n = x.shape[1]
        if cfg.detail_channels:
            if detail_map is None:
                parts += [x.new_zeros(x.shape[0], n, cfg.detail_channels + 1)]
            else:
                present = detail.get("present", x.new_ones(x.shape[0]))
                present = present.to(x.dtype)[:, None, None]
                parts += [sample_map(detail_map, x, y) * present, present.expand(-1, n, 1)]
        else:
            parts += [x.new_zeros(x.shape[0], n, 1)]
        parts.append(self.to_global(chunk_wide)[:, None].expand(-1, n, -1))
        return torch.cat(parts, dim=-1)

    def variables(self, space: torch.Tensor, t: torch.Tensor) -> dict[str, BoundedNormal]:
        """Distributions of every physical variable from space features and dates (B, N)."""
        time = fourier_doy(t, self.cfg.fourier_frequencies)
        out = {}
        for head, names, inputs in (
            (self.static_head, STATIC_VARIABLES, space),
            (self.dynamic_head, self.dynamic, torch.cat([space, time], dim=-1)),
        ):
            raw = head(inputs)
            k = len(names)
            loc = LOGIT_BOUND * torch.tanh(raw[..., :k] / LOGIT_BOUND)
            scale = F.softplus(raw[..., k:]) + MIN_SCALE
            for i, name in enumerate(names):
                out[name] = BoundedNormal(loc[..., i], scale[..., i], *VARIABLE_RANGES[name])
        return {name: out[name] for name in VARIABLES}

    def residuals(
        self, z: torch.Tensor, space: torch.Tensor, t: torch.Tensor, modality: str
    ) -> torch.Tensor:
        """Additive residual of ``modality`` ("s2": 10 bands of reflectance; "s1": VV, VH dB)."""
        r = self.cfg.residual_dim
        latent = z[:, -2 * r : -r] if modality == "s2" else z[:, -r:]
        time = fourier_doy(t, self.cfg.fourier_frequencies)
        inputs = torch.cat([latent[:, None].expand(-1, t.shape[1], -1), space, time], dim=-1)
        if modality == "s2":
            return S2_RESIDUAL_BOUND * torch.tanh(
                self.s2_residual(inputs) @ self.s2_spectra @ self.s2_basis
            )
        return S1_RESIDUAL_BOUND * torch.tanh(self.s1_residual(inputs))
