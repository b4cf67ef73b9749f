"""Where decoded values go: the chunk layout of an embeddings cube, target grids and dates."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.errors import DataError


@dataclass(frozen=True)
class ChunkLayout:
    """The chunks of an embeddings cube: a grid of squares and time windows.

    The grid has ``rows`` × ``cols`` squares of ``size_m`` whose north-west corner is
    (``x_min``, ``y_max``); the time windows of ``days`` days start at ``starts``.
    """

    x_min: float
    y_max: float
    size_m: float
    rows: int
    cols: int
    starts: np.ndarray  # datetime64[D], ascending
    days: int
    crs: str

    @classmethod
    def from_embeddings(cls, ds: xr.Dataset) -> ChunkLayout:
        """The layout recorded in an embeddings cube (see :mod:`releo.products.embed`)."""
        try:
            size = float(ds.attrs["chunk_size_m"])
            return cls(
                x_min=float(ds.attrs["chunk_x_min"]),
                y_max=float(ds.attrs["chunk_y_max"]),
                size_m=size,
                rows=ds.sizes["y"],
                cols=ds.sizes["x"],
                starts=ds.time.values.astype("datetime64[D]"),
                days=int(ds.attrs["chunk_days"]),
                crs=ds.rio.crs.to_string() if ds.rio.crs else str(ds.attrs["crs"]),
            )
        except KeyError as err:
            raise DataError(f"embeddings: attribute {err} missing; rerun the embed stage") from err

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the area the chunks cover."""
        return (
            self.x_min,
            self.y_max - self.rows * self.size_m,
            self.x_min + self.cols * self.size_m,
            self.y_max,
        )

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last day covered by a window."""
        return pd.Timestamp(self.starts[0]), pd.Timestamp(self.starts[-1] + (self.days - 1))

    def locate(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """Chunk ``row``, ``col`` and chunk-relative ``u``, ``v`` of map points, and ``inside``.

        ``u``, ``v`` ∈ [0, 1) run east and south; ``inside``: the point lies in a chunk. Pixel
        centres of a chunk of n px land at (i + 0.5) / n, the decoder's convention.
        """
        fx = (np.asarray(x, dtype=np.float64) - self.x_min) / self.size_m
        fy = (self.y_max - np.asarray(y, dtype=np.float64)) / self.size_m
        inside = (fx >= 0) & (fx < self.cols) & (fy >= 0) & (fy < self.rows)
        col = np.clip(np.floor(fx), 0, self.cols - 1).astype(np.int64)
        row = np.clip(np.floor(fy), 0, self.rows - 1).astype(np.int64)
        return row, col, fx - col, fy - row, inside

    def window_of(self, dates: pd.DatetimeIndex | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window index of each date and whether a window covers it."""
        days = np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]"))
        window = np.searchsorted(self.starts, days, side="right") - 1
        valid = (window >= 0) & (days <= self.starts[np.clip(window, 0, None)] + (self.days - 1))
        return np.clip(window, 0, None), valid

    def blend_of(
        self, dates: pd.DatetimeIndex | np.ndarray, blend_days: float
    ) -> tuple[np.ndarray, ...]:
        """Window of each date and the neighbouring window blended in.

        The neighbour's weight ramps from 0, ``blend_days / 2`` days from the boundary shared
        with the neighbour, to 1/2 at it (day centres): with ``blend_days`` the window length,
        LAI is interpolated linearly between window centres and a series has no step at a
        boundary. No neighbour (the first or last window, a gap) or ``blend_days`` 0: weight 0.

        Returns:
            The window of each date, the neighbouring window it is blended with, that
            window's weight, and whether a window covers the date.
        """
        window, covered = self.window_of(dates)
        days = np.asarray(pd.DatetimeIndex(dates).values.astype("datetime64[D]"))
        t = (days - self.starts[window]).astype(np.float64) + 0.5  # day centre in its window
        after = t > self.days / 2
        partner = np.where(after, window + 1, window - 1)
        if blend_days <= 0:
            return window, window, np.zeros(len(days)), covered
        weight = np.clip(0.5 - np.where(after, self.days - t, t) / blend_days, 0.0, 0.5)
        inside = (partner >= 0) & (partner < len(self.starts))
        near = self.starts[np.clip(partner, 0, len(self.starts) - 1)]
        adjacent = inside & (np.abs((near - self.starts[window]).astype(np.int64)) == self.days)
        weight = np.where(adjacent & covered, weight, 0.0)
        return window, np.where(weight > 0, partner, window), weight, covered


@dataclass(frozen=True)
class Grid:
    """A north-up raster: pixel-centre coordinates ``x`` (ascending) and ``y`` (descending)."""

    x: np.ndarray
    y: np.ndarray
    crs: str
    resolution: float

    @classmethod
    def from_bounds(
        cls, bounds: tuple[float, float, float, float], resolution: float, crs: str
    ) -> Grid:
        """Whole pixels of ``resolution`` from the north-west corner of ``bounds``."""
        xmin, ymin, xmax, ymax = (float(b) for b in bounds)
        nx = int(np.floor((xmax - xmin) / resolution + 1e-6))
        ny = int(np.floor((ymax - ymin) / resolution + 1e-6))
        if nx < 1 or ny < 1:
            raise DataError(f"grid: bounds {bounds} hold no {resolution} m pixel")
        x = xmin + (np.arange(nx) + 0.5) * resolution
        y = ymax - (np.arange(ny) + 0.5) * resolution
        return cls(x=x, y=y, crs=crs, resolution=float(resolution))

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return len(self.y), len(self.x)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates (ny·nx,) of every pixel centre, row-major."""
        xx, yy = np.meshgrid(self.x, self.y)
        return xx.ravel(), yy.ravel()


def query_dates(
    *,
    dates: list[date] | None = None,
    start: date | pd.Timestamp | None = None,
    end: date | pd.Timestamp | None = None,
    step_days: int = 7,
) -> pd.DatetimeIndex:
    """``dates`` (sorted, unique) when given, else every ``step_days`` from start to end.

    ``start`` and ``end`` are inclusive.
    """
    if dates:
        return pd.DatetimeIndex(sorted(set(pd.to_datetime(list(dates))))).normalize()
    if start is None or end is None:
        raise ValueError("query_dates: give dates, or start and end")
    out = pd.date_range(pd.Timestamp(start), pd.Timestamp(end), freq=f"{int(step_days)}D")
    if out.empty:
        raise DataError(f"dates: no day from {start} to {end}")
    return out.normalize()
