"""Chunks, the modelling unit of releo: ``size_m`` × ``size_m`` × ``days`` windows of the cubes.

:func:`chunk_index` tiles a site into chunks and assigns whole spatial blocks to
train/val/test, so no place is seen by two splits; :class:`ChunkDataset` serves the S2 and S1
observations of each chunk as tensors (torchgeo-style: the index is the sampler's input), and
:func:`collate_chunks` batches them, padding their time axes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import dask
import numpy as np
import pandas as pd
import torch
import xarray as xr

from releo.data.contracts import (
    MASK_CLEAR,
    PLATFORM,
    REFERENCE_LAI,
    S1_INCIDENCE,
    S1_POLARISATIONS,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
)
from releo.physics.srf import platform_code

SPLITS = ("train", "val", "test")
INDEX = Path("chunks/index.parquet")
"""Where the ``chunk`` stage writes the chunk index, relative to the project root."""


def _pixels_per_chunk(ds: xr.Dataset, size_m: float) -> int:
    res = float(abs(ds.x.values[1] - ds.x.values[0]))
    n = size_m / res
    if abs(n - round(n)) > 1e-6 or round(n) < 1:
        raise ValueError(f"chunk size {size_m} m is not a whole number of {res} m pixels")
    return round(n)


def assign_splits(n_blocks: int, shares: dict[str, float], seed: int) -> np.ndarray:
    """Split label of each of ``n_blocks`` blocks: a seeded permutation cut by ``shares``.

    Every split with a positive share gets at least one block when there are enough blocks.
    """
    names = [s for s in SPLITS if shares.get(s, 0) > 0]
    weights = np.array([shares[s] for s in names], dtype=float)
    counts = np.floor(weights / weights.sum() * n_blocks).astype(int)
    if n_blocks >= len(names):
        counts = np.maximum(counts, 1)
    while counts.sum() > n_blocks:
        counts[np.argmax(counts)] -= 1
    counts[0] += n_blocks - counts.sum()  # leftovers train the model
    labels = np.repeat(names, counts)
    return np.random.default_rng(seed).permutation(labels)


def clear_fractions(mask: xr.DataArray, npx: int, rows: int, cols: int) -> np.ndarray:
    """Clear share of each (date, chunk row, chunk column), read one row of chunks at a time.

    Streams: a lazily opened cube (``open_cube(path, lazy=True)``) is read a row of chunk
    windows (all dates) at a time, i.e. only those windows' inner chunks, so memory is one
    strip, not the site. Values are those of the former whole-mask ``coarsen(...).mean()``:
    an exact count of clear pixels divided by ``npx**2``.
    """
    out = np.empty((mask.sizes["time"], rows, cols), dtype=np.float64)
    mask = mask.transpose("time", "y", "x")
    for r in range(rows):
        strip = np.asarray(mask.isel(y=slice(r * npx, (r + 1) * npx), x=slice(0, cols * npx)))
        clear = (strip == MASK_CLEAR).reshape(strip.shape[0], npx, cols, npx)
        out[:, r, :] = clear.sum(axis=(1, 3), dtype=np.int64) / (npx * npx)
    return out


def chunk_index(
    s2: xr.Dataset,
    s1: xr.Dataset,
    *,
    size_m: float,
    days: int,
    block_chunks: int = 1,
    split: dict[str, float] | None = None,
    seed: int = 0,
    start: np.datetime64 | None = None,
) -> pd.DataFrame:
    """One row per chunk: its window, split and what it observed.

    Chunks cover the grid with whole chunks only (an incomplete edge row/column is left out);
    time windows start at ``start`` (default: the first acquisition's day) and step ``days``.
    Only the S2 mask's values are read, a row of chunks at a time, so ``s2`` may be a lazily
    opened cube larger than memory (``open_cube(path, lazy=True)``).
    """
    split = split or {"train": 0.5, "val": 0.25, "test": 0.25}
    npx = _pixels_per_chunk(s2, size_m)
    rows, cols = s2.sizes["y"] // npx, s2.sizes["x"] // npx
    if rows == 0 or cols == 0:
        raise ValueError(f"site of {s2.sizes['y']}x{s2.sizes['x']} px holds no {size_m} m chunk")
    block_rows, block_cols = -(-rows // block_chunks), -(-cols // block_chunks)
    labels = assign_splits(block_rows * block_cols, split, seed).reshape(block_rows, block_cols)

    s2_days = s2.time.values.astype("datetime64[D]")
    s1_days = s1.time.values.astype("datetime64[D]")
    first = (
        np.datetime64(start, "D")  # type: ignore[call-overload]
        if start is not None
        else min(s2_days[0], s1_days[0])
    )
    last = max(s2_days[-1], s1_days[-1])
    n_windows = int((last - first).astype(int) // days) + 1
    t_s2 = ((s2_days - first).astype(int) // days).astype(int)
    t_s1 = ((s1_days - first).astype(int) // days).astype(int)

    clear = clear_fractions(s2[S2_MASK], npx, rows, cols)  # (time, rows, cols)
    records = []
    for r in range(rows):
        for c in range(cols):
            for t in range(n_windows):
                in_s2 = np.flatnonzero(t_s2 == t)
                records.append(
                    {
                        "row": r,
                        "col": c,
                        "window": t,
                        "start": first + np.timedelta64(t * days, "D"),
                        "end": first + np.timedelta64((t + 1) * days - 1, "D"),
                        "y0": r * npx,
                        "x0": c * npx,
                        "size_px": npx,
                        "x_min": float(s2.x.values[c * npx]),
                        "y_max": float(s2.y.values[r * npx]),
                        "split": labels[r // block_chunks, c // block_chunks],
                        "n_s2": in_s2.size,
                        "s2_clear_fraction": float(clear[in_s2, r, c].mean())
                        if in_s2.size
                        else 0.0,
                        "n_s1": int((t_s1 == t).sum()),
                    }
                )
    index = pd.DataFrame.from_records(records)
    places = index[["row", "col", "window"]].itertuples(index=False)
    index.insert(0, "chunk_id", [f"r{r:03d}c{c:03d}t{t:03d}" for r, c, t in places])
    for col in ("start", "end"):
        index[col] = pd.to_datetime(index[col])
    return index


def check_no_leak(index: pd.DataFrame) -> None:
    """Raise if a spatial chunk (row, col) belongs to more than one split."""
    per_place = index.groupby(["row", "col"])["split"].nunique()
    leaking = per_place[per_place > 1]
    if not leaking.empty:
        raise ValueError(f"chunks in several splits: {leaking.index.tolist()[:5]}")


def _doy(times: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(
        pd.DatetimeIndex(times).day_of_year.to_numpy().copy(), dtype=torch.float32
    )


def _inside(times: np.ndarray, window: slice) -> torch.Tensor:
    stamps = pd.DatetimeIndex(times)
    return torch.as_tensor((stamps >= window.start) & (stamps <= window.stop))


DATED_KEYS = {
    "s2": ("s2", "s2_mask", "s2_angles", "s2_doy", "s2_platform", "s2_in_window", "truth_lai",
           "reference_lai"),
    "s1": ("s1", "s1_incidence", "s1_doy", "s1_in_window"),
}  # fmt: skip
"""Keys of a :class:`ChunkDataset` item along each modality's time axis."""


def window_only(item: dict) -> dict:
    """``item`` without its temporal context: the S2 and S1 dates inside its window only."""
    out = dict(item)
    for modality, keys in DATED_KEYS.items():
        if f"{modality}_in_window" not in item:
            continue
        keep = item[f"{modality}_in_window"].nonzero()[:, 0]
        for key in (k for k in keys if k in item):
            value = item[key]
            if isinstance(value, list):  # platforms: one name per date, or none at all
                out[key] = [value[i] for i in keep.tolist()] if value else value
            else:
                out[key] = value[keep]
    return out


XarrayT = TypeVar("XarrayT", xr.Dataset, xr.DataArray)


class ChunkDataset(torch.utils.data.Dataset):
    """S2 and S1 observations of each chunk of ``index`` (optionally one split) as tensors.

    An item holds ``s2`` (T, 10, H, W) reflectance with NaN where masked, ``s2_mask``
    (T, H, W) bool clear, ``s2_angles`` (T, 3) degrees, ``s2_doy`` (T,), ``s1`` (T', 2, H, W) dB,
    ``s1_incidence`` (T', H, W), ``s1_doy`` (T',); T or T' may be 0; ``window_doy`` (2,) the
    first and last day-of-year of the window (the last may exceed 365 across a new year).

    With ``context_days`` the S2 and S1 axes also hold the acquisitions up to that many days
    before and after the window (the encoder's temporal context); ``s2_in_window`` (T,) and
    ``s1_in_window`` (T',) say which dates lie inside the window.

    With ``truth`` (the simulator's truth cube) items also hold ``truth_lai`` (T, H, W) at the
    S2 dates and ``truth_lai_daily`` (D, H, W) with ``truth_doy`` (D,) for every day of the
    window; with ``reference`` (a reference LAI product on the S2 dates) ``reference_lai``
    (T, H, W), NaN where the product has no value. Both are for evaluation only.
    """

    def __init__(
        self,
        s2: xr.Dataset,
        s1: xr.Dataset,
        index: pd.DataFrame,
        split: str | None = None,
        *,
        truth: xr.Dataset | None = None,
        reference: xr.Dataset | None = None,
        context_days: int = 0,
    ):
        self.s2, self.s1 = s2, s1
        self.context = pd.Timedelta(days=context_days)
        self.truth, self.reference = truth, reference
        self.index = index if split is None else index[index["split"] == split]
        self.index = self.index.reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor | str]:
        row = self.index.iloc[i]
        window = {
            "y": slice(int(row.y0), int(row.y0 + row.size_px)),
            "x": slice(int(row.x0), int(row.x0 + row.size_px)),
        }
        end_of_day = pd.Timedelta(hours=23, minutes=59)
        times = slice(row.start, row.end + end_of_day)
        read = slice(row.start - self.context, row.end + self.context + end_of_day)
        s2 = load_part(self.s2.isel(window).sel(time=read))
        s1 = load_part(self.s1.isel(window).sel(time=read))
        bands = np.stack([s2[b].values for b in S2_BANDS], axis=1).astype(np.float32)
        first = pd.Timestamp(row.start)
        item = {
            "chunk_id": row.chunk_id,
            "window_doy": torch.tensor(
                [first.day_of_year, first.day_of_year + (row.end - row.start).days],
                dtype=torch.float32,
            ),
            "s2": torch.from_numpy(bands),
            "s2_mask": torch.from_numpy(s2[S2_MASK].values == MASK_CLEAR),
            "s2_angles": torch.as_tensor(
                np.stack([s2[a].values for a in S2_ANGLES], axis=-1), dtype=torch.float32
            ).reshape(-1, len(S2_ANGLES)),
            "s2_doy": _doy(s2.time.values),
            "s2_platform": list(map(str, s2[PLATFORM].values)) if PLATFORM in s2.coords else [],
            "s1": torch.from_numpy(
                np.stack([s1[p].values for p in S1_POLARISATIONS], axis=1).astype(np.float32)
            ),
            "s1_incidence": torch.as_tensor(s1[S1_INCIDENCE].values, dtype=torch.float32),
            "s1_doy": _doy(s1.time.values),
            "s2_in_window": _inside(s2.time.values, times),
            "s1_in_window": _inside(s1.time.values, times),
        }
        if self.truth is not None:
            item.update(self._truth(window, times, s2.time.values))
        if self.reference is not None:
            ref = load_part(self.reference[REFERENCE_LAI].isel(window)).reindex(time=s2.time.values)
            item["reference_lai"] = torch.as_tensor(ref.values, dtype=torch.float32)
        return item

    def _truth(self, window: dict, times: slice, s2_times: np.ndarray) -> dict:
        if self.truth is None:
            raise ValueError("this dataset was made without a truth cube")
        # Daily truth LAI selected by date, so it lines up with the S2 dates whatever the cube.
        lai = load_part(self.truth["lai"].isel(window))
        daily = lai.sel(time=times)
        days = s2_times.astype("datetime64[D]").astype("datetime64[ns]")
        at_s2 = lai.sel(time=days)
        return {
            "truth_lai": torch.as_tensor(at_s2.values, dtype=torch.float32),
            "truth_lai_daily": torch.as_tensor(daily.values, dtype=torch.float32),
            "truth_doy": _doy(daily.time.values),
        }


def load_part(part: XarrayT) -> XarrayT:
    """``part`` of a cube in memory; of a lazily opened cube, computed in this thread.

    Chunks are read in parallel by the loader's or Ray's workers; dask's own pool would only
    contend with them (it doubles the read time on two cores).
    """
    if not part.chunks:
        return part
    with dask.config.set(scheduler="synchronous"):
        return part.load()


class SiteBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Batches over a concatenation of datasets (sites), each batch drawn from one dataset.

    The datasets hold ``sizes`` items. A site's chunks share their pixel size, so a batch can stack
    them. Items and batches are shuffled anew each epoch (:meth:`set_epoch`, seeded); on ``world``
    ranks, rank ``rank`` takes every world-th batch of the same order (the same count on every
    rank).
    """

    def __init__(
        self, sizes: list[int], batch_size: int, *, seed: int = 0, rank: int = 0, world: int = 1
    ):
        self.sizes, self.batch_size = list(sizes), batch_size
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        """Shuffle for ``epoch``."""
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        batches, offset = [], 0
        for n in self.sizes:
            order = (torch.randperm(n, generator=generator) + offset).tolist()
            batches += [order[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
            offset += n
        shuffled = [batches[i] for i in torch.randperm(len(batches), generator=generator)]
        usable = len(shuffled) // self.world * self.world
        return shuffled[self.rank : usable : self.world]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        batches = sum(-(-n // self.batch_size) for n in self.sizes)
        return batches // self.world


def chunk_summary(index: pd.DataFrame) -> dict:
    """Counts per split (chunks, places, observations) for ``metrics/``."""
    summary: dict = {"chunks": len(index), "windows": int(index["window"].nunique())}
    for name, part in index.groupby("split"):
        summary[str(name)] = {
            "chunks": len(part),
            "places": int(part[["row", "col"]].drop_duplicates().shape[0]),
            "s2_acquisitions": int(part["n_s2"].sum()),
            "s1_acquisitions": int(part["n_s1"].sum()),
            "s2_clear_fraction": float(part.loc[part.n_s2 > 0, "s2_clear_fraction"].mean()),
        }
    return summary


PAD_ANGLES = (45.0, 5.0, 90.0)  # valid PROSAIL geometry for padded dates (always masked out)
PAD_INCIDENCE = 35.0


def _stack_padded(tensors: list[torch.Tensor], length: int, fill: float) -> torch.Tensor:
    out = torch.full((len(tensors), length, *tensors[0].shape[1:]), fill, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def _valid(lengths: list[int], length: int) -> torch.Tensor:
    return torch.arange(length)[None] < torch.tensor(lengths)[:, None]


def collate_chunks(items: list[dict]) -> dict:
    """Batch chunk items, padding the S2, S1 (and truth) time axes.

    ``s2_valid`` (B, T), ``s1_valid`` (B, T') and ``truth_valid`` (B, D) say which dates are real,
    ``s2_in_window`` and ``s1_in_window`` (when the items have them) which lie in the chunk's
    window.
    """
    n2 = [it["s2"].shape[0] for it in items]
    n1 = [it["s1"].shape[0] for it in items]
    t2, t1 = max(n2), max(n1)
    batch: dict[str, Any] = {
        "chunk_id": [it["chunk_id"] for it in items],
        "window_doy": torch.stack([it["window_doy"] for it in items]),
        "s2": _stack_padded([it["s2"] for it in items], t2, 0.0),
        "s2_mask": _stack_padded([it["s2_mask"] for it in items], t2, False),
        "s2_valid": _valid(n2, t2),
        "s2_angles": _stack_padded([it["s2_angles"] for it in items], t2, 0.0),
        "s2_doy": _stack_padded([it["s2_doy"] for it in items], t2, 0.0),
        "s2_platform": _stack_padded(
            [
                torch.tensor(
                    [platform_code(p) for p in it["s2_platform"]] or [0] * n, dtype=torch.int64
                )
                for it, n in zip(items, n2, strict=True)
            ],
            t2,
            0,
        ),
        "s1": _stack_padded([it["s1"] for it in items], t1, 0.0),
        "s1_valid": _valid(n1, t1),
        "s1_incidence": _stack_padded([it["s1_incidence"] for it in items], t1, PAD_INCIDENCE),
        "s1_doy": _stack_padded([it["s1_doy"] for it in items], t1, 0.0),
    }
    for modality, length in (("s2", t2), ("s1", t1)):
        key = f"{modality}_in_window"
        if all(key in it for it in items):
            batch[key] = _stack_padded([it[key] for it in items], length, False)
    batch["s2_angles"][~batch["s2_valid"]] = torch.tensor(PAD_ANGLES)
    if all("truth_lai" in it for it in items):
        nd = [it["truth_doy"].shape[0] for it in items]
        batch["truth_lai"] = _stack_padded([it["truth_lai"] for it in items], t2, float("nan"))
        batch["truth_lai_daily"] = _stack_padded(
            [it["truth_lai_daily"] for it in items], max(nd), float("nan")
        )
        batch["truth_doy"] = _stack_padded([it["truth_doy"] for it in items], max(nd), 0.0)
        batch["truth_valid"] = _valid(nd, max(nd))
    if all("reference_lai" in it for it in items):
        batch["reference_lai"] = _stack_padded(
            [it["reference_lai"] for it in items], t2, float("nan")
        )
    return batch
