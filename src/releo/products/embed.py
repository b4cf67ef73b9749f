"""Chunk embeddings: the trained encoder run over every chunk of a site, stored as a cube.

The cube (``embeddings/embeddings.zarr``) has dims ``(time, y, x, feature)``: one embedding
per chunk, at the chunk's window start (``time``, with ``time_end``) and centre (``y``, ``x``,
in the site CRS, with ``row``/``col``), plus each chunk's ``split`` and observation counts.
Attributes record the chunk geometry (``chunk_x_min``, ``chunk_y_max`` edges, ``chunk_size_m``,
``chunk_days``) and the model it came from.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import DataLoader, Dataset

from releo.data.chunks import collate_chunks
from releo.data.errors import DataError
from releo.models import LossWeights, PhysicsAutoencoder
from releo.models.autoencoder import LOSS_TERMS
from releo.models.checkpoint import load_autoencoder  # noqa: F401 (re-exported)


def encode_chunks(
    model: PhysicsAutoencoder,
    dataset: Dataset,
    batch_size: int = 8,
    *,
    weights: LossWeights | None = None,
    refine_steps: int = 0,
    refine_lr: float = 0.05,
    refine_terms: Iterable[str] | None = None,
) -> np.ndarray:
    """Embeddings (N, embedding_dim) float32 of the N chunks of ``dataset``, in order.

    With ``refine_steps``, each embedding is then refined on its chunk's ``refine_terms`` (None:
    all of them) at the loss ``weights`` the model was trained with
    (:meth:`PhysicsAutoencoder.refine`), one chunk at a time: a chunk's embedding never depends
    on the batch it came in.
    """
    model.eval()
    weights = weights or LossWeights()
    if refine_terms is not None:
        kept = set(refine_terms)
        weights = weights.model_copy(update={k: 0.0 for k in LOSS_TERMS if k not in kept})
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=lambda items: items)
    parts = []
    for items in loader:
        with torch.no_grad():
            z = model.encode(collate_chunks(items))
        if refine_steps:
            refined = [
                model.refine(collate_chunks([item]), z[i : i + 1], weights, refine_steps,
                             refine_lr)[0]
                for i, item in enumerate(items)
            ]  # fmt: skip
            z = torch.cat(refined)
        parts.append(z.float().numpy())
    if not parts:
        return np.zeros((0, model.cfg.embedding_dim), np.float32)
    return np.concatenate(parts)


def embeddings_cube(
    z: np.ndarray | None,
    index: pd.DataFrame,
    *,
    crs: str,
    pixel_size_m: float,
    chunk_days: int,
    dtype: str = "float16",
    attrs: dict | None = None,
    embedding_dim: int | None = None,
    chunks: tuple[int, int, int] | None = None,
) -> xr.Dataset:
    """Arrange embeddings ``z`` (one row per ``index`` row) as a (time, y, x, feature) cube.

    With ``z`` None the ``embedding`` variable is a lazy all-NaN template of ``embedding_dim``
    features in dask chunks of ``chunks`` (windows, rows, cols): the metadata of a cube whose
    regions Ray tasks fill (:mod:`releo.distributed`).
    """
    if z is not None and len(z) != len(index):
        raise ValueError(f"{len(z)} embeddings for {len(index)} chunks")
    if z is not None:
        dim = int(z.shape[1])
    elif embedding_dim is not None:
        dim = int(embedding_dim)
    else:
        raise ValueError("embedding_dim is required for a template cube (z is None)")
    rows, cols = int(index["row"].max()) + 1, int(index["col"].max()) + 1
    windows = index.drop_duplicates("window").sort_values("window")
    n_w = int(windows["window"].max()) + 1
    if len(windows) != n_w:
        raise DataError(
            f"chunk index: windows {sorted(set(range(n_w)) - set(windows.window))} missing"
        )
    size_px = int(index["size_px"].iloc[0])
    size_m = size_px * pixel_size_m
    # the index records the centre of each chunk's first pixel: chunk edges are half a pixel out
    x_edge = float(index["x_min"].min()) - pixel_size_m / 2
    y_edge = float(index["y_max"].max()) + pixel_size_m / 2
    w, r, c = (index[k].to_numpy() for k in ("window", "row", "col"))

    if z is None:
        import dask.array as da

        cube = da.full(
            (n_w, rows, cols, dim), np.nan, dtype=dtype, chunks=(*(chunks or (-1, -1, -1)), -1)
        )
    else:
        cube = np.full((n_w, rows, cols, dim), np.nan, dtype=np.float32)
        cube[w, r, c] = z
        cube = cube.astype(dtype)
    counts = {}
    for name in ("n_s2", "n_s1", "s2_clear_fraction"):
        values = np.full((n_w, rows, cols), -1 if name.startswith("n_") else np.nan)
        values[w, r, c] = index[name].to_numpy()
        counts[name] = (
            ("time", "y", "x"),
            values.astype(np.int32 if name[:2] == "n_" else np.float32),
        )
    split = np.full((rows, cols), "", dtype=object)
    split[r, c] = index["split"].astype(str).to_numpy()
    ds = xr.Dataset(
        {"embedding": (("time", "y", "x", "feature"), cube), **counts},
        coords={
            "time": pd.DatetimeIndex(windows["start"]).values.astype("datetime64[ns]"),
            "time_end": ("time", pd.DatetimeIndex(windows["end"]).values.astype("datetime64[ns]")),
            "window": ("time", np.arange(n_w, dtype=np.int32)),
            "y": y_edge - (np.arange(rows) + 0.5) * size_m,
            "x": x_edge + (np.arange(cols) + 0.5) * size_m,
            "row": ("y", np.arange(rows, dtype=np.int32)),
            "col": ("x", np.arange(cols, dtype=np.int32)),
            "feature": np.arange(dim, dtype=np.int32),
            "split": (("y", "x"), split.astype(str)),
        },
        attrs={
            "title": "releo chunk embeddings",
            "chunk_size_m": size_m,
            "chunk_size_px": size_px,
            "chunk_days": int(chunk_days),
            "chunk_x_min": x_edge,
            "chunk_y_max": y_edge,
            "pixel_size_m": float(pixel_size_m),
            "embedding_dim": dim,
            **(attrs or {}),
        },
    )
    ds["embedding"].attrs["long_name"] = "chunk embedding (NaN: no chunk here)"
    return ds.rio.write_crs(crs)
