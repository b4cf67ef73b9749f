"""The site's projected pixel grid (north-up, pixel-centre coordinates)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from pyproj import Transformer

from releo.data.simulate.config import SimulationConfig


@dataclass(frozen=True)
class SiteGrid:
    """Pixel centres ``x`` (west → east) and ``y`` (north → south) in ``crs`` metres."""

    crs: str
    x: np.ndarray
    y: np.ndarray
    pixel_size_m: float

    @classmethod
    def from_config(cls, config: SimulationConfig) -> SiteGrid:
        """The pixel-centre grid of a simulated site."""
        ny, nx = config.shape
        half = config.pixel_size_m / 2
        x = config.origin_x + half + config.pixel_size_m * np.arange(nx)
        y = config.origin_y - half - config.pixel_size_m * np.arange(ny)
        return cls(config.crs, x, y, config.pixel_size_m)

    @property
    def shape(self) -> tuple[int, int]:
        """(ny, nx)."""
        return self.y.size, self.x.size

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the pixel edges."""
        half = self.pixel_size_m / 2
        return (
            float(self.x[0] - half),
            float(self.y[-1] - half),
            float(self.x[-1] + half),
            float(self.y[0] + half),
        )

    @cached_property
    def centre_lonlat(self) -> tuple[float, float]:
        """Longitude and latitude (degrees, WGS84) of the site centre."""
        to_geographic = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        lon, lat = to_geographic.transform(float(self.x.mean()), float(self.y.mean()))
        return float(lon), float(lat)

    def pixel_index(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column of the pixels containing points (x, y)."""
        xmin, _, _, ymax = self.bounds
        col = np.floor((np.asarray(x) - xmin) / self.pixel_size_m).astype(int)
        row = np.floor((ymax - np.asarray(y)) / self.pixel_size_m).astype(int)
        return row, col
