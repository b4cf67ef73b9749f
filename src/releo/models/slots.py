"""Field slots: a chunk's parcels as K slots (centre, optional power, features) in the embedding.

The encoder fits, per chunk, the Voronoi (or power) diagram whose cells are the most homogeneous
in the chunk's dated inputs (started from a SLIC), so every slot is a convex patch of similar
pixels — a parcel or a piece of one — whatever the layout, and pools the slot features over
those cells. The decoder draws the same cells back anywhere from their centres (and powers).
Both are local operations: what is learned on a few training places carries over to the
parcels of a new one, which a learned global map from z to a picture does not (it memorises
the training layouts).
"""

from __future__ import annotations

import hashlib
import warnings
from collections import OrderedDict
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.models.config import slot_geometry

CELL_SHARPNESS = 40.0  # of the power cells, per squared lattice spacing: ~1 px soft boundaries
SLIC_POSITION_WEIGHT = 10.0  # the SLIC's weight of squared distance vs standardised features
CELL_CACHE = 4096  # chunks whose fitted cells are memoised (~1 kB each)
FIT_LR = 0.1  # Adam step of the cell fit, in lattice spacings (centres) and power units


def slot_lattice(side: int) -> torch.Tensor:
    """Centres (side², 2) of a side × side lattice over the unit square, row by row (y-major)."""
    centres = (torch.arange(side, dtype=torch.float32) + 0.5) / side
    return torch.stack(torch.meshgrid(centres, centres, indexing="xy"), -1).reshape(-1, 2)


def power_diagram(
    query: torch.Tensor, centre: torch.Tensor, power: torch.Tensor, sharpness: float
) -> torch.Tensor:
    """Soft membership (B, N, K) of query points (B, N, 2) in the cells of slots.

    The slots have centres (B, K, 2) and powers (B, K); distances are in lattice spacings (centre
    units).
    """
    distance2 = torch.cdist(query, centre).pow(2)
    return (power[:, None, :] - distance2 * sharpness).softmax(-1)


def pixel_xy(
    idx: torch.Tensor, h: int, w: int, dtype: torch.dtype | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Chunk-relative x, y of the pixel centres at flat (row by row) indices ``idx``.

    For an h × w chunk: (i + 0.5) / size, the decoder's convention.
    """
    x, y = (idx % w + 0.5) / w, (idx // w + 0.5) / h
    return (x, y) if dtype is None else (x.to(dtype), y.to(dtype))


def pixel_centres(h: int, w: int, like: torch.Tensor) -> torch.Tensor:
    """Chunk-relative (x, y) of every pixel centre, (H·W, 2), row by row."""
    return torch.stack(pixel_xy(torch.arange(h * w, device=like.device), h, w, like.dtype), -1)


def slic_centres(features: torch.Tensor, side: int, iterations: int) -> torch.Tensor:
    """Cluster centres (B, side², 2), in lattice spacings, of a SLIC of per-pixel features.

    The SLIC is a k-means over position and features, started on the side × side lattice, of
    features (B, C, H, W).
    """
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


def fit_cells(
    values: torch.Tensor,
    observed: torch.Tensor,
    side: int,
    steps: int,
    iterations: int,
    power: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fit the cells most homogeneous in dated per-pixel features: centres and powers.

    ``values`` (B, D, C, H, W) are seen where ``observed`` (B, D, H, W). The energy is the
    masked k-means one (each date's cell means over its observed pixels) with power-diagram
    memberships, minimised by ``steps`` Adam steps from a SLIC of the features' mean over the
    observed dates; the cells sharpen from a quarter of ``CELL_SHARPNESS`` to it on the way
    (coarse boundaries first). Without ``power`` (the default, as ``model.slot_power``) the
    powers stay 0: Voronoi cells of the centres. Returns centres (B, side², 2) and powers
    (B, side²).

    A per-chunk optimisation, not a learned map: the decoder draws the same cells on any
    layout, and convex cells can follow convex parcels (accuracy: docs/experiments.md).
    """
    values, observed = values.detach(), observed.detach()
    b, _, c, h, w = values.shape
    weight = observed.to(values.dtype).flatten(2)  # (B, D, N)
    dated = values.flatten(3).transpose(2, 3) * weight[..., None]  # (B, D, N, C), 0 unobserved
    mean = dated.sum(1) / weight.sum(1).clamp(min=1)[..., None]  # (B, N, C)
    start = slic_centres(mean.transpose(1, 2).reshape(b, c, h, w), side, iterations)
    position = pixel_centres(h, w, values).expand(b, -1, -1) * side
    centre = start.clone().requires_grad_(True)
    powers = values.new_zeros(b, side * side).requires_grad_(power)
    optimiser = torch.optim.Adam([centre, powers] if power else [centre], lr=FIT_LR)
    square = (dated.pow(2).sum(-1) * weight).sum((1, 2))  # (B,): Σ observed |x|²
    with torch.enable_grad():
        for step in range(steps):
            optimiser.zero_grad()
            sharpness = CELL_SHARPNESS * (0.25 + 0.75 * step / max(steps - 1, 1))
            member = power_diagram(position, centre, powers, sharpness)  # (B, N, K)
            # Σ_d Σ_n Σ_k w m |x - μ|² = Σ w |x|² − Σ_d Σ_k |Σ_n w m x|² / Σ_n w m
            mass = weight @ member  # (B, D, K)
            moment = torch.einsum("bdnc,bnk->bdkc", dated, member)
            explained = (moment.pow(2).sum(-1) / (mass + 1e-6)).sum((1, 2))
            energy = ((square - explained) / weight.sum((1, 2)).clamp(min=1)).sum()
            energy.backward()
            optimiser.step()
    return centre.detach(), powers.detach()


def fit_power_cells(*args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Deprecated name of :func:`fit_cells`, with its old default ``power=True``."""
    warnings.warn(
        "releo.models.slots.fit_power_cells is deprecated: use fit_cells (Voronoi cells "
        "unless power=True)",
        DeprecationWarning,
        stacklevel=2,
    )
    if len(args) < 6:
        kwargs.setdefault("power", True)
    return fit_cells(*args, **kwargs)


class SlotPooling(nn.Module):
    """Per-pixel features (B, C, H, W) → slot code (B, K · (geometry + features)).

    Each slot's code is the centre (and with ``power`` the power) of its cell, fitted to the chunk's
    dated inputs (:func:`fit_cells`), and the mean of the slot features over the cell, exactly as
    :class:`FieldSlots` draws it back.

    The cells are a pure function of a chunk's inputs, so they are memoised by content (up to
    ``CELL_CACHE`` chunks): training revisits every chunk each epoch, and a fit at full
    resolution costs ~1 s per chunk.
    """

    def __init__(
        self,
        channels: int,
        slots: int,
        features: int,
        iterations: int,
        fit_steps: int,
        power: bool = True,
    ):
        super().__init__()
        self.side = round(slots**0.5)
        self.iterations, self.fit_steps, self.power = iterations, fit_steps, power
        self.features = nn.Conv2d(channels, features, 1)
        self._cells: OrderedDict[bytes, tuple[torch.Tensor, torch.Tensor]] = OrderedDict()
        self._single: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}

    def cells(self, values: torch.Tensor, observed: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Centres (B, K, 2) and powers (B, K) of each chunk's cells.

        From :meth:`fitted_cells`, or for 1 × 1-pixel chunks the single-pixel cells
        (:meth:`single_pixel_cells`).
        """
        b, h, w = values.shape[0], *values.shape[-2:]
        if h * w == 1:
            centre, power = self.single_pixel_cells(values.dtype)
            return centre.expand(b, -1, -1).to(values.device), power.expand(b, -1).to(values.device)
        return self.fitted_cells(values, observed)

    def single_pixel_cells(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres (1, K, 2) and powers (1, K) of any 1 × 1-pixel chunk, computed once per dtype.

        They are what :meth:`fitted_cells` gives such a chunk.

        One pixel has nothing to partition: standardised over its own dates its mean features
        are 0, so the SLIC sees position alone, and a k-means energy of one pixel does not
        depend on the cells (every cell holding it has it as its mean): its gradient vanishes
        and the Adam steps leave the cells where the SLIC put them. The fit's result is thus a
        function of the lattice only (the slots nearest the pixel's centre collapse onto it,
        the others away from it), and fitting it once on any 1 × 1 input gives it exactly;
        pooling over these cells returns the pixel's features, as the fit would.
        """
        if dtype not in self._single:
            values = torch.zeros(1, 1, 1, 1, 1, dtype=torch.float64)
            observed = torch.ones(1, 1, 1, 1, dtype=torch.bool)
            setting = (self.side, self.fit_steps, self.iterations, self.power)
            centres, powers = fit_cells(
                _standardised_dates(values[0], observed[0])[None], observed, *setting
            )
            self._single[dtype] = (centres.to(dtype), powers.to(dtype))
        return self._single[dtype]

    def fitted_cells(
        self, values: torch.Tensor, observed: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres (B, K, 2) and powers (B, K) of each chunk's fitted cells, memoised.

        Each chunk is fitted on its own, without the dates where nothing is observed (a
        batch's padding, overcast dates), standardised per channel over its observed
        pixel-dates (its own contrasts draw its cells), in float64: the fit amplifies
        rounding, so a chunk's cells must depend neither on its batch nor on the number of
        threads (in float32 either moved a stored embedding by up to 0.23).
        """
        setting = (self.side, self.fit_steps, self.iterations, self.power)
        out = []
        for v, o in zip(values, observed, strict=True):
            seen = o.flatten(1).any(1)
            v, o = v[seen], o[seen]
            key = _digest(v, o, *setting)
            if key not in self._cells:
                v = _standardised_dates(v.double(), o)
                centres, powers = fit_cells(v[None], o[None], *setting)
                self._cells[key] = (centres.to(values.dtype), powers.to(values.dtype))
                if len(self._cells) > CELL_CACHE:
                    self._cells.popitem(last=False)
            self._cells.move_to_end(key)
            out.append(self._cells[key])
        centres_parts, powers_parts = zip(*out, strict=True)
        return (
            torch.cat(centres_parts).to(values.device),
            torch.cat(powers_parts).to(values.device),
        )

    def forward(
        self, pixels: torch.Tensor, values: torch.Tensor, observed: torch.Tensor
    ) -> torch.Tensor:
        """Slot code of per-pixel features ``pixels`` pooled over cells fitted to dated inputs.

        The cells are fitted to ``values`` (B, D, C', H, W) where ``observed`` (B, D, H, W).
        """
        return self.pooled(pixels, *self.cells(values, observed))

    def pooled(
        self, pixels: torch.Tensor, centre: torch.Tensor, power: torch.Tensor
    ) -> torch.Tensor:
        """Slot code of per-pixel features ``pixels`` (B, C, H, W) pooled over given cells.

        The cells have centres (B, K, 2) and powers (B, K).
        """
        b, _, h, w = pixels.shape
        position = pixel_centres(h, w, pixels).expand(b, -1, -1) * self.side
        member = power_diagram(position, centre, power, CELL_SHARPNESS)
        values = self.features(pixels).flatten(2).transpose(1, 2)  # (B, H·W, F)
        member = member.transpose(1, 2)
        slot_values = member @ values / (member.sum(-1, keepdim=True) + 1e-6)
        geometry = [centre / self.side] + ([power[..., None]] if self.power else [])
        return torch.cat([*geometry, slot_values], -1).flatten(1)


def _standardised_dates(values: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
    """Dated features (D, C, H, W) standardised per channel over the observed pixel-dates.

    ``observed`` is (D, H, W); the features are 0 elsewhere.
    """
    weight = observed[:, None].to(values.dtype)
    count = weight.sum((0, 2, 3), keepdim=True).clamp(min=1)
    mean = (values * weight).sum((0, 2, 3), keepdim=True) / count
    spread = ((values - mean).pow(2) * weight).sum((0, 2, 3), keepdim=True).div(count).sqrt()
    return torch.where(observed[:, None], (values - mean) / (spread + 1e-6), 0.0)


def _digest(*parts) -> bytes:
    """Content key of tensors and numbers (cells of identical inputs are identical)."""
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.detach().cpu().contiguous()
            h.update(str((part.dtype, tuple(part.shape))).encode())
            h.update(part.numpy().tobytes())
        else:
            h.update(repr(part).encode())
    return h.digest()


class FieldSlots(nn.Module):
    """Slot code (B, K · (3 + features)) → slot features (B, N, features) at x, y (B, N).

    x, y are chunk-relative; each query takes the features of the slots whose power cells hold it.

    Parcels are convex cells (close to a Voronoi tessellation of their centres), so a centre and
    a power per slot draw a boundary sharply at any resolution, with the sharpness the encoder
    fitted the cells at.
    """

    def __init__(self, slots: int, features: int, power: bool = True):
        super().__init__()
        self.side = round(slots**0.5)
        self.slots, self.features, self.geometry = slots, features, slot_geometry(power)

    def forward(self, code: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Slot features at the queries ``x``, ``y``."""
        slots = code.reshape(code.shape[0], self.slots, self.geometry + self.features)
        query = torch.stack([x, y], dim=-1) * self.side
        power = slots[..., 2] if self.geometry == 3 else slots.new_zeros(slots.shape[:2])
        member = power_diagram(query, slots[..., :2] * self.side, power, CELL_SHARPNESS)
        return member @ slots[..., self.geometry :]
