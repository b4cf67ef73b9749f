"""Large arrays generated one date at a time, kept in memory or spilled to a scratch folder.

A generator (the simulator, the SNAP reference) allocates its ``(dates, y, x)`` outputs from a
:class:`Scratch` and fills them date by date (``array[i] = values``). In memory (the default)
they are numpy arrays. In a scratch folder (:func:`scratch_folder`) each is a raw file: a date
is written as it comes, and :meth:`Scratch.data` hands the whole array to xarray as a dask array
read back in blocks, so that :func:`releo.data.io.write_cube` stores it shard by shard and no
process ever holds a large site whole. Readers of a cube's dates take them by
:func:`date_blocks` (the gates, discover); loops over many blocks give their freed memory
back with :func:`trim_heap`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

import dask.array as da
import numpy as np

__all__ = [
    "Data",
    "Scratch",
    "SpillArray",
    "date_blocks",
    "row_blocks",
    "scratch_folder",
    "trim_heap",
]

Data = np.ndarray | da.Array
"""An xarray variable's data as :meth:`Scratch.data` gives it."""
BLOCK_BYTES = 32 * 2**20
"""Bytes of one dask block of a spilled array (all dates x a band of rows)."""
BLOCK_PIXELS = 2**18
"""Pixels of the part of a date's image that a generator works on at a time."""
BLOCK_VALUES = 2**25
"""Values of one variable that a reader of a cube's dates takes at once (128 MiB of float32)."""


def date_blocks(n_dates: int, pixels: int) -> list[slice]:
    """Slices of ``n_dates`` dates of images of ``pixels``, ≤ :data:`BLOCK_VALUES` (≥ 1 date)."""
    step = max(1, BLOCK_VALUES // max(pixels, 1))
    return [slice(start, min(start + step, n_dates)) for start in range(0, n_dates, step)]


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None


def trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc's ``malloc_trim``; elsewhere a no-op).

    Freed tensors and arrays of a long loop otherwise stay in a fragmented heap, and a process
    grows with the blocks it has done, not with the one in hand.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def row_blocks(shape: tuple[int, int]) -> list[slice]:
    """Bands of whole rows of an image of ``shape`` (ny, nx), ≤ :data:`BLOCK_PIXELS` (≥ 1 row)."""
    ny, nx = shape
    rows = max(1, BLOCK_PIXELS // max(1, nx))
    return [slice(start, min(start + rows, ny)) for start in range(0, ny, rows)]


class SpillArray:
    """An array in a raw C-order scratch file, zeros until written.

    Each access maps the file for its own duration only: what it touched leaves the process's
    memory with it (the page cache keeps it).
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)
        with open(path, "wb") as f:
            f.truncate(math.prod(self.shape) * self.dtype.itemsize)

    def _map(self, mode: Literal["r", "r+"]) -> np.memmap:
        return np.memmap(self.path, self.dtype, mode, shape=self.shape)

    def __setitem__(self, key, values) -> None:
        if math.prod(self.shape) == 0:
            return
        mapped = self._map("r+")
        mapped[key] = values
        del mapped

    def __getitem__(self, key) -> np.ndarray:
        if math.prod(self.shape) == 0:
            return np.zeros(self.shape, self.dtype)[key]
        mapped = self._map("r")
        out = np.array(mapped[key])
        del mapped
        return out

    def to_dask(self) -> da.Array:
        """The array as dask blocks of all dates x a band of rows (≤ :data:`BLOCK_BYTES`)."""
        if self.ndim < 2:
            return da.from_array(self, chunks=-1, lock=False, asarray=True, fancy=False)
        row_bytes = self.shape[0] * math.prod(self.shape[2:]) * self.dtype.itemsize
        rows = max(1, min(self.shape[1], BLOCK_BYTES // max(1, row_bytes)))
        chunks = (-1, rows, *(-1,) * (self.ndim - 2))
        return da.from_array(self, chunks=chunks, lock=False, asarray=True, fancy=False)


class Scratch:
    """Where generated arrays live until written: memory, or the raw files of ``folder``."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._count = 0

    def zeros(self, shape: tuple[int, ...], dtype) -> np.ndarray | SpillArray:
        """A zero array to fill date by date: numpy in memory, else a :class:`SpillArray`."""
        if self.folder is None:
            return np.zeros(shape, dtype)
        self._count += 1
        return SpillArray(self.folder / f"{self._count}.raw", shape, np.dtype(dtype))

    def per_date(self, values: np.ndarray, index: np.ndarray) -> np.ndarray | SpillArray:
        """``values[:, index]`` (dates, *index.shape), built one date at a time.

        ``values`` (dates, units) holds one value per date and unit (zone, parcel); ``index``
        maps every pixel to its unit.
        """
        out = self.zeros((len(values), *index.shape), values.dtype)
        for i, row in enumerate(values):
            out[i] = row[index]
        return out

    @staticmethod
    def data(array: np.ndarray | SpillArray) -> Data:
        """``array`` as an xarray variable's data: numpy, or dask reading a spilled array."""
        return array.to_dask() if isinstance(array, SpillArray) else array


@contextmanager
def scratch_folder(near: str | os.PathLike[str]) -> Iterator[Scratch]:
    """A :class:`Scratch` spilling to a temporary folder beside ``near``, removed on exit.

    Beside the output, on its file system: the spilled arrays take their uncompressed size.
    """
    parent = Path(near).resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=".releo-scratch-", dir=parent))
    try:
        yield Scratch(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
