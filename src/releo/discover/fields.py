"""Fields: the spatial units whose trajectories are fitted together or held out.

On the simulator a field is a parcel (the exclusive effects are imprinted per parcel); on a
site without a parcel map, square blocks of ``block_m`` stand in. A parcel crossing chunk
places is cut into one field per place, so that every field lies in exactly one chunk split:
held-out fields are places the model was not trained on, and a tiny site with a few parcels
still has fields in every split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Fields:
    """Field label of every pixel (0: none), the chunk split and a name of each field."""

    labels: np.ndarray  # (y, x) int
    split: dict[int, str]
    names: dict[int, str]
    kind: str  # "parcel" or "block"

    @property
    def ids(self) -> list[int]:
        """Field ids, sorted."""
        return sorted(self.split)


def place_index(index: pd.DataFrame, shape: tuple[int, int]) -> tuple[np.ndarray, list]:
    """Chunk place of every pixel (−1 outside whole chunks) and each place's (row, col, split)."""
    out = np.full(shape, -1, dtype=int)
    places = index.drop_duplicates(["y0", "x0"]).reset_index(drop=True)
    for i, row in enumerate(places.itertuples(index=False)):
        out[row.y0 : row.y0 + row.size_px, row.x0 : row.x0 + row.size_px] = i
    return out, list(zip(places["row"], places["col"], places["split"], strict=True))


def make_fields(
    parcel_id: np.ndarray | None, index: pd.DataFrame, shape: tuple[int, int], block_px: int
) -> Fields:
    """Parcels (or ``block_px`` squares) cut by chunk places; each piece is a field."""
    if parcel_id is not None:
        units, kind = np.asarray(parcel_id, dtype=int), "parcel"
    else:
        rows, cols = np.indices(shape)
        per_row = -(-shape[1] // block_px)
        units, kind = (rows // block_px) * per_row + cols // block_px + 1, "block"
    place, places = place_index(index, shape)
    inside = (place >= 0) & (units > 0)
    pairs, labels = np.unique(
        np.stack([units[inside], place[inside]], axis=1), axis=0, return_inverse=True
    )
    out = np.zeros(shape, dtype=int)
    out[inside] = labels.ravel() + 1
    split, names = {}, {}
    for i, (unit, p) in enumerate(pairs.tolist(), start=1):
        row, col, name = places[p]
        split[i] = str(name)
        names[i] = f"{kind} {unit} r{row}c{col}"
    return Fields(out, split, names, kind)


def field_means(
    values: np.ndarray, labels: np.ndarray, n_fields: int, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-date field means (n_dates, n_fields + 1) of ``values`` and their pixel counts.

    ``values`` is (n_dates, y, x); only the pixels where ``weights`` (same shape, 0/1) is set count.
    """
    n_dates = values.shape[0]
    flat = labels.ravel()
    w = np.ones_like(values, dtype=float) if weights is None else weights.astype(float)
    w = w.reshape(n_dates, -1) * (flat > 0)
    v = np.where(w > 0, values.reshape(n_dates, -1), 0.0)
    index = (np.arange(n_dates)[:, None] * (n_fields + 1) + flat[None, :]).ravel()
    size = n_dates * (n_fields + 1)
    sums = np.bincount(index, weights=(v * w).ravel(), minlength=size)
    counts = np.bincount(index, weights=w.ravel(), minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = sums / counts
    return means.reshape(n_dates, -1), counts.reshape(n_dates, -1)
