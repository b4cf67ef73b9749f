"""The meteo contract: daily drivers of a site (``meteo.csv``), and readers into it.

Columns: ``date`` (one row per day, no gaps), ``rainfall_mm`` (mm per day),
``temperature_c`` (daily mean air temperature, °C) and ``temperature_excess_c``
(T⁺ = max(T − 5 °C, 0), °C), the drivers that ``discover`` names in ``params.yaml``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.errors import DataError
from releo.data.io import read_table

METEO_COLUMNS: tuple[str, ...] = ("date", "rainfall_mm", "temperature_c", "temperature_excess_c")
"""Columns of a site's ``meteo.csv``."""

TEMPERATURE_BASE_C = 5.0
"""Base of the temperature excess T⁺ = max(T − 5 °C, 0): the usual growing-degree base of
winter cereals and grass, and the onset of sizeable evaporative demand."""

# AgERA5 variable names (as exported by openEO / WorldCereal) → contract column, and the
# units each may be declared in, with the conversion to the contract's unit.
_AGERA5 = {
    "rainfall_mm": ("precipitation_flux", {"mm d-1": 1.0, "mm day-1": 1.0, "mm": 1.0}),
    "temperature_c": ("temperature_mean", {"K": -273.15, "degC": 0.0, "°C": 0.0, "C": 0.0}),
}


def temperature_excess(temperature_c: pd.Series) -> pd.Series:
    """T⁺ = max(T − 5 °C, 0), rounded to 0.1 °C like its inputs."""
    return (temperature_c - TEMPERATURE_BASE_C).clip(lower=0).round(1)


def read_meteo(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read daily drivers into the meteo contract.

    ``path`` is a table (CSV/Parquet) with ``date``, ``rainfall_mm`` and ``temperature_c``
    (``temperature_excess_c`` is derived when absent), or an AgERA5 NetCDF with
    ``precipitation_flux`` and ``temperature_mean`` whose ``units`` attributes say mm d-1 and
    K (or °C); gridded values are averaged over the site. Units are taken from the file,
    never guessed.
    """
    source = Path(path)
    if source.suffix.lower() in (".nc", ".nc4"):
        table = _read_agera5(source)
    else:
        table = read_table(source)
        missing = [c for c in METEO_COLUMNS[:3] if c not in table.columns]
        if missing:
            raise DataError(
                f"{source}: missing column(s) {', '.join(missing)} "
                f"(a meteo table has {', '.join(METEO_COLUMNS[:3])}; found {list(table.columns)})"
            )
    if "temperature_excess_c" not in table.columns:
        table["temperature_excess_c"] = temperature_excess(table["temperature_c"])
    table = table[list(METEO_COLUMNS)].copy()
    table["date"] = pd.to_datetime(table["date"]).dt.normalize()
    return table.sort_values("date").reset_index(drop=True)


def _read_agera5(source: Path) -> pd.DataFrame:
    try:
        ds = xr.open_dataset(source, mask_and_scale=True)
    except Exception as err:  # netCDF/HDF5 raise many types for unreadable files
        raise DataError(f"{source}: cannot read: {type(err).__name__}: {err}") from err
    with ds:
        time = "time" if "time" in ds.dims else "timestamp"
        if time not in ds.dims:
            raise DataError(f"{source}: no time dimension (dims: {list(ds.dims)})")
        columns = {"date": pd.to_datetime(ds[time].values)}
        for column, (name, units) in _AGERA5.items():
            if name not in ds:
                raise DataError(
                    f"{source}: no variable {name!r} for {column} (found {list(ds.data_vars)})"
                )
            unit = str(ds[name].attrs.get("units", "")).strip()
            if unit not in units:
                raise DataError(
                    f"{source}: variable {name!r} has units {unit!r}; expected one of "
                    f"{', '.join(units)}"
                )
            other = [d for d in ds[name].dims if d != time]
            values = ds[name].mean(other).values.astype(np.float64) + units[unit]
            columns[column] = np.round(values, 1)
    return pd.DataFrame(columns)


METEO_RANGES: dict[str, tuple[float, float]] = {
    "rainfall_mm": (0.0, 500.0),
    "temperature_c": (-60.0, 60.0),
    "temperature_excess_c": (0.0, 60.0),
}
"""Plausible daily values (inclusive): the wettest day on record is ~1,800 mm; 500 catches
unit mistakes (e.g. a flux in kg m-2 s-1 × 86400 applied twice) without rejecting storms."""


def check_meteo(
    table: pd.DataFrame,
    source: str | os.PathLike[str],
    period: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> pd.DataFrame:
    """Check a meteo table against the meteo contract.

    Every day once, no gap, no missing or implausible value, and (with ``period``) every day of the
    site's period covered. Errors name the file, the column and the offending dates and values.
    """
    missing = [c for c in METEO_COLUMNS if c not in table.columns]
    if missing:
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}")
    dates = pd.to_datetime(table["date"]).dt.normalize()
    duplicated = dates[dates.duplicated()]
    if len(duplicated):
        raise DataError(f"{source}: column 'date' repeats {_days(duplicated)}")
    ordered = dates.sort_values()
    gaps = ordered[ordered.diff() > pd.Timedelta(days=1)]
    if len(gaps):
        raise DataError(f"{source}: column 'date' has gaps: no day before {_days(gaps)}")
    for column, (low, high) in METEO_RANGES.items():
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values < low) | (values > high)
        if bad.any():
            shown = ", ".join(
                f"{d.date()}: {table[column][i]}" for i, d in dates[bad].head(5).items()
            )
            raise DataError(
                f"{source}: column {column!r} missing or outside [{low:g}, {high:g}] on "
                f"{int(bad.sum())} day(s) ({shown})"
            )
    if period is not None and len(dates):
        first, last = (pd.Timestamp(p).normalize() for p in period)
        if dates.min() > first or dates.max() < last:
            raise DataError(
                f"{source}: column 'date' covers {dates.min().date()}..{dates.max().date()}, "
                f"not the site's period {first.date()}..{last.date()}"
            )
    return table


def _days(dates: pd.Series) -> str:
    shown = ", ".join(str(d.date()) for d in dates.head(5))
    return shown + (f" (+{len(dates) - 5} more)" if len(dates) > 5 else "")
