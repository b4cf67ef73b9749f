"""A site directory: the raw inputs of the pipeline, as tracked by ``data.dvc``.

Layout (the simulator writes it; real sites follow it)::

    site.json                 metadata (``SiteRecord`` for real sites; the simulator's truth)
    s2_l2a.zarr  s1_grd.zarr  the S2 and S1 contract cubes
    reference/snap_lai.zarr   the reference operational product
    field_surveys.csv         LAI field measurements
    meteo.csv                 daily meteorological drivers
    truth/truth.zarr          simulator truth (absent for real sites)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from pydantic import ValidationError
from pyproj import CRS

from releo import quality
from releo.data.errors import DataError
from releo.data.io import open_cube, read_table
from releo.data.meteo import check_meteo
from releo.data.site_record import SiteRecord

SITE_FILES = {
    "metadata": "site.json",
    "s2": "s2_l2a.zarr",
    "s1": "s1_grd.zarr",
    "reference": "reference/snap_lai.zarr",
    "surveys": "field_surveys.csv",
    "meteo": "meteo.csv",
    "truth": "truth/truth.zarr",
}
REQUIRED = ("s2", "s1")


@dataclass
class Site:
    """The opened inputs of a site; optional parts are None when absent."""

    root: Path
    metadata: dict
    s2: xr.Dataset
    s1: xr.Dataset
    reference: xr.Dataset | None
    surveys: pd.DataFrame | None
    meteo: pd.DataFrame | None

    def path(self, part: str) -> Path:
        """The file of ``part`` (a key of ``SITE_FILES``)."""
        return self.root / SITE_FILES[part]

    @property
    def lazy(self) -> bool:
        """Whether the cubes are their stored files opened lazily (``open_site(lazy=True)``)."""
        return any(var.chunks is not None for var in self.s2.data_vars.values())

    @property
    def has_truth(self) -> bool:
        """Whether the site carries the simulator's truth (real sites do not)."""
        return self.path("truth").exists()

    @property
    def crs(self) -> str:
        """The CRS of the site's S2 cube, as text."""
        return self.s2.rio.crs.to_string()

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(xmin, ymin, xmax, ymax) of the S2 grid, in the site CRS."""
        xmin, ymin, xmax, ymax = (float(v) for v in self.s2.rio.bounds())
        return xmin, ymin, xmax, ymax

    @property
    def period(self) -> tuple[pd.Timestamp, pd.Timestamp]:
        """First and last day observed by either sensor."""
        times = [self.s2.time.values.min(), self.s2.time.values.max()]
        times += [self.s1.time.values.min(), self.s1.time.values.max()]
        return pd.Timestamp(min(times)).normalize(), pd.Timestamp(max(times)).normalize()


def open_site(root: str | Path, *, lazy: bool = False) -> Site:
    """Open every part of a site directory; a missing required part is a DataError.

    ``lazy``: the cubes are dask-backed (:func:`open_cube`), read only where computed.
    """
    root = Path(root)
    for part in REQUIRED:
        if not (root / SITE_FILES[part]).exists():
            raise DataError(f"{root / SITE_FILES[part]}: missing (a site needs {REQUIRED})")
    meta_path = root / SITE_FILES["metadata"]
    try:
        metadata = json.loads(meta_path.read_text()) if meta_path.exists() else {}
    except json.JSONDecodeError as err:
        raise DataError(f"{meta_path}: not valid JSON ({err})") from err

    def optional_cube(part: str) -> xr.Dataset | None:
        path = root / SITE_FILES[part]
        return open_cube(path, lazy=lazy) if path.exists() else None

    def optional_table(part: str) -> pd.DataFrame | None:
        path = root / SITE_FILES[part]
        return read_table(path) if path.exists() else None

    return Site(
        root=root,
        metadata=metadata,
        s2=open_cube(root / SITE_FILES["s2"], lazy=lazy),
        s1=open_cube(root / SITE_FILES["s1"], lazy=lazy),
        reference=optional_cube("reference"),
        surveys=optional_table("surveys"),
        meteo=optional_table("meteo"),
    )


def validate_site(site: Site, context_root: str | os.PathLike[str] | None = None) -> dict:
    """Run the quality gate of every part present; raises QualityGateError on the first failure.

    Returns the gates' statistics per part (for ``metrics/``).
    """
    check_consistency(site)
    root, stored = context_root, site.lazy
    results: dict[str, Any] = {
        "s2": quality.check_s2_cube(site.s2, site.path("s2"), context_root=root, stored=stored),
        "s1": quality.check_s1_cube(site.s1, site.path("s1"), context_root=root, stored=stored),
    }
    if site.reference is not None:
        results["reference"] = quality.check_reference_product(
            site.reference, site.path("reference"), context_root=root, stored=stored
        )
    if site.surveys is not None:
        results["surveys"] = quality.check_field_survey(
            site.surveys,
            site.path("surveys"),
            site_bounds=site.bounds,
            period=site.period,
            site_crs=site.crs,
            context_root=context_root,
        )
    if site.meteo is not None:
        check_meteo(site.meteo, site.path("meteo"), period=site.period)
        results["meteo"] = {"days": len(site.meteo)}
    return results


def check_consistency(site: Site) -> None:
    """Check that the parts of a site agree.

    S1 and S2 must share one CRS and one grid and have overlapping periods, and a real site's
    ``site.json`` must hold its contract.
    """
    if site.metadata.get("kind") == "real":
        try:
            SiteRecord.model_validate(site.metadata)
        except ValidationError as err:
            raise DataError(f"{site.path('metadata')}: not a valid site record: {err}") from err
    s1_crs, s2_crs = site.s1.rio.crs, site.s2.rio.crs
    if s1_crs is None or CRS.from_user_input(s1_crs) != CRS.from_user_input(s2_crs):
        raise DataError(
            f"{site.path('s1')}: crs is {s1_crs}, but {site.path('s2')} is in {s2_crs}; "
            "put S1 on the S2 grid (`releo site build` does)"
        )
    for axis in ("x", "y"):
        a, b = site.s1[axis].values, site.s2[axis].values
        if a.shape != b.shape or not np.allclose(a, b, atol=0.01):
            raise DataError(
                f"{site.path('s1')}: {axis} grid {_extent(a)} differs from the S2 grid "
                f"{_extent(b)} of {site.path('s2')}"
            )
    s1_days = pd.DatetimeIndex(site.s1.time.values)
    s2_days = pd.DatetimeIndex(site.s2.time.values)
    if s1_days.max() < s2_days.min() or s2_days.max() < s1_days.min():
        raise DataError(
            f"{site.path('s1')}: time {s1_days.min().date()}..{s1_days.max().date()} does "
            f"not overlap the S2 period {s2_days.min().date()}..{s2_days.max().date()}"
        )


def _extent(values: np.ndarray) -> str:
    if values.size == 0:
        return "(empty)"
    return f"{values.size} px, {float(values.min()):.2f}..{float(values.max()):.2f}"
