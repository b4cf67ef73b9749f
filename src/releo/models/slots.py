"""Field slots: a chunk's parcels as K slots (centre, power, features) in the embedding.

The encoder pools the per-pixel features into slots by a soft SLIC (k-means over position and
learned clustering features, started on a lattice), so every slot is a patch of similar pixels
— a parcel or a piece of one — whatever the layout. The decoder draws the slots back anywhere
by a soft power diagram of their centres. Both are local operations: what is learned on a few
training places carries over to the parcels of a new one, which a learned global map from z to
a picture does not (it memorises the training layouts).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.models.config import SLOT_GEOMETRY


def slot_lattice(side: int) -> torch.Tensor:
    """Centres (side², 2) of a side × side lattice over the unit square, row by row (y-major)."""
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    return torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).reshape(-1, 2)


def power_diagram(
    query: torch.Tensor, centre: torch.Tensor, power: torch.Tensor, sharpness: torch.Tensor
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
    return torch.stack(pixel_xy(torch.arange(h * w), h, w, like.dtype), -1)


class SlotPooling(nn.Module):
    """Per-pixel features (B, C, H, W) → slot code (B, K · (3 + features)): each slot's centre,
    power and the mean of its pixels' slot features, by ``iterations`` soft k-means steps."""

    def __init__(self, channels: int, slots: int, features: int, cluster: int, iterations: int):
        super().__init__()
        self.side = round(slots**0.5)
        self.iterations = iterations
        self.register_buffer("lattice", slot_lattice(self.side), persistent=False)
        self.cluster = nn.Conv2d(channels, cluster, 1)
        self.features = nn.Conv2d(channels, features, 1)
        self.power = nn.Linear(cluster + features, 1)
        self.log_sharpness = nn.Parameter(torch.tensor(3.0))
        self.log_affinity = nn.Parameter(torch.tensor(0.0))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        b, _, h, w = pixels.shape
        cluster_map = self.cluster(pixels)
        cluster = cluster_map.flatten(2).transpose(1, 2)  # (B, H·W, E)
        values = self.features(pixels).flatten(2).transpose(1, 2)  # (B, H·W, F)
        position = pixel_centres(h, w, pixels).expand(b, -1, -1) * self.side
        centre = (self.lattice * self.side).expand(b, -1, -1)
        slot_cluster = F.adaptive_avg_pool2d(cluster_map, self.side).flatten(2).transpose(1, 2)
        for _ in range(self.iterations):
            logits = -torch.cdist(position, centre).pow(2) * self.log_sharpness.exp()
            logits = logits - torch.cdist(cluster, slot_cluster).pow(2) * self.log_affinity.exp()
            member = logits.softmax(-1).transpose(1, 2)  # (B, K, H·W)
            total = member.sum(-1, keepdim=True) + 1e-6
            centre = member @ position / total
            slot_cluster = member @ cluster / total
        slot_values = member @ values / total
        power = self.power(torch.cat([slot_cluster, slot_values], -1))
        return torch.cat([centre / self.side, power, slot_values], -1).flatten(1)


class FieldSlots(nn.Module):
    """Slot code (B, K · (3 + features)) → slot features (B, N, features) at chunk-relative
    x, y (B, N): each query takes the features of the slots whose power cells hold it.

    Parcels are convex cells (close to a Voronoi tessellation of their centres), so a centre and
    a power per slot draw a boundary sharply at any resolution; the sharpness is learned.
    """

    def __init__(self, slots: int, features: int):
        super().__init__()
        self.side = round(slots**0.5)
        self.slots, self.features = slots, features
        self.log_sharpness = nn.Parameter(torch.tensor(3.0))

    def forward(self, code: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        slots = code.reshape(code.shape[0], self.slots, SLOT_GEOMETRY + self.features)
        query = torch.stack([x, y], dim=-1) * self.side
        member = power_diagram(
            query, slots[..., :2] * self.side, slots[..., 2], self.log_sharpness.exp()
        )
        return member @ slots[..., SLOT_GEOMETRY:]
