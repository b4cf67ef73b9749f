"""Training and evaluation of the per-pixel inversion on a site's clear pixel-dates.

Pixel-dates belong to a split through the chunk index: a pixel-date is in ``split`` when a
chunk of that split covers its pixel and its date, so the baseline trains on the same places
as the chunk model and is scored on the same held-out ones.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from releo.data.contracts import MASK_CLEAR, PLATFORM, REFERENCE_LAI, S2_ANGLES, S2_BANDS, S2_MASK
from releo.data.errors import DataError
from releo.data.io import open_cube
from releo.data.site import open_site
from releo.data.spill import date_blocks
from releo.models.pixel import BaselineConfig, PixelInversion, predict_pixel_variables
from releo.physics.srf import platform_code

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class PixelDates:
    """Clear pixel-dates of a cube: flat indices into (time, y, x) and what was observed."""

    flat: np.ndarray  # (N,) int64, sorted
    bands: np.ndarray  # (N, 10) float32 reflectance
    angles: np.ndarray  # (N, 3) float32 sun zenith, view zenith, relative azimuth (degrees)
    platform: np.ndarray  # (N,) int64 SRF codes (releo.models.forward.platform_code)

    def __len__(self) -> int:
        return len(self.flat)


def _read_index(index: pd.DataFrame | PathLike) -> pd.DataFrame:
    if isinstance(index, pd.DataFrame):
        return index
    path = Path(index)
    if not path.is_file():
        raise DataError(f"{path}: chunk index not found; run the chunk stage first")
    return pd.read_parquet(path)


def split_mask(
    s2: xr.Dataset, index: pd.DataFrame, split: str, dates: slice = slice(None)
) -> np.ndarray:
    """Bool (time, y, x): the pixel-dates covered by the chunks of ``split`` in ``index``.

    Of the S2 ``dates`` only (a slice of the cube's times; default all).
    """
    missing = [c for c in ("split", "y0", "x0", "size_px", "start", "end") if c not in index]
    if missing:
        raise DataError(f"chunk index: missing column(s) {missing}; rerun the chunk stage")
    days = s2.time.values[dates].astype("datetime64[D]")
    out = np.zeros((len(days), s2.sizes["y"], s2.sizes["x"]), dtype=bool)
    for row in index[index["split"] == split].itertuples(index=False):
        start, end = np.datetime64(row.start, "D"), np.datetime64(row.end, "D")
        at = np.flatnonzero((days >= start) & (days <= end))
        y0, x0, n = int(row.y0), int(row.x0), int(row.size_px)
        out[at, y0 : y0 + n, x0 : x0 + n] = True
    return out


Selection = np.ndarray | Callable[[slice], np.ndarray]
"""Pixel-dates to consider: bool (time, y, x), or a function giving that array's rows for a
slice of dates (a selection as large as the cube is never held)."""


def _usable(s2: xr.Dataset, selection: Selection, dates: slice) -> tuple[np.ndarray, np.ndarray]:
    """Bool (t, y, x): the clear, finite pixel-dates of ``selection`` among ``dates``.

    With their bands (t, y, x, 10).
    """
    part = s2.isel(time=dates)
    bands = np.stack([part[b].values for b in S2_BANDS], axis=-1).astype(np.float32, copy=False)
    chosen = selection(dates) if callable(selection) else selection[dates]
    usable = chosen & (part[S2_MASK].values == MASK_CLEAR) & np.isfinite(bands).all(-1)
    return usable, bands


def clear_pixel_dates(
    s2: xr.Dataset, selection: Selection, max_samples: int | None = None, seed: int = 0
) -> PixelDates:
    """The clear pixel-dates (mask clear, every band finite) inside ``selection`` (time, y, x).

    At most ``max_samples`` of them, drawn without replacement with ``seed``. The cube is read
    by blocks of dates (twice when sampling: counting, then taking), so a lazily opened site
    is never held whole; the sample is the one drawn from all of them at once.
    """
    plane = s2.sizes["y"] * s2.sizes["x"]
    blocks = date_blocks(s2.sizes["time"], plane * len(S2_BANDS))
    picks = None
    if max_samples is not None:
        counts = [int(_usable(s2, selection, dates)[0].sum()) for dates in blocks]
        if sum(counts) > max_samples:
            # choice over positions = choice over the sorted indices themselves (same draws)
            picks = np.sort(np.random.default_rng(seed).choice(sum(counts), max_samples, False))
    flats = [np.zeros(0, np.int64)]
    bands = [np.zeros((0, len(S2_BANDS)), np.float32)]
    seen = 0
    for dates in blocks:
        usable, values = _usable(s2, selection, dates)
        local = np.flatnonzero(usable)
        if picks is not None:
            start, seen = seen, seen + len(local)
            lo, hi = np.searchsorted(picks, [start, seen])
            local = local[picks[lo:hi] - start]
        flats.append(dates.start * plane + local)
        bands.append(values.reshape(-1, len(S2_BANDS))[local])
    flat = np.concatenate(flats).astype(np.int64)
    t = flat // plane
    angles = np.stack([s2[a].values for a in S2_ANGLES], axis=-1).astype(np.float32)
    platforms = s2[PLATFORM].values if PLATFORM in s2.coords else ["S2A"] * s2.sizes["time"]
    codes = np.array([platform_code(str(p)) for p in platforms], dtype=np.int64)
    return PixelDates(flat=flat, bands=np.concatenate(bands), angles=angles[t], platform=codes[t])


def train_pixel_inversion(
    data_dir: PathLike,
    index: pd.DataFrame | PathLike,
    cfg: BaselineConfig | None = None,
    *,
    seed: int | None = None,
) -> tuple[PixelInversion, list[dict[str, float]]]:
    """Train the per-pixel inversion on ``cfg.samples`` clear pixel-dates of the train split.

    ``index`` is the chunk index (a DataFrame or ``chunks/index.parquet``); ``seed``
    overrides ``cfg.seed``. Returns the model (eval mode) and a history record every
    ``cfg.log_every`` steps (mean ``nll``, ``kl``, ``total`` since the last one, ``seconds``).
    Deterministic for a seed on a given machine and thread count.
    """
    cfg = cfg or BaselineConfig()
    seed = cfg.seed if seed is None else seed
    site = open_site(Path(data_dir), lazy=True)
    s2, chunks = site.s2, _read_index(index)
    sample = clear_pixel_dates(
        s2, functools.partial(split_mask, s2, chunks, "train"), cfg.samples, seed
    )
    if not len(sample):
        raise DataError(f"{site.root}: no clear S2 pixel-date in the train split")
    bands, angles = torch.from_numpy(sample.bands), torch.from_numpy(sample.angles)
    platform = torch.from_numpy(sample.platform)
    torch.manual_seed(seed)
    model = PixelInversion(cfg)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.steps)
    generator = torch.Generator().manual_seed(seed)
    history: list[dict[str, float]] = []
    sums: dict[str, float] = {}
    started = last = time.perf_counter()
    model.train()
    for step in range(1, cfg.steps + 1):
        idx = torch.randint(len(sample), (min(cfg.batch_size, len(sample)),), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        terms = model.loss(bands[idx], angles[idx], platform[idx])
        terms["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        optimizer.step()
        scheduler.step()
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if step % cfg.log_every == 0 or step == cfg.steps:
            n = step - (history[-1]["step"] if history else 0)
            now = time.perf_counter()
            record = {"step": step, **{k: v / n for k, v in sums.items()}}
            record.update(seconds=now - last, elapsed=now - started)
            history.append(record)
            sums, last = {}, now
    return model.eval(), history


@torch.no_grad()
def predict_cube_lai(model: PixelInversion, s2: xr.Dataset) -> xr.Dataset:
    """LAI median and standard deviation of every clear pixel-date of an S2 contract cube.

    ``lai`` and ``lai_std`` are (time, y, x), NaN elsewhere, with the cube's coordinates.
    """
    selection = np.ones((s2.sizes["time"], s2.sizes["y"], s2.sizes["x"]), dtype=bool)
    pixels = clear_pixel_dates(s2, selection)
    lai, std = predict_pixel_variables(model, pixels.bands, pixels.angles)["lai"]
    out = {}
    for name, values in (("lai", lai), ("lai_std", std)):
        grid = np.full(selection.size, np.nan, dtype=np.float32)
        grid[pixels.flat] = values
        out[name] = (("time", "y", "x"), grid.reshape(selection.shape))
    coords = {
        k: s2.coords[k] for k in ("time", "y", "x", PLATFORM, "spatial_ref") if k in s2.coords
    }
    return xr.Dataset(out, coords=coords)


def _at_s2_dates(cube: xr.DataArray, s2: xr.Dataset, flat: np.ndarray) -> np.ndarray:
    """Values of a daily or per-acquisition cube at S2 pixel-dates ``flat``; NaN if absent.

    ``flat``: sorted indices into (time, y, x). Read by blocks of dates: of a lazily opened
    cube, never all of it.
    """
    days = s2.time.values.astype("datetime64[D]").astype("datetime64[ns]")
    cube = cube.assign_coords(
        time=cube.time.values.astype("datetime64[D]").astype("datetime64[ns]")
    )
    plane = s2.sizes["y"] * s2.sizes["x"]
    out = np.full(len(flat), np.nan, np.float32)
    for dates in date_blocks(len(days), plane):
        lo, hi = np.searchsorted(flat, [dates.start * plane, dates.stop * plane])
        if hi > lo:
            part = cube.reindex(time=days[dates]).reindex(
                x=s2.x, y=s2.y, method="nearest", tolerance=1.0
            )
            out[lo:hi] = part.values.reshape(-1)[flat[lo:hi] - dates.start * plane]
    return out


def _errors(pred: np.ndarray, truth: np.ndarray, prefix: str) -> dict[str, float]:
    error = pred - truth
    ok = np.isfinite(error)
    if not ok.any():
        return {f"{prefix}_rmse_truth": math.nan, f"{prefix}_bias_truth": math.nan}
    e, t = error[ok].astype(np.float64), truth[ok].astype(np.float64)
    ss = float(((t - t.mean()) ** 2).sum())
    return {
        f"{prefix}_rmse_truth": float(np.sqrt((e**2).mean())),
        f"{prefix}_bias_truth": float(e.mean()),
        f"{prefix}_r2_truth": 1.0 - float((e**2).sum()) / ss if ss > 0 else math.nan,
    }


@torch.no_grad()
def evaluate_pixel_inversion(
    model: PixelInversion,
    data_dir: PathLike,
    index: pd.DataFrame | PathLike,
    split: str = "val",
    *,
    max_samples: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """LAI of the clear pixel-dates of ``split`` against the simulator truth, next to SNAP's.

    Keys: ``n_pixel_dates``; ``lai_rmse_truth``, ``lai_bias_truth``,
    ``lai_r2_truth`` and ``lai_coverage90_truth`` (share of truth inside the 5–95 % interval)
    over all of them; ``n_snap``, ``lai_rmse_truth_at_snap``,
    ``snap_lai_rmse_truth`` (and bias, R²) where the SNAP product has a value. The site
    needs ``truth/truth.zarr``; without a reference product the SNAP keys are NaN.
    """
    site = open_site(Path(data_dir), lazy=True)
    if not site.path("truth").exists():
        raise DataError(f"{site.path('truth')}: missing; the baseline is scored against truth")
    s2 = site.s2
    selection = functools.partial(split_mask, s2, _read_index(index), split)
    pixels = clear_pixel_dates(s2, selection, max_samples, seed)
    if not len(pixels):
        raise DataError(f"{site.root}: no clear S2 pixel-date in the {split} split")
    truth = _at_s2_dates(open_cube(site.path("truth"), lazy=True)["lai"], s2, pixels.flat)
    model.eval()
    lai = np.empty(len(pixels), np.float32)
    inside = np.empty(len(pixels), bool)
    for start in range(0, len(pixels), 65536):
        sl = slice(start, start + 65536)
        dist = model(torch.from_numpy(pixels.bands[sl]), torch.from_numpy(pixels.angles[sl]))["lai"]
        lai[sl] = dist.median.numpy()
        t = torch.from_numpy(truth[sl])
        inside[sl] = ((t >= dist.icdf(0.05)) & (t <= dist.icdf(0.95))).numpy()
    out: dict[str, float] = {"n_pixel_dates": len(pixels)}
    out.update(_errors(lai, truth, "lai"))
    out["lai_coverage90_truth"] = float(inside[np.isfinite(truth)].mean())
    snap = np.full_like(truth, np.nan)
    if site.reference is not None:
        snap = _at_s2_dates(site.reference[REFERENCE_LAI], s2, pixels.flat)
    seen = np.isfinite(snap) & np.isfinite(truth)
    out["n_snap"] = int(seen.sum())
    at_snap = _errors(np.where(seen, lai, np.nan), truth, "lai")
    out["lai_rmse_truth_at_snap"] = at_snap["lai_rmse_truth"]
    out.update(_errors(np.where(seen, snap, np.nan), truth, "snap_lai"))
    return out
