"""How much of a 10 m LAI map can 224 embedding features carry to a place never seen?

Isolates the spatial part of decoding from the physics: the simulator's true LAI maps of 1 km
chunks (one per place and 10-day window, the default site's scene enlarged to ``--site-km``
so that there are several training places) are encoded and decoded by two designs with the
same 224 common features, trained on half of the places (noisy maps in, true maps out) and
scored on the others:

- ``global``: the previous design, strided convolutions → one linear layer to z → a smooth
  4 × 4 → 16 × 16 upsampled grid plus 64 field slots placed by a linear map of z;
- ``slots``: releo's field slots (``releo.models.slots``), pooled from the pixels by a soft
  SLIC and drawn back as a power diagram, plus chunk-wide features.

Next to them, what no 224-number code of these kinds can beat: the means of a fixed lattice of
cells, a bilinear 16 × 16 field of the chunk's own means (256 numbers), and the per-parcel
means (one number per parcel, with perfect boundaries).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/embedding_capacity.py

Writes benchmarks/results/embedding_capacity.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.config import load_params
from releo.data.simulate import SimulationConfig
from releo.data.simulate.scene import Scene
from releo.models import ModelConfig
from releo.models.decoder import mlp, sample_map
from releo.models.slots import FieldSlots, SlotPooling, pixel_xy, slot_lattice
from report import report

CHUNK_PX, WINDOW_DAYS, NOISE = 100, 10, 0.2


def lai_maps(site_km: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """True LAI at each 10-day window's middle for every 1 km place: maps (P, W, 100, 100),
    parcel ids (P, 100, 100) and the place numbers."""
    site = load_params().site.model_dump()
    cfg = SimulationConfig(**{**site, "width_m": site_km * 1000.0, "height_m": site_km * 1000.0})
    scene = Scene.build(cfg, cfg.end_date)
    first = np.datetime64(cfg.start_date)
    n_days = (np.datetime64(cfg.end_date) - first).astype(int) + 1
    mids = first + np.arange(WINDOW_DAYS // 2, n_days, WINDOW_DAYS).astype("timedelta64[D]")
    zones, parcel = scene.parcels.zone, scene.parcels.parcel_id
    lai = scene.canopy(mids)["lai"][:, zones]  # (W, ny, nx)
    places, parcel_maps = [], []
    for r in range(0, zones.shape[0] - CHUNK_PX + 1, CHUNK_PX):
        for c in range(0, zones.shape[1] - CHUNK_PX + 1, CHUNK_PX):
            places.append(lai[:, r : r + CHUNK_PX, c : c + CHUNK_PX])
            parcel_maps.append(parcel[r : r + CHUNK_PX, c : c + CHUNK_PX])
    maps = torch.tensor(np.stack(places), dtype=torch.float32)
    return maps, torch.tensor(np.stack(parcel_maps)), np.arange(len(places))


class GlobalCode(nn.Module):
    """The previous design: a learned global map from the chunk to z and from z to a picture."""

    def __init__(self, common: int):
        super().__init__()
        self.encode = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(),
            nn.Conv2d(64, 64, 3, 2, 1), nn.GELU(), nn.Conv2d(64, 64, 3, 2, 1), nn.GELU(),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, common),
        )  # fmt: skip
        self.to_grid = nn.Linear(common, 32 * 16)
        self.refine = nn.Sequential(
            nn.Conv2d(32, 32, 3, padding=1), nn.GELU(), nn.Conv2d(32, 32, 3, padding=1)
        )
        self.place_slots = nn.Linear(common, 64 * 11)
        self.slots = FieldSlots(64, 8)
        self.chunk_wide = nn.Linear(common, 64)
        self.head = mlp(32 + 8 + 64, 128, 1)

    def forward(self, maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = self.encode(maps[:, None])
        grid = self.to_grid(z).reshape(-1, 32, 4, 4)
        grid = F.interpolate(grid, size=16, mode="bilinear", align_corners=False)
        code = self.place_slots(z).reshape(-1, 64, 11)
        # The previous slots moved at most one lattice step from a lattice: same here.
        side = 8
        centres = slot_lattice(side) + torch.tanh(code[..., :2]) / side
        code = torch.cat([centres, code[..., 2:]], -1)
        parts = [
            sample_map(self.refine(grid), x, y),
            self.slots(code.flatten(1), x, y),
            self.chunk_wide(z)[:, None].expand(-1, x.shape[1], -1),
        ]
        return self.head(torch.cat(parts, -1))[..., 0]


class SlotCode(nn.Module):
    """releo's design: field slots pooled over cells fitted to the input map, drawn back as the
    same cells."""

    def __init__(self, cfg: ModelConfig, common: int):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 32, 3, 1, 1), nn.GELU()
        )
        k, f = cfg.field_slots, cfg.slot_features
        self.pool = SlotPooling(
            32, k, f, cfg.slot_iterations, cfg.cell_fit_steps, power=cfg.slot_power
        )
        self.slots = FieldSlots(k, f, power=cfg.slot_power)
        self.chunk_wide = nn.Conv2d(32, common - cfg.slot_code_dim, 1)
        self.head = mlp(f + common - cfg.slot_code_dim, 128, 1)

    def forward(self, maps: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        pixels = self.stem(maps[:, None])
        observed = torch.ones_like(maps[:, None], dtype=torch.bool)
        code = self.pool(pixels, maps[:, None, None], observed)
        wide = self.chunk_wide(pixels).mean((2, 3))
        parts = [self.slots(code, x, y), wide[:, None].expand(-1, x.shape[1], -1)]
        return self.head(torch.cat(parts, -1))[..., 0]


def rmse_of(model: nn.Module, maps: torch.Tensor) -> float:
    idx = torch.arange(CHUNK_PX * CHUNK_PX)
    x, y = pixel_xy(idx, CHUNK_PX, CHUNK_PX)
    sq = 0.0
    with torch.no_grad():
        for block in maps.split(16):
            b = block.shape[0]
            pred = model(block, x.expand(b, -1), y.expand(b, -1))
            sq += float((pred - block.flatten(1)).pow(2).sum())
    return math.sqrt(sq / maps.numel())


def train(model: nn.Module, maps: torch.Tensor, steps: int, seed: int) -> float:
    gen = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, steps)
    n = CHUNK_PX * CHUNK_PX
    started = time.perf_counter()
    for _ in range(steps):
        batch = maps[torch.randint(0, len(maps), (8,), generator=gen)]
        q = torch.randint(0, n, (8, 2048), generator=gen)
        noisy = batch + NOISE * torch.randn(batch.shape, generator=gen)
        pred = model(noisy, *pixel_xy(q, CHUNK_PX, CHUNK_PX))
        loss = (pred - batch.flatten(1).gather(1, q)).pow(2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    return time.perf_counter() - started


def ceilings(maps: torch.Tensor, parcels: torch.Tensor, lattice_side: int) -> dict[str, float]:
    """RMSE of codes that know the map: lattice cell means, bilinear 16 × 16, parcel means
    (maps (P, W, H, W'), parcel ids (P, H, W'))."""
    m = maps.flatten(0, 1)[:, None]
    cells = F.interpolate(F.adaptive_avg_pool2d(m, lattice_side), size=CHUNK_PX, mode="nearest")
    smooth = F.interpolate(
        F.adaptive_avg_pool2d(m, 16), size=CHUNK_PX, mode="bilinear", align_corners=False
    )
    parcel_sq, counts = 0.0, []
    for place_maps, parcel in zip(maps, parcels, strict=True):
        _, label = torch.unique(parcel, return_inverse=True)
        label = label.flatten()
        counts.append(int(label.max()) + 1)
        for one in place_maps.flatten(1):
            n = torch.bincount(label).clamp(min=1)
            mean = torch.bincount(label, one) / n
            parcel_sq += float((one - mean[label]).pow(2).sum())
    return {
        f"lattice_{lattice_side}x{lattice_side}_means": float((cells - m).pow(2).mean().sqrt()),
        "bilinear_16x16_means": float((smooth - m).pow(2).mean().sqrt()),
        "parcel_means": math.sqrt(parcel_sq / m.numel()),
        "parcels_per_chunk": float(np.mean(counts)),
        "chunk_mean_only": float((m - m.mean((2, 3), keepdim=True)).pow(2).mean().sqrt()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--site-km", type=int, default=4, help="side of the simulated site")
    parser.add_argument("--steps", type=int, default=600, help="training steps per design")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    maps, parcels, places = lai_maps(args.site_km)
    order = np.random.default_rng(args.seed).permutation(places)
    train_places, held_out = order[: len(order) // 2], order[len(order) // 2 :]
    train_maps = maps[train_places].flatten(0, 1)
    test_maps = maps[held_out].flatten(0, 1)
    cfg = ModelConfig()
    common = cfg.embedding_dim - 2 * cfg.residual_dim
    rows = {}
    for name, model in (("global", GlobalCode(common)), ("slots", SlotCode(cfg, common))):
        seconds = train(model, train_maps, args.steps, args.seed)
        rows[name] = {
            "train_places_rmse": rmse_of(model, train_maps),
            "held_out_places_rmse": rmse_of(model, test_maps),
            "train_seconds": seconds,
        }
        print(name, json.dumps(rows[name]), flush=True)
    side = round(cfg.field_slots**0.5)
    results = {
        "site_km": args.site_km,
        "train_places": len(train_places),
        "held_out_places": len(held_out),
        "maps_per_place": maps.shape[1],
        "common_features": common,
        "field_slots": cfg.field_slots,
        "slot_features": cfg.slot_features,
        "steps": args.steps,
        "held_out_lai_std": float(test_maps.std()),
        "designs": rows,
        "ceilings_held_out": ceilings(maps[held_out], parcels[held_out], side),
        "generalisation_gap_global": rows["global"]["held_out_places_rmse"]
        - rows["global"]["train_places_rmse"],
        "generalisation_gap_slots": rows["slots"]["held_out_places_rmse"]
        - rows["slots"]["train_places_rmse"],
    }
    report("embedding_capacity", results)


if __name__ == "__main__":
    main()
