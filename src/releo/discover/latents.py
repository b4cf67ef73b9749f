"""What the trained model says about every chunk.

Exclusive residual latents, decoded residuals and physical variables at sampled pixels and the
sensors' dates, and how much of each modality's signal the residuals carry.

Each chunk place decodes the same pixel sample in every window, so a pixel's (and a
field's) series runs across windows: the model is asked at the S2 dates (clear or not) and
the S1 dates of each window, with that window's embedding — as it would be in production.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from releo.data.chunks import ChunkDataset, collate_chunks, window_only
from releo.discover.fields import Fields
from releo.models import VARIABLES, PhysicsAutoencoder
from releo.models.autoencoder import gather_pixels
from releo.models.encoder import fitted
from releo.models.forward import s1_backscatter_db, s2_reflectance
from releo.models.slots import pixel_xy

S2_RESIDUALS = tuple(f"res_b{i}" for i in range(10))
S1_RESIDUALS = ("res_vv", "res_vh")
BATCH = 8


@dataclass
class VarianceSums:
    """Running sums for R² of the observations against physics with and without residuals."""

    n: np.ndarray
    total: np.ndarray
    squares: np.ndarray
    without: np.ndarray
    with_residual: np.ndarray

    @classmethod
    def zeros(cls, channels: int) -> VarianceSums:
        """Empty sums over ``channels`` channels."""
        return cls(*(np.zeros(channels) for _ in range(5)))

    def add(self, obs: torch.Tensor, physics: torch.Tensor, residual: torch.Tensor) -> None:
        """Accumulate a batch of observations and their physics and residual parts."""
        o, p, r = (v.double().numpy() for v in (obs, physics, residual))
        self.n += o.shape[0]
        self.total += o.sum(0)
        self.squares += (o**2).sum(0)
        self.without += ((o - p) ** 2).sum(0)
        self.with_residual += ((o - p - r) ** 2).sum(0)

    def summary(self) -> dict:
        """R² of physics alone and of physics + residual (channels pooled), and their difference.

        The difference is the share of the signal's variance that only the residuals explain.
        """
        if not self.n.sum():
            return {"observations": 0}
        sst = float(np.sum(self.squares - self.total**2 / np.maximum(self.n, 1)))
        without = 1 - float(self.without.sum()) / sst
        with_residual = 1 - float(self.with_residual.sum()) / sst
        return {
            "observations": int(self.n[0]),
            "r2_physics_only": without,
            "r2_physics_plus_residual": with_residual,
            "explained_variance_share_of_residual": with_residual - without,
        }


@dataclass
class ModelOutputs:
    """Tables of :func:`extract`."""

    chunks: pd.DataFrame  # one row per chunk: its place, window, split and latents
    s2: pd.DataFrame  # one row per sampled pixel and S2 date
    s1: pd.DataFrame  # one row per sampled pixel and S1 date
    variance: dict = field(default_factory=dict)  # per modality, on held-out chunks


def pixel_sample(index: pd.DataFrame, n: int, seed: int) -> dict[tuple[int, int], np.ndarray]:
    """The same ``n`` pixels (flat indices) of each chunk place in every window."""
    out = {}
    for row in index.drop_duplicates(["row", "col"]).itertuples(index=False):
        size = int(row.size_px) ** 2
        rng = np.random.default_rng([seed, int(row.row), int(row.col)])
        out[(int(row.row), int(row.col))] = np.sort(rng.permutation(size)[: min(n, size)])
    return out


def _window_times(cube: xr.Dataset, start: pd.Timestamp, end: pd.Timestamp) -> np.ndarray:
    # The same selection as ChunkDataset, so the dates line up with its tensors.
    times = slice(start, end + pd.Timedelta(hours=23, minutes=59))
    return cube.time.sel(time=times).values.astype("datetime64[D]")


def _expand(space: torch.Tensor, values: torch.Tensor, n_t: int) -> tuple[torch.Tensor, ...]:
    b, q = space.shape[:2]
    space_t = space[:, :, None].expand(-1, -1, n_t, -1).reshape(b, q * n_t, -1)
    return space_t, values[:, None].expand(b, q, n_t).reshape(b, q * n_t)


def _records(part, idx, dates_per_chunk, keep, values: dict[str, torch.Tensor], fields):
    """Rows (chunk, pixel, date) where ``keep`` holds, with ``values`` as columns."""
    q = idx.shape[1]
    n_t = keep.shape[1] // q
    chunk_i, flat = np.nonzero(keep.numpy())
    pix, date_i = flat // n_t, flat % n_t
    size = part["size_px"].to_numpy()[chunk_i]
    pixel = idx.numpy()[chunk_i, pix]
    py = part["y0"].to_numpy()[chunk_i] + pixel // size
    px = part["x0"].to_numpy()[chunk_i] + pixel % size
    table = {
        "chunk_id": part["chunk_id"].to_numpy()[chunk_i],
        "split": part["split"].to_numpy()[chunk_i],
        "py": py,
        "px": px,
        "field": fields.labels[py, px],
        "sample_rank": pix,
        "date": np.array([dates_per_chunk[c][d] for c, d in zip(chunk_i, date_i, strict=True)]),
    }
    for name, tensor in values.items():
        table[name] = tensor.numpy()[chunk_i, flat]
    return table


@torch.no_grad()
def extract(
    model: PhysicsAutoencoder,
    s2: xr.Dataset,
    s1: xr.Dataset,
    index: pd.DataFrame,
    fields: Fields,
    *,
    decode_pixels: int,
    variance_pixels: int,
    heldout_splits: tuple[str, ...],
    seed: int,
) -> ModelOutputs:
    """Encode every chunk of ``index`` and decode its pixel sample at its S2 and S1 dates."""
    model.eval()
    dataset = ChunkDataset(s2, s1, index, context_days=model.cfg.context_days)
    samples = pixel_sample(index, decode_pixels, seed)
    r = model.cfg.residual_dim
    chunk_rows: list[dict[str, Any]] = []
    s2_rows: list[pd.DataFrame] = []
    s1_rows: list[pd.DataFrame] = []
    var_s2, var_s1 = VarianceSums.zeros(10), VarianceSums.zeros(2)
    for start in range(0, len(dataset), BATCH):
        part = index.iloc[start : start + BATCH].reset_index(drop=True)
        items = [dataset[start + i] for i in range(len(part))]
        z, detail = model.encode_with_detail(collate_chunks(items))
        batch = collate_chunks([window_only(item) for item in items])  # decoded at these dates
        latents = z[:, -2 * r :].numpy()
        for i, row in enumerate(part.itertuples(index=False)):
            columns = ("chunk_id", "split", "row", "col", "window", "y0", "x0", "size_px")
            record = {k: getattr(row, k) for k in columns}
            record.update(start=row.start, end=row.end)
            record.update({f"s2_latent_{k}": float(latents[i, k]) for k in range(r)})
            record.update({f"s1_latent_{k}": float(latents[i, r + k]) for k in range(r)})
            chunk_rows.append(record)
        h, w = batch["s2"].shape[-2:]
        idx = torch.as_tensor(np.stack([samples[(row.row, row.col)] for row in part.itertuples()]))
        x, y = pixel_xy(idx, h, w, z.dtype)
        space = model.decoder.space_features(z, x, y, detail)
        heldout = torch.tensor(part["split"].isin(heldout_splits).to_numpy())
        in_variance = heldout[:, None] & (torch.arange(idx.shape[1]) < variance_pixels)[None]
        for modality, cube, rows, sums in (
            ("s2", s2, s2_rows, var_s2),
            ("s1", s1, s1_rows, var_s1),
        ):
            n_t = batch[modality].shape[1]
            if n_t == 0:
                continue
            dates = [_window_times(cube, p.start, p.end) for p in part.itertuples()]
            space_t, t = _expand(space, batch[f"{modality}_doy"], n_t)
            dists = model.decoder.variables(space_t, t)
            medians = {name: dists[name].median for name in VARIABLES}
            residual = model.decoder.residuals(z, space_t, t, modality)
            valid = _expand(space, batch[f"{modality}_valid"], n_t)[1]
            usable = fitted(batch, modality)  # the batch holds the window's dates only
            seen = gather_pixels(usable, idx).reshape(valid.shape) & valid
            names = S2_RESIDUALS if modality == "s2" else S1_RESIDUALS
            values = {"clear": seen, **medians}
            values.update({n: residual[..., k] for k, n in enumerate(names)})
            rows.append(pd.DataFrame(_records(part, idx, dates, valid, values, fields)))
            chosen = seen & in_variance[:, :, None].expand(-1, -1, n_t).reshape(seen.shape)
            if chosen.any():
                obs = gather_pixels(batch[modality], idx).reshape(*seen.shape, -1)[chosen]
                physics = _physics(modality, batch, idx, medians, chosen, n_t)
                sums.add(obs, physics, residual[chosen])
    return ModelOutputs(
        pd.DataFrame(chunk_rows),
        _concat(s2_rows, S2_RESIDUALS),
        _concat(s1_rows, S1_RESIDUALS),
        {"s2": var_s2.summary(), "s1": var_s1.summary()},
    )


def _physics(modality, batch, idx, medians, chosen, n_t) -> torch.Tensor:
    """PROSAIL bands or WCM dB of the decoded medians at the chosen queries."""
    b, q = idx.shape
    if modality == "s2":
        angles = batch["s2_angles"][:, None].expand(b, q, n_t, 3).reshape(b, q * n_t, 3)
        platform = batch["s2_platform"][:, None].expand(b, q, n_t).reshape(b, q * n_t)
        values = {k: v[chosen] for k, v in medians.items()}
        return s2_reflectance(values, angles[chosen], platform[chosen], fused=False)
    incidence = gather_pixels(batch["s1_incidence"], idx).reshape(b, q * n_t)[chosen]
    return s1_backscatter_db(medians["lai"][chosen], medians["soil_moisture"][chosen], incidence)


def _concat(parts: list[pd.DataFrame], residuals: tuple[str, ...]) -> pd.DataFrame:
    if parts:
        return pd.concat(parts, ignore_index=True)
    columns = ["chunk_id", "split", "py", "px", "field", "sample_rank", "date", "clear"]
    return pd.DataFrame(columns=[*columns, *VARIABLES, *residuals])
