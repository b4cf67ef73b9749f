"""Field slots: a chunk's parcels as K slots (centre, power, features) in the embedding.

The encoder fits, per chunk, the power diagram whose cells are the most homogeneous in its
per-pixel features (started from a SLIC), so every slot is a convex patch of similar pixels —
a parcel or a piece of one — whatever the layout, and pools the slot features over those cells.
The decoder draws the same cells back anywhere from their centres and powers. Both are local
operations: what is learned on a few training places carries over to the parcels of a new one,
which a learned global map from z to a picture does not (it memorises the training layouts).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.models.config import SLOT_GEOMETRY

CELL_SHARPNESS = 40.0  # of the power cells, per squared lattice spacing: ~1 px soft boundaries
SLIC_POSITION_WEIGHT = 10.0  # the SLIC's weight of squared distance vs standardised features
FIT_POOL = 2  # cells are fitted on 2 × 2-pixel means: 2x faster, measured 0.59 vs 0.58 (LAI)
FIT_LR = 0.1  # Adam step of the cell fit, in lattice spacings (centres) and power units


def slot_lattice(side: int) -> torch.Tensor:
    """Centres (side², 2) of a side × side lattice over the unit square, row by row (y-major)."""
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    return torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).reshape(-1, 2)


def power_diagram(
    query: torch.Tensor, centre: torch.Tensor, power: torch.Tensor, sharpness: float
) -> torch.Tensor:
    """Soft membership (B, N, K) of query points (B, N, 2) in the cells of slots with
    centres (B, K, 2) and powers (B, K); distances in lattice spacings (centre units)."""
    distance2 = torch.cdist(query, centre).pow(2)
    return (power[:, None, :] - distance2 * sharpness).softmax(-1)


def pixel_xy(
    idx: torch.Tensor, h: int, w: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-relative x, y of the pixel centres at flat (row by row) indices ``idx`` of an
    h × w chunk: (i + 0.5) / size, the decoder's convention."""
    x, y = (idx % w + 0.5) / w, (idx // w + 0.5) / h
    return (x, y) if dtype is None else (x.to(dtype), y.to(dtype))


def pixel_centres(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Chunk-relative (x, y) of every pixel centre, (H·W, 2), row by row."""
    return torch.stack(pixel_xy(torch.arange(h * w, device=like.device), h, w, like.dtype), -1)


def standardised(pixels: torch.Tensor) -> torch.Tensor:
    """Per-pixel features (B, C, H, W) standardised per chunk and channel."""
    mean = pixels.mean((2, 3), keepdim=True)
    lone = pixels.shape[-2] * pixels.shape[-1] == 1  # a point's series: no spread, not NaN
    spread = pixels.std((2, 3), keepdim=True, correction=0 if lone else 1)
    return (pixels - mean) / (spread + 1e-6)


def slic_centres(features: torch.Tensor, side: int, iterations: int) -> torch.Tensor:
    """Cluster centres (B, side², 2), in lattice spacings, of a SLIC (k-means over position and
    features, started on the side × side lattice) of per-pixel features (B, C, H, W)."""
    b, _, h, w = features.shape
    values = features.flatten(2).transpose(1, 2)
    position = pixel_centres(h, w, features).expand(b, -1, -1) * side
    centre = (slot_lattice(side) * side).to(features).expand(b, -1, -1)
    cluster = F.adaptive_avg_pool2d(features, side).flatten(2).transpose(1, 2)
    for _ in range(iterations):
        logits = -torch.cdist(position, centre).pow(2) * SLIC_POSITION_WEIGHT
        member = (logits - torch.cdist(values, cluster).pow(2)).softmax(-1).transpose(1, 2)
        total = member.sum(-1, keepdim=True) + 1e-6
        centre, cluster = member @ position / total, member @ values / total
    return centre


def fit_power_cells(
    features: torch.Tensor, side: int, steps: int, iterations: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Centres (B, side², 2) and powers (B, side²) of the power diagram whose cells are the most
    homogeneous in the per-pixel features (B, C, H, W): the k-means energy with power-diagram
    memberships (at ``CELL_SHARPNESS``), minimised by ``steps`` Adam steps from a SLIC.

    A per-chunk optimisation, not a learned map: the cells the decoder draws are the ones the
    slot features are averaged over, on any layout. Parcels are convex, so power cells can
    follow them; a SLIC's clusters cannot be redrawn from their centres alone (measured on the
    default site: truth LAI averaged over the decoder's cells, 0.93 RMSE with the SLIC's
    centres and a learned power, 0.59 with fitted cells, 0.13 over the true parcels).
    """
    features = features.detach()
    if min(features.shape[-2:]) >= FIT_POOL:  # a lone pixel (a point's series) stays as it is
        features = F.avg_pool2d(features, FIT_POOL)
    b, _, h, w = features.shape
    values = features.flatten(2).transpose(1, 2)
    position = pixel_centres(h, w, features).expand(b, -1, -1) * side
    centre = slic_centres(features, side, iterations).clone().requires_grad_(True)
    power = features.new_zeros(b, side * side).requires_grad_(True)
    optimiser = torch.optim.Adam([centre, power], lr=FIT_LR)
    with torch.enable_grad():
        for _ in range(steps):
            optimiser.zero_grad()
            member = power_diagram(position, centre, power, CELL_SHARPNESS)
            total = member.sum(1)[..., None] + 1e-6
            means = member.transpose(1, 2) @ values / total
            energy = (member * torch.cdist(values, means).pow(2)).sum(-1).mean(-1).sum()
            energy.backward()
            optimiser.step()
    return centre.detach(), power.detach()


class SlotPooling(nn.Module):
    """Per-pixel features (B, C, H, W) → slot code (B, K · (3 + features)): the centre and power
    of each slot's cell (fitted to the chunk, :func:`fit_power_cells`) and the mean of the
    slot features over the cell, exactly as :class:`FieldSlots` draws it back."""

    def __init__(self, channels: int, slots: int, features: int, iterations: int, fit_steps: int):
        super().__init__()
        self.side = round(slots**0.5)
        self.iterations, self.fit_steps = iterations, fit_steps
        self.features = nn.Conv2d(channels, features, 1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixels.shape
        centre, power = fit_power_cells(
            standardised(pixels), self.side, self.fit_steps, self.iterations
        )
        position = pixel_centres(h, w, pixels).expand(b, -1, -1) * self.side
        member = power_diagram(position, centre, power, CELL_SHARPNESS)
        values = self.features(pixels).flatten(2).transpose(1, 2)  # (B, H·W, F)
        member = member.transpose(1, 2)
        slot_values = member @ values / (member.sum(-1, keepdim=True) + 1e-6)
        return torch.cat([centre / self.side, power[..., None], slot_values], -1).flatten(1)


class FieldSlots(nn.Module):
    """Slot code (B, K · (3 + features)) → slot features (B, N, features) at chunk-relative
    x, y (B, N): each query takes the features of the slots whose power cells hold it.

    Parcels are convex cells (close to a Voronoi tessellation of their centres), so a centre and
    a power per slot draw a boundary sharply at any resolution, with the sharpness the encoder
    fitted the cells at.
    """

    def __init__(self, slots: int, features: int):
        super().__init__()
        self.side = round(slots**0.5)
        self.slots, self.features = slots, features

    def forward(self, code: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        slots = code.reshape(code.shape[0], self.slots, SLOT_GEOMETRY + self.features)
        query = torch.stack([x, y], dim=-1) * self.side
        member = power_diagram(query, slots[..., :2] * self.side, slots[..., 2], CELL_SHARPNESS)
        return member @ slots[..., SLOT_GEOMETRY:]
