"""Sun/view angle grids of S2 metadata (ESA MTD_TL.xml, Theia MTD_ALL.xml) sampled over an area.

Both formats give 23 × 23 grids with a 5 km step whose first node is the tile's upper-left
corner; viewing grids come per band and detector and are NaN outside each detector's footprint.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from releo.data.errors import DataError
from releo.data.sources import _xml

Bounds = tuple[float, float, float, float]

_SAMPLES = 9
"""Sample points per axis over the area: the grids vary smoothly, so a few suffice."""


@dataclass(frozen=True)
class AngleGrid:
    """Zenith and azimuth grids (degrees, NaN = no value), node (0, 0) at (ulx, uly)."""

    zenith: np.ndarray
    azimuth: np.ndarray
    ulx: float
    uly: float
    col_step: float
    row_step: float

    def sample(self, bounds: Bounds) -> tuple[float, float]:
        """Mean zenith and circular-mean azimuth over ``bounds`` (NaN where the grid has none)."""
        xmin, ymin, xmax, ymax = bounds
        xs = np.linspace(xmin, xmax, _SAMPLES)
        ys = np.linspace(ymax, ymin, _SAMPLES)
        gx, gy = np.meshgrid(xs, ys)
        cols = (gx - self.ulx) / self.col_step
        rows = (self.uly - gy) / self.row_step
        zen = _bilinear(self.zenith, rows, cols)
        rad = np.deg2rad(self.azimuth)
        # azimuths wrap at 360°: interpolate the unit vector, not the angle
        sin = _bilinear(np.sin(rad), rows, cols)
        cos = _bilinear(np.cos(rad), rows, cols)
        return _nanmean(zen), _azimuth(_nanmean(sin), _nanmean(cos))


def _bilinear(grid: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Bilinear interpolation that ignores NaN nodes (weights renormalised; all NaN → NaN)."""
    n_rows, n_cols = grid.shape
    rows = np.clip(rows, 0, n_rows - 1)
    cols = np.clip(cols, 0, n_cols - 1)
    r0 = np.minimum(np.floor(rows).astype(int), n_rows - 2)
    c0 = np.minimum(np.floor(cols).astype(int), n_cols - 2)
    fr, fc = rows - r0, cols - c0
    total = np.zeros(rows.shape)
    weight = np.zeros(rows.shape)
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        node = grid[r0 + dr, c0 + dc]
        ok = np.isfinite(node)
        total += np.where(ok, node, 0.0) * w
        weight += np.where(ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 1e-12, total / weight, np.nan)


def _nanmean(values: np.ndarray | Sequence[float]) -> float:
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).any():
        return float("nan")
    return float(np.nanmean(values))


def _azimuth(sin: float, cos: float) -> float:
    if not (np.isfinite(sin) and np.isfinite(cos)):
        return float("nan")
    return float(np.rad2deg(np.arctan2(sin, cos)) % 360.0)


def circular_mean(azimuths: Iterable[float]) -> float:
    """Mean of azimuths in degrees on the circle (NaN ignored; all NaN → NaN)."""
    rad = np.deg2rad(np.asarray(list(azimuths), dtype=float))
    return _azimuth(_nanmean(np.sin(rad)), _nanmean(np.cos(rad)))


def merge_grids(grids: Sequence[AngleGrid]) -> AngleGrid:
    """One grid from several on the same nodes (detectors, then bands): NaN-aware means."""
    zen = np.stack([g.zenith for g in grids])
    rad = np.deg2rad(np.stack([g.azimuth for g in grids]))
    with warnings.catch_warnings():
        # nodes outside every detector stay NaN: that is the information, not an error
        warnings.simplefilter("ignore", RuntimeWarning)
        zenith = np.nanmean(zen, axis=0)
        azimuth = np.rad2deg(np.arctan2(np.nanmean(np.sin(rad), 0), np.nanmean(np.cos(rad), 0)))
    first = grids[0]
    return AngleGrid(zenith, azimuth % 360.0, first.ulx, first.uly, first.col_step, first.row_step)


def parse_values(text_rows: Iterable[str | None]) -> np.ndarray:
    """A ``Values_List`` (rows of space-separated numbers, 'NaN' allowed) as a 2-D array."""
    rows = [[float(v) for v in (row or "").split()] for row in text_rows]
    if not rows or len({len(r) for r in rows}) != 1 or not rows[0]:
        raise ValueError("rows of unequal or zero length")
    return np.asarray(rows, dtype=float)


def grid_from_xml(element: ET.Element, ulx: float, uly: float, file: Path, where: str) -> AngleGrid:
    """Angle grid of an element with ``Zenith`` and ``Azimuth`` children.

    The children hold ``COL_STEP``, ``ROW_STEP`` and ``Values_List/VALUES``, as both ESA and Theia
    write them.
    """
    layers = {}
    steps = {}
    for part in ("Zenith", "Azimuth"):
        node = element.find(f"{{*}}{part}")
        if node is None:
            raise DataError(f"{file}: missing element {where}/{part}")
        steps[part] = (_xml.number(node, "COL_STEP", file), _xml.number(node, "ROW_STEP", file))
        rows = [v.text for v in _xml.find_all(node, "Values_List/VALUES")]
        try:
            layers[part] = parse_values(rows)
        except ValueError as err:
            raise DataError(f"{file}: unreadable {where}/{part}/Values_List: {err}") from err
    col_step, row_step = steps["Zenith"]
    return AngleGrid(layers["Zenith"], layers["Azimuth"], ulx, uly, col_step, row_step)


def mean_pair(node: ET.Element, path: str, file: Path) -> tuple[float, float] | None:
    """(zenith, azimuth) from ``path/ZENITH_ANGLE`` and ``path/AZIMUTH_ANGLE``, if present."""
    found = node if path == "." else node.find(".//{*}" + path.replace("/", "/{*}"))
    if found is None:
        return None
    zenith = _xml.optional_text(found, "ZENITH_ANGLE")
    azimuth = _xml.optional_text(found, "AZIMUTH_ANGLE")
    if zenith is None or azimuth is None:
        return None
    try:
        return float(zenith), float(azimuth)
    except ValueError as err:
        raise DataError(f"{file}: unreadable mean angle in {path}: {err}") from err


def mean_of_pairs(pairs: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """Mean zenith and circular-mean azimuth of per-band means (None when there are none)."""
    if not pairs:
        return None
    return float(np.mean([p[0] for p in pairs])), circular_mean(p[1] for p in pairs)


@dataclass(frozen=True)
class TileAngles:
    """A product's sun and (merged) view grids plus the tile means to fall back on."""

    file: Path
    sun: AngleGrid
    view: AngleGrid
    mean_sun: tuple[float, float] | None
    mean_view: tuple[float, float] | None
    mean_sun_element: str
    mean_view_element: str

    def over(self, bounds: Bounds) -> dict[str, float]:
        """Sun/view zenith and azimuth over ``bounds``; the tile means where grids are empty."""
        out = {}
        for kind, grid, mean, element in (
            ("sun", self.sun, self.mean_sun, self.mean_sun_element),
            ("view", self.view, self.mean_view, self.mean_view_element),
        ):
            zenith, azimuth = grid.sample(bounds)
            if not (np.isfinite(zenith) and np.isfinite(azimuth)):
                if mean is None:
                    raise DataError(
                        f"{self.file}: the {kind} angle grid has no value over {bounds} "
                        f"and there is no {element} to fall back on"
                    )
                zenith, azimuth = mean
            out[f"{kind}_zenith"], out[f"{kind}_azimuth"] = zenith, azimuth
        return out
