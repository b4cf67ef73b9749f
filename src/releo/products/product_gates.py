"""Great Expectations gates of the product stages: embeddings and decoded LAI cubes.

GE is tabular: an embeddings cube is validated through a per-chunk summary (finite share,
largest magnitude, norm) and a decoded product through a per-date summary (valid share, LAI
and σ ranges). Both go through the same checkpoints, Data Docs and error messages as the
data contracts' gates (:mod:`releo.quality`).
"""

from __future__ import annotations

import os
from pathlib import Path
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.errors import DataError
from releo.models import VARIABLE_RANGES
from releo.quality.gates import GateResult, check_field_survey, validate_tables
from releo.quality.suites import TableSuite

FLOAT16_MAX = 65504.0
EMBEDDING_ATTRS = ("chunk_size_m", "chunk_days", "chunk_x_min", "chunk_y_max")


def _gxe() -> Any:
    import great_expectations.expectations as gxe

    return gxe


def _embedding_suite() -> list[Any]:
    gxe = _gxe()
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="chunk"),
        gxe.ExpectColumnValuesToBeBetween(
            column="finite_fraction", min_value=1.0, max_value=1.0,
            notes="Every feature of every chunk is a finite number.",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="abs_max", min_value=0.0, max_value=FLOAT16_MAX,
            notes="Features fit float16 storage.",
        ),
        gxe.ExpectColumnValuesToBeBetween(
            column="norm", min_value=0.0, strict_min=True,
            notes="An all-zero embedding carries nothing: the encoder did not run.",
        ),
    ]  # fmt: skip


def _product_suite() -> list[Any]:
    gxe = _gxe()
    lo, hi = VARIABLE_RANGES["lai"]
    return [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        gxe.ExpectColumnValuesToBeUnique(column="date"),
        gxe.ExpectColumnValuesToBeBetween(column="valid_fraction", min_value=0.0, max_value=1.0),
        gxe.ExpectColumnValuesToBeBetween(
            column="lai_min", min_value=lo, max_value=hi, notes="Decoded LAI is physical."
        ),
        gxe.ExpectColumnValuesToBeBetween(column="lai_max", min_value=lo, max_value=hi),
        gxe.ExpectColumnValuesToBeBetween(column="lai_std_min", min_value=0.0),
        gxe.ExpectColumnValuesToBeBetween(
            column="interval_order_violations", min_value=0, max_value=0,
            notes="lai_low <= lai <= lai_high everywhere.",
        ),
    ]  # fmt: skip


EMBEDDINGS = TableSuite("embeddings.chunks", ("chunk",), _embedding_suite)
PRODUCT = TableSuite("lai_product.dates", ("date",), _product_suite)


def embedding_summary(ds: xr.Dataset) -> pd.DataFrame:
    """One row per chunk present in the cube (``n_s2 >= 0``): finite share, max |z|, norm."""
    z = ds["embedding"].values.astype(np.float32)
    present = ds["n_s2"].values >= 0 if "n_s2" in ds else np.ones(z.shape[:3], bool)
    w, r, c = np.nonzero(present)
    rows = z[w, r, c]
    finite = np.isfinite(rows)
    safe = np.where(finite, rows, 0.0)
    return pd.DataFrame(
        {
            "chunk": [f"r{a:03d}c{b:03d}t{t:03d}" for t, a, b in zip(w, r, c, strict=True)],
            "finite_fraction": finite.mean(axis=1),
            "abs_max": np.abs(safe).max(axis=1),
            "norm": np.linalg.norm(safe, axis=1),
        }
    )


def product_summary(ds: xr.Dataset) -> pd.DataFrame:
    """One row per date of a decoded product: valid share and the LAI/σ ranges."""
    rows = []
    for i, when in enumerate(pd.DatetimeIndex(ds.time.values)):
        lai, std = ds["lai"].values[i], ds["lai_std"].values[i]
        ok = np.isfinite(lai)
        order = (ds["lai_low"].values[i] > lai + 1e-4) | (lai > ds["lai_high"].values[i] + 1e-4)
        rows.append(
            {
                "date": str(when.date()),
                "valid_fraction": float(ok.mean()),
                "lai_min": float(lai[ok].min()) if ok.any() else 0.0,
                "lai_max": float(lai[ok].max()) if ok.any() else 0.0,
                "lai_std_min": float(np.nanmin(std)) if ok.any() else 0.0,
                "interval_order_violations": int(order[ok].sum()),
            }
        )
    return pd.DataFrame(rows)


def check_embeddings(
    ds: xr.Dataset, source: str | os.PathLike[str], *, context_root: str | Path | None = None
) -> GateResult:
    """Gate an embeddings cube: its chunk geometry attributes (DataError) and the GE suite."""
    started = perf_counter()
    missing = [a for a in EMBEDDING_ATTRS if a not in ds.attrs]
    if "embedding" not in ds or missing or ds.rio.crs is None:
        what = f"attributes {missing}" if missing else "variable 'embedding' or CRS"
        raise DataError(f"{source}: not an embeddings cube ({what} missing); rerun embed")
    table = embedding_summary(ds)
    return validate_tables(
        "embeddings", os.fspath(source), [(EMBEDDINGS, table)], context_root, started
    )


def check_lai_product(
    ds: xr.Dataset, source: str | os.PathLike[str], *, context_root: str | Path | None = None
) -> GateResult:
    """Gate a decoded LAI product: its variables (DataError) and the GE suite."""
    started = perf_counter()
    missing = [v for v in ("lai", "lai_std", "lai_low", "lai_high") if v not in ds]
    if missing:
        raise DataError(f"{source}: variables {missing} missing; rerun the decode stage")
    table = product_summary(ds)
    return validate_tables(
        "lai_product", os.fspath(source), [(PRODUCT, table)], context_root, started
    )


def check_site_surveys(site, *, context_root: str | Path | None = None) -> GateResult | None:
    """Gate the field surveys of a :class:`releo.data.site.Site` against its bounds and period.

    Also against its CRS; None when the site has no surveys.
    """
    if site.surveys is None:
        return None
    return check_field_survey(
        site.surveys, site.path("surveys"), site_bounds=site.bounds, period=site.period,
        site_crs=site.crs, context_root=context_root,
    )  # fmt: skip
