"""Latent decoder: embedding (+ context) and query (x, y, t) → bounded physical variables, and
the exclusive residual decoders of each modality."""

from __future__ import annotations

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

S2_RESIDUAL_BOUND = 0.1  # reflectance: the exclusive effects are small additive terms
S1_RESIDUAL_BOUND = 3.0  # dB
MIN_SCALE = 1e-3


def mlp(n_in: int, width: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(n_in, width),
        nn.GELU(),
        nn.Linear(width, width),
        nn.GELU(),
        nn.Linear(width, n_out),
    )


def sample_map(field: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Bilinear samples (B, N, C) of ``field`` (B, C, H, W) at chunk-relative (x, y) ∈ [0, 1]²
    (pixel centres at (i + 0.5) / W, so a full-resolution map is read exactly)."""
    grid = torch.stack([2 * x - 1, 2 * y - 1], dim=-1)[:, :, None]  # (B, N, 1, 2)
    out = F.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2)


class FieldSlots(nn.Module):
    """z → K field slots (position, weight, features) → features at (x, y) by a soft power
    diagram: each query takes the features of its nearest slots.

    Parcels are convex cells (close to a Voronoi tessellation of their centres), so a few
    numbers per field — a centre and a value — draw its boundary sharply at any resolution,
    which a smooth upsampled grid of the same size cannot (it blurs every edge). Slots start
    on a lattice and move at most one lattice step; the sharpness is learned.
    """

    def __init__(self, n_in: int, slots: int, features: int):
        super().__init__()
        side = round(slots**0.5)
        self.spacing = 1.0 / side
        centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
        lattice = torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1)
        self.register_buffer("lattice", lattice.reshape(-1, 2), persistent=False)
        self.features = features
        self.project = nn.Linear(n_in, slots * (3 + features))
        nn.init.normal_(self.project.weight, std=1e-2)
        nn.init.zeros_(self.project.bias)
        self.log_sharpness = nn.Parameter(torch.tensor(2.0))

    def forward(self, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Features (B, N, features) at chunk-relative x, y (B, N)."""
        slots = self.project(z).reshape(z.shape[0], self.lattice.shape[0], 3 + self.features)
        centre = self.lattice + self.spacing * torch.tanh(slots[..., :2])  # (B, K, 2)
        query = torch.stack([x, y], dim=-1)  # (B, N, 2)
        distance2 = torch.cdist(query, centre).pow(2) / self.spacing**2  # (B, N, K)
        logits = -distance2 * self.log_sharpness.exp() + slots[:, None, :, 2]
        return logits.softmax(-1) @ slots[..., 3:]


class LatentDecoder(nn.Module):
    """z → small latent grid → upsampled continuous feature field read at (x, y), and field
    slots (sharp parcel boundaries), with the optional per-pixel context and day-of-year
    Fourier features → per-variable distributions.

    The last ``2 · residual_dim`` features of z are the exclusive latents of S2 and S1; only the
    residual decoders read them, so the physical variables depend on the common part alone.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        common = cfg.embedding_dim - 2 * cfg.residual_dim
        g, cg = cfg.latent_grid, cfg.grid_channels
        self.to_grid = nn.Linear(common, cg * g * g)
        self.refine = nn.Sequential(
            nn.Conv2d(cg, cg, 3, padding=1), nn.GELU(), nn.Conv2d(cg, cg, 3, padding=1)
        )
        self.to_global = nn.Linear(common, cfg.hidden_width // 2)
        self.slots = (
            FieldSlots(common, cfg.field_slots, cfg.slot_features) if cfg.field_slots else None
        )
        n_slot = cfg.slot_features if self.slots is not None else 0
        self.n_space = cg + n_slot + cfg.detail_channels + 1 + cfg.hidden_width // 2
        n_time = 2 * cfg.fourier_frequencies
        self.dynamic = tuple(v for v in VARIABLES if v not in STATIC_VARIABLES)
        self.static_head = mlp(self.n_space, cfg.hidden_width, 2 * len(STATIC_VARIABLES))
        self.dynamic_head = mlp(self.n_space + n_time, cfg.hidden_width, 2 * len(self.dynamic))
        for head, names in (
            (self.static_head, STATIC_VARIABLES),
            (self.dynamic_head, self.dynamic),
        ):
            # Start near each variable's prior median, with a moderate spread.
            last = head[-1]
            nn.init.normal_(last.weight, std=1e-2)
            with torch.no_grad():
                last.bias[: len(names)] = torch.tensor([prior_logit(n) for n in names])
                last.bias[len(names) :] = -3.0  # softplus: 0.05 logit units
        n_res = cfg.residual_dim + self.n_space + n_time
        # S2 residual = a few amplitudes × learned spectra: exclusive optical effects (browning,
        # dust, …) have fixed spectral shapes, which vegetation changes cannot mimic.
        self.s2_residual = mlp(n_res, cfg.hidden_width // 2, cfg.s2_residual_rank)
        self.s2_spectra = nn.Parameter(0.1 * torch.randn(cfg.s2_residual_rank, 10))
        self.s1_residual = mlp(n_res, cfg.hidden_width // 2, 2)
        for head in (self.s2_residual, self.s1_residual):
            # Residuals start near zero: physics explains the observations first.
            nn.init.normal_(head[-1].weight, std=1e-3)
            nn.init.zeros_(head[-1].bias)

    def space_features(
        self, z: torch.Tensor, x: torch.Tensor, y: torch.Tensor, context: dict | None
    ) -> torch.Tensor:
        """Features (B, N, n_space) of the query positions x, y (B, N)."""
        cfg, common = self.cfg, z[:, : self.cfg.embedding_dim - 2 * self.cfg.residual_dim]
        grid = self.to_grid(common).reshape(-1, cfg.grid_channels, cfg.latent_grid, cfg.latent_grid)
        grid = F.interpolate(grid, size=cfg.field_resolution, mode="bilinear", align_corners=False)
        parts = [sample_map(self.refine(grid), x, y)]
        if self.slots is not None:
            parts.append(self.slots(common, x, y))
        detail = None if context is None else context.get("detail")
        n = x.shape[1]
        if cfg.detail_channels:
            if detail is None:
                parts += [x.new_zeros(x.shape[0], n, cfg.detail_channels + 1)]
            else:
                present = context.get("detail_present", x.new_ones(x.shape[0]))
                present = present.to(x.dtype)[:, None, None]
                parts += [sample_map(detail, x, y) * present, present.expand(-1, n, 1)]
        else:
            parts += [x.new_zeros(x.shape[0], n, 1)]
        parts.append(self.to_global(common)[:, None].expand(-1, n, -1))
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
            scale = F.softplus(raw[..., k:]) + MIN_SCALE
            for i, name in enumerate(names):
                out[name] = BoundedNormal(raw[..., i], scale[..., i], *VARIABLE_RANGES[name])
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
            return S2_RESIDUAL_BOUND * torch.tanh(self.s2_residual(inputs) @ self.s2_spectra)
        return S1_RESIDUAL_BOUND * torch.tanh(self.s1_residual(inputs))
