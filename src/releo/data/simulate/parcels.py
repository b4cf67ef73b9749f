"""Agricultural parcels (Voronoi fields), their land cover and within-field management zones.

Fields are the cells of a centroidal Voronoi tessellation (Lloyd relaxation of random seeds),
which gives convex fields of fairly regular size, as in the consolidated landscapes of the
Lauragais. Within each field, a smooth "vigour" index (soil depth/fertility) modulates the
canopy; it is quantised into a few levels, so each field splits into management zones whose
pixels share the same biophysical variables: the radiative transfer then runs once per zone
and date instead of once per pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from releo.data.contracts import LAND_COVER_CLASSES
from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.random_fields import gaussian_random_field, keyed_rng

WATER = LAND_COVER_CLASSES.index("water")
VEGETATED_CLASSES: tuple[int, ...] = tuple(
    LAND_COVER_CLASSES.index(name)
    for name in ("winter_wheat", "maize", "sunflower", "grassland", "broadleaf_forest")
)
VIGOUR_CORRELATION_M = 40.0
"""Correlation length of the within-field vigour index (soil patterns of a few tens of m)."""
VIGOUR_LIMIT = 2.5
"""The vigour index (unit variance) is clipped to ±VIGOUR_LIMIT before quantisation."""
LLOYD_ITERATIONS = 3


@dataclass(frozen=True)
class Parcels:
    """Static layout of the site. Parcel ``p`` (0-based) has id ``p + 1`` in ``parcel_id``."""

    parcel_id: np.ndarray  # (ny, nx) int32, 1..n
    classes: np.ndarray  # (n,) land-cover class index of each parcel
    zone: np.ndarray  # (ny, nx) int32, index into the zone tables
    zone_parcel: np.ndarray  # (n_zones,) parcel index of each zone
    zone_vigour: np.ndarray  # (n_zones,) vigour index of each zone

    @property
    def n_parcels(self) -> int:
        """Number of parcels."""
        return self.classes.size

    @property
    def n_zones(self) -> int:
        """Number of vigour zones (over all parcels)."""
        return self.zone_parcel.size

    @property
    def land_cover(self) -> np.ndarray:
        """(ny, nx) uint8 class index (position in contracts.LAND_COVER_CLASSES)."""
        return self.classes[self.parcel_id - 1].astype(np.uint8)

    @property
    def vigour(self) -> np.ndarray:
        """(ny, nx) float32 quantised vigour index of each pixel."""
        return self.zone_vigour[self.zone]

    @property
    def zone_class(self) -> np.ndarray:
        """Land-cover class of each zone."""
        return self.classes[self.zone_parcel]

    def pixel_counts(self) -> np.ndarray:
        """Pixels per parcel."""
        return np.bincount(self.parcel_id.ravel() - 1, minlength=self.n_parcels)


def voronoi_fields(rng: np.random.Generator, shape: tuple[int, int], n_fields: int) -> np.ndarray:
    """Label raster (ny, nx) of ``n_fields`` centroidal Voronoi cells, ids 1..n in scan order."""
    ny, nx = shape
    rows, cols = np.mgrid[0:ny, 0:nx]
    centres = np.column_stack([rows.ravel() + 0.5, cols.ravel() + 0.5])
    seeds = rng.uniform((0, 0), (ny, nx), size=(n_fields, 2))
    for _ in range(LLOYD_ITERATIONS):
        labels = cKDTree(seeds).query(centres)[1]
        counts = np.bincount(labels, minlength=n_fields)
        occupied = counts > 0
        for axis in range(2):
            sums = np.bincount(labels, weights=centres[:, axis], minlength=n_fields)
            seeds[occupied, axis] = sums[occupied] / counts[occupied]
    labels = cKDTree(seeds).query(centres)[1]
    # Renumber the non-empty cells 1..n in raster scan order, so ids read naturally on a map.
    _, first = np.unique(labels, return_index=True)
    order = labels[np.sort(first)]
    renumber = np.zeros(n_fields, dtype=np.int32)
    renumber[order] = np.arange(1, order.size + 1, dtype=np.int32)
    return renumber[labels].reshape(shape)


def assign_classes(
    rng: np.random.Generator, n_parcels: int, weights: dict[str, float]
) -> np.ndarray:
    """Land-cover class of each parcel, drawn by weight.

    Every weighted class appears at least once when there are enough parcels (so small sites stay
    diverse); the rest are drawn by weight.
    """
    classes = np.array([LAND_COVER_CLASSES.index(name) for name in weights if weights[name] > 0])
    probs = np.array([weights[LAND_COVER_CLASSES[c]] for c in classes], dtype=float)
    probs /= probs.sum()
    guaranteed = rng.permutation(classes)[: min(n_parcels, classes.size)]
    drawn = rng.choice(classes, size=n_parcels - guaranteed.size, p=probs)
    return rng.permutation(np.concatenate([guaranteed, drawn])).astype(np.int64)


def quantise_vigour(vigour: np.ndarray, levels: int) -> np.ndarray:
    """Snap a unit-variance index clipped to ±VIGOUR_LIMIT onto ``levels`` equally spaced values."""
    if levels == 1:
        return np.zeros_like(vigour, dtype=np.float32)
    step = 2 * VIGOUR_LIMIT / (levels - 1)
    clipped = np.clip(vigour, -VIGOUR_LIMIT, VIGOUR_LIMIT)
    return (np.round((clipped + VIGOUR_LIMIT) / step) * step - VIGOUR_LIMIT).astype(np.float32)


def make_parcels(config: SimulationConfig) -> Parcels:
    """Parcels, land cover and management zones of the site (deterministic for the seed)."""
    shape = config.shape
    rng = keyed_rng(config.seed, "parcels")
    site_ha = config.width_m * config.height_m / 1e4
    n_fields = max(1, round(site_ha / config.mean_field_area_ha))
    parcel_id = voronoi_fields(rng, shape, n_fields)
    n_parcels = int(parcel_id.max())
    classes = assign_classes(rng, n_parcels, config.class_weights)

    correlation_px = VIGOUR_CORRELATION_M / config.pixel_size_m
    vigour = gaussian_random_field(keyed_rng(config.seed, "vigour"), shape, correlation_px)
    vigour = quantise_vigour(vigour, config.within_field_levels)
    vigour[classes[parcel_id - 1] == WATER] = 0.0  # open water is homogeneous

    level = np.round((vigour + VIGOUR_LIMIT) * 1000).astype(np.int64)  # exact integer key
    key = (parcel_id.astype(np.int64) - 1) * 10_000 + level
    unique_keys, zone = np.unique(key.ravel(), return_inverse=True)
    zone_parcel = (unique_keys // 10_000).astype(np.int64)
    zone_vigour = ((unique_keys % 10_000) / 1000 - VIGOUR_LIMIT).astype(np.float32)
    return Parcels(
        parcel_id=parcel_id,
        classes=classes,
        zone=zone.reshape(shape).astype(np.int32),
        zone_parcel=zone_parcel,
        zone_vigour=zone_vigour,
    )
