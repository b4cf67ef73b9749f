"""Chunk encoder: S2 and S1 time series of a chunk → one embedding (+ per-pixel detail)."""

from __future__ import annotations

import math

import torch
from torch import nn

from releo.data.contracts import S2_BANDS
from releo.models.config import ModelConfig
from releo.models.slots import SlotPooling

# Typical bottom-of-atmosphere reflectance of each band over crops (mean, spread): the inputs
# are standardised with these fixed values so that no statistics leak from a split.
S2_CENTRE = (0.05, 0.08, 0.08, 0.13, 0.22, 0.26, 0.28, 0.29, 0.22, 0.14)
S2_SPREAD = (0.03, 0.04, 0.05, 0.05, 0.07, 0.09, 0.10, 0.10, 0.07, 0.07)
S2_RED, S2_NIR = S2_BANDS.index("B04"), S2_BANDS.index("B08")
S1_CENTRE, S1_SPREAD = (-12.0, -19.0), (4.0, 4.0)  # VV, VH dB
INCIDENCE_CENTRE, INCIDENCE_SPREAD = 35.0, 8.0


def fourier_doy(doy: torch.Tensor, frequencies: int) -> torch.Tensor:
    """Sin/cos features of day-of-year at periods 365, 365/2, … (…, 2·frequencies)."""
    k = 2.0 ** torch.arange(frequencies, dtype=doy.dtype, device=doy.device)
    angle = 2 * math.pi * doy[..., None] * k / 365.25
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=-1)


class PixelStem(nn.Module):
    """Per-date spatial convolutions shared over time: pixel MLP + depthwise 3×3 (speckle/edges)."""

    def __init__(self, channels_in: int, width: int):
        super().__init__()
        self.width = width
        self.net = nn.Sequential(
            nn.Conv2d(channels_in, width, 1),
            nn.GELU(),
            nn.Conv2d(width, width, 3, padding=1, groups=width),
            nn.GELU(),
            nn.Conv2d(width, width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, C, H, W)
        """Per-date features of a (B, T, C, H, W) stack."""
        b, t = x.shape[:2]
        if t == 0:
            return x.new_zeros(b, 0, self.width, *x.shape[-2:])
        return self.net(x.flatten(0, 1)).unflatten(0, (b, t))


class TemporalAttentionPool(nn.Module):
    """Masked multi-head attention of learned queries over each pixel's dated tokens.

    Keys are the tokens themselves (their day-of-year encoding included) and values a linear
    map of them: with ~5 tokens per pixel and 10⁴–10⁵ pixels per batch, this is several times
    cheaper than ``nn.MultiheadAttention`` on CPU for the same masking semantics.
    """

    def __init__(self, width: int, heads: int, n_queries: int):
        super().__init__()
        self.heads = heads
        self.queries = nn.Parameter(0.1 * torch.randn(n_queries, heads, width // heads))
        self.value = nn.Linear(width, width)

    def forward(self, tokens: torch.Tensor, ignore: torch.Tensor) -> torch.Tensor:
        """tokens (P, n, C), ignore (P, n) bool → pooled (P, n_queries · C)."""
        p, n, c = tokens.shape
        keys = tokens.view(p, n, self.heads, c // self.heads)
        scores = torch.einsum("pnhc,qhc->pqhn", keys, self.queries) / math.sqrt(c // self.heads)
        scores = scores.masked_fill(ignore[:, None, None], float("-inf"))
        values = self.value(tokens).view(p, n, self.heads, c // self.heads)
        pooled = torch.einsum("pqhn,pnhc->pqhc", scores.softmax(-1), values)
        return pooled.reshape(p, -1)


def in_window(batch: dict, modality: str) -> torch.Tensor:
    """Dates (B, T) of ``modality`` ("s2", "s1") that are real and inside the chunk's window.

    These are the dates losses and scores use (the others are the encoder's temporal context).
    """
    valid = batch[f"{modality}_valid"]
    return valid & batch.get(f"{modality}_in_window", torch.ones_like(valid))


def usable(batch: dict, modality: str) -> torch.Tensor:
    """Observations (B, T, H, W) the encoder reads: real dates, finite values (and clear S2)."""
    ok = torch.isfinite(batch[modality]).all(dim=2) & batch[f"{modality}_valid"][..., None, None]
    return ok & batch["s2_mask"] if modality == "s2" else ok


def fitted(batch: dict, modality: str) -> torch.Tensor:
    """Observations (B, T, H, W) the losses and scores fit: usable and inside the window."""
    return usable(batch, modality) & in_window(batch, modality)[..., None, None]


def cell_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Dated per-pixel features the field cells are fitted to, and where they are observed.

    The features (B, T, 11, H, W) are each usable S2 date's bands and NDVI, 0 where not observed;
    the mask is (B, T, H, W).
    """
    s2, observed = batch["s2"], usable(batch, "s2")
    red, nir = s2[:, :, S2_RED], s2[:, :, S2_NIR]
    x = torch.cat([s2, ((nir - red) / (nir + red))[:, :, None]], dim=2)
    return torch.where(observed[:, :, None], x.nan_to_num(), 0.0), observed


def s2_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised S2 stem input (B, T, 15, H, W) and its usable mask (B, T, H, W)."""
    s2, ok = batch["s2"], usable(batch, "s2")
    centre = s2.new_tensor(S2_CENTRE)[:, None, None]
    spread = s2.new_tensor(S2_SPREAD)[:, None, None]
    bands = torch.where(ok[:, :, None], (s2.nan_to_num() - centre) / spread, 0.0)
    ang = torch.deg2rad(batch["s2_angles"])
    geometry = torch.stack(
        [ang[..., 0].cos(), ang[..., 1].cos(), ang[..., 2].cos(), ang[..., 2].sin()], dim=-1
    )
    geometry = geometry[..., None, None].expand(*geometry.shape, *s2.shape[-2:])
    return torch.cat([bands, ok[:, :, None].to(s2.dtype), geometry], dim=2), ok


def s1_inputs(batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Standardised S1 stem input (B, T', 4, H, W) and its usable mask (B, T', H, W)."""
    s1, ok = batch["s1"], usable(batch, "s1")
    centre = s1.new_tensor(S1_CENTRE)[:, None, None]
    spread = s1.new_tensor(S1_SPREAD)[:, None, None]
    db = torch.where(ok[:, :, None], (s1.nan_to_num() - centre) / spread, 0.0)
    inc = (batch["s1_incidence"].nan_to_num(INCIDENCE_CENTRE) - INCIDENCE_CENTRE) / INCIDENCE_SPREAD
    return torch.cat([db, inc[:, :, None], ok[:, :, None].to(s1.dtype)], dim=2), ok


class ChunkEncoder(nn.Module):
    """Chunk encoder: dated S2 and S1 stacks → one embedding per chunk.

    Spatial stems per date → per-pixel temporal attention pooling (day-of-year encoded, masked;
    ``pool_queries`` learned queries) → per-pixel features → one embedding per chunk: the field
    slots pooled from the pixels over cells fitted to the chunk's dated inputs, then strided
    convolutions for the chunk-wide features and the exclusive residual latents.

    A learned always-visible token lets pixels with no usable observation (overcast, no S1)
    still attend to something; the fused per-pixel features are also returned, projected to
    ``detail_channels``, as the optional high-resolution decoding detail.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        c = cfg.pixel_width
        self.cfg = cfg
        self.s2_stem = PixelStem(10 + 1 + 4, c)
        self.s1_stem = PixelStem(2 + 1 + 1, c)
        self.time = nn.Linear(2 * cfg.fourier_frequencies, c)
        self.modality = nn.Parameter(torch.zeros(2, c))
        self.empty = nn.Parameter(torch.zeros(c))
        self.pool = TemporalAttentionPool(c, cfg.attention_heads, n_queries=cfg.pool_queries)
        self.fuse = nn.Sequential(nn.Linear(cfg.pool_queries * c, c), nn.GELU(), nn.Linear(c, c))
        w, g = cfg.conv_width, cfg.latent_grid
        self.compress = nn.Sequential(
            nn.Conv2d(c, w, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.GELU(),
            nn.Conv2d(w, w, 3, stride=2, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(g),
            nn.Flatten(),
            nn.Linear(w * g * g, cfg.embedding_dim - cfg.slot_code_dim),
        )
        self.slots = SlotPooling(
            c,
            cfg.field_slots,
            cfg.slot_features,
            cfg.slot_iterations,
            cfg.cell_fit_steps,
            power=cfg.slot_power,
        )
        self.detail = nn.Conv2d(c, cfg.detail_channels, 1) if cfg.detail_channels else None

    def _tokens(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        x2, ok2 = s2_inputs(batch)
        x1, ok1 = s1_inputs(batch)
        f = self.cfg.fourier_frequencies
        t2 = self.time(fourier_doy(batch["s2_doy"], f)) + self.modality[0]
        t1 = self.time(fourier_doy(batch["s1_doy"], f)) + self.modality[1]
        tokens = torch.cat(
            [self.s2_stem(x2) + t2[..., None, None], self.s1_stem(x1) + t1[..., None, None]], 1
        )
        usable = torch.cat([ok2, ok1], dim=1)  # (B, T + T', H, W)
        b, n, c, h, w = tokens.shape
        tokens = tokens.permute(0, 3, 4, 1, 2).reshape(b * h * w, n, c)
        usable = usable.permute(0, 2, 3, 1).reshape(b * h * w, n)
        tokens = torch.cat([self.empty.expand(b * h * w, 1, c), tokens], dim=1)
        usable = torch.cat([usable.new_ones(b * h * w, 1), usable], dim=1)
        return tokens, ~usable

    def forward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Embedding (B, embedding_dim) and detail features (B, detail_channels, H, W)."""
        s2: torch.Tensor = batch["s2"]
        b, h, w = s2.shape[0], *s2.shape[-2:]
        tokens, ignore = self._tokens(batch)
        pixels = self.fuse(self.pool(tokens, ignore))  # (B·H·W, C)
        pixels = pixels.reshape(b, h, w, -1).permute(0, 3, 1, 2)
        detail = self.detail(pixels) if self.detail is not None else None
        slots = self.slots(pixels, *cell_inputs(batch))
        return torch.cat([slots, self.compress(pixels)], dim=1), detail
