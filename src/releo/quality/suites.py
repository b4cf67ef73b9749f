"""Great Expectations suites, one set per data contract, built from ``specs``.

Each validated table has its own suite (named ``<contract>.<table>``). Great Expectations is
imported only when a suite is built, i.e. when a gate actually runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from releo.data import contracts as c
from releo.quality import plausibility
from releo.quality.specs import (
    CLEAR_OUTLIER_SHARE,
    INTEGER_DTYPES,
    LAI,
    LAI_STD,
    MAX_HAZE_SHARE,
    MAX_MEAN_HAZE_SHARE,
    MAX_NAN_CLEAR_FRACTION,
    MAX_NEGATIVE_NDVI_SHARE,
    MAX_SATURATED_SHARE,
    MAX_ZERO_SPECTRUM_SHARE,
    NDVI_EXCHANGE_THRESHOLD,
    NUMERIC_DTYPES,
    PIXEL_TABLE_ANGLES,
    PIXEL_TABLE_OPTIONAL_RANGES,
    REFLECTANCE,
    RESOLUTION,
    S1_MIN_SPREAD_DB,
    SUN_ZENITH_TOLERANCE_DEG,
    SURVEY_NUMERIC,
    SURVEY_TEXT,
    CubeSpec,
    Range,
)


@dataclass(frozen=True)
class TableSuite:
    """One validated table: its suite/asset/checkpoint name and its expectations."""

    name: str
    index_columns: tuple[str, ...]
    """Columns that identify an offending row in messages and Data Docs."""
    build: Callable[[], list[Any]]
    """Returns the GE expectations; called only when the suite is (re)registered."""


def _gx() -> tuple[Any, Any]:
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    return gxe, Column


def _between(column: str, rng: Range, where: Any = None, **extra: Any) -> Any:
    gxe, _ = _gx()
    kwargs = {"row_condition": where} if where is not None else {}
    return gxe.ExpectColumnValuesToBeBetween(
        column=column,
        min_value=rng.lo,
        max_value=rng.hi,
        strict_min=rng.strict_min,
        strict_max=rng.strict_max,
        **kwargs,
        **extra,
    )


def _in_set(column: str, values: Iterable[Any], where: Any = None, **extra: Any) -> Any:
    gxe, _ = _gx()
    kwargs = {"row_condition": where} if where is not None else {}
    return gxe.ExpectColumnValuesToBeInSet(column=column, value_set=list(values), **kwargs, **extra)


def _not_null(column: str, where: Any = None, **extra: Any) -> Any:
    gxe, _ = _gx()
    kwargs = {"row_condition": where} if where is not None else {}
    return gxe.ExpectColumnValuesToNotBeNull(column=column, **kwargs, **extra)


def _grouped(mapping: dict[str, Any]) -> dict[Any, list[str]]:
    """Variables grouped by their shared threshold: one expectation per group, not per band."""
    groups: dict[Any, list[str]] = defaultdict(list)
    for name, value in mapping.items():
        groups[value].append(name)
    return groups


def _which(names: list[str]) -> Any:
    _, Column = _gx()
    return Column("variable") == names[0] if len(names) == 1 else Column("variable").is_in(names)


def _cube_bands(spec: CubeSpec) -> list[Any]:
    gxe, _ = _gx()
    out: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    for rng, names in _grouped(dict(spec.pixel_ranges)).items():
        where = _which(names)
        # min/max are taken over the pixels a variable is judged on (summaries._reduce).
        if spec.mask is not None and set(names) <= set(spec.judged_where_clear):
            on = f"the clear ({spec.mask} == {c.MASK_CLEAR}) pixels"
        elif spec.mask is not None and names == [spec.mask]:
            on = "every pixel"
        else:
            on = "the finite pixels"
        note = f"{', '.join(names)} must lie in {rng} on {on} of every acquisition."
        out += [_between("min", rng, where, notes=note), _between("max", rng, where)]
    for dtypes, names in _grouped(dict(spec.pixel_dtypes)).items():
        out.append(_in_set("dtype", dtypes, _which(names)))
    if spec.judged_where_clear:
        out.append(
            _between(
                "nan_clear_fraction",
                Range(0.0, MAX_NAN_CLEAR_FRACTION),
                _which(list(spec.judged_where_clear)),
                notes="NaN is allowed only where the mask is not clear (cloud, shadow, no data).",
            )
        )
    return out


def _cube_acquisitions(spec: CubeSpec) -> list[Any]:
    gxe, _ = _gx()
    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        _not_null("time"),
        gxe.ExpectColumnValuesToBeUnique(column="time", notes="One acquisition per date."),
        gxe.ExpectColumnValuesToBeIncreasing(
            column="time", strictly=True, notes="Dates must be sorted (monotonic increasing)."
        ),
    ]
    for name, rng in spec.time_ranges.items():
        out += [_not_null(name), _between(name, rng)]
    for name, values in spec.time_sets.items():
        out += [_not_null(name), _in_set(name, values)]
    for name in spec.time_integer:
        out.append(
            gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=list(INTEGER_DTYPES))
        )
    return out


def _cube_metadata(spec: CubeSpec) -> list[Any]:
    gxe, _ = _gx()
    out: list[Any] = [
        gxe.ExpectTableRowCountToEqual(value=1),
        _in_set("crs_present", [True]),
        _in_set("crs_projected", [True], notes="Rasters are on a projected grid (e.g. UTM)."),
        _not_null("crs_units"),
        _in_set("crs_units", ["metre"]),
        _in_set("dims", [",".join(("time", "y", "x"))]),
        gxe.ExpectColumnValuesToBeBetween(column="n_time", min_value=1),
    ]
    if spec.check_resolution:
        note = f"Pixels are {c.PIXEL_SIZE_M:g} m on a regular grid."
        # Between skips nulls, and a one-pixel axis has no spacing: require one.
        out += [
            _not_null("res_x"),
            _not_null("res_y"),
            _between("res_x", RESOLUTION, notes=note),
            _between("res_y", RESOLUTION),
            _in_set("x_regular", [True]),
            _in_set("y_regular", [True]),
        ]
    return out


def _cube_sample(spec: CubeSpec) -> list[Any]:
    gxe, Column = _gx()
    out: list[Any] = [gxe.ExpectTableRowCountToBeBetween(min_value=1)]
    clear = Column(spec.mask) == c.MASK_CLEAR if spec.mask is not None else None
    for name, rng in spec.pixel_ranges.items():
        if name == spec.mask:
            continue
        # Masked observations may hold anything (> 1 under clouds, 0 or -10000 as no data).
        if name in spec.judged_where_clear:
            # as the bands' trimmed min/max: a few clear-marked outliers are real L2A
            out.append(_between(name, rng, clear, mostly=1.0 - CLEAR_OUTLIER_SHARE))
        else:
            out.append(_between(name, rng))
    if spec.mask is not None:
        out += [_not_null(spec.mask), _in_set(spec.mask, list(spec.mask_values))]
        out += [_not_null(name, clear) for name in spec.judged_where_clear]
    return out


def _share(column: str, most: float, note: str) -> Any:
    return _between(column, Range(0.0, most), notes=note)


def _cube_plausibility(spec: CubeSpec) -> list[Any]:
    """Per-date distributions and clear spectra (``plausibility``): wrong data in range."""
    out: list[Any] = []
    for name, rng in spec.median_ranges.items():
        note = f"Median {name} of a date in {rng} dB: a median near 0-1 is linear power, not dB."
        out += [
            _between(f"{name}_median", rng, notes=note),
            _between(
                f"{name}_spread",
                Range(S1_MIN_SPREAD_DB, float("inf")),
                notes=f"{name} p90 - p10 of a date >= {S1_MIN_SPREAD_DB:g} dB (real land: 5+).",
            ),
        ]
    if spec.clear_spectra:
        out += [
            _share(
                plausibility.ZERO,
                MAX_ZERO_SPECTRUM_SHARE,
                "Clear pixels with all bands 0 are nodata written as 0 under a clear mask.",
            ),
            _share(
                plausibility.NEGATIVE_NDVI,
                MAX_NEGATIVE_NDVI_SHARE,
                f"Clear land pixels with NDVI < {NDVI_EXCHANGE_THRESHOLD:g} (B04 above B08): "
                "exchanged bands.",
            ),
            _share(
                plausibility.HAZE, MAX_HAZE_SHARE, "Bright flat blue-highest clear spectra: clouds."
            ),
            _share(
                plausibility.HAZE_MEAN, MAX_MEAN_HAZE_SHARE, "Clouds marked clear on many dates."
            ),
            _share(plausibility.SATURATED, MAX_SATURATED_SHARE, "Clear pixels at 1 are saturated."),
        ]
    if spec.sun_zenith is not None:
        tol = SUN_ZENITH_TOLERANCE_DEG
        out.append(
            _between(
                plausibility.SUN_OFF,
                Range(-tol, tol),
                notes=f"{spec.sun_zenith} within {tol:g}° of the range the sun can have on "
                "that day at the site's latitude (radians are far below it).",
            )
        )
    return out


def cube_suites(spec: CubeSpec) -> tuple[TableSuite, ...]:
    """The table suites of a cube contract (see ``summaries.cube_tables``)."""
    p = spec.contract
    suites: tuple[TableSuite, ...] = (
        TableSuite(f"{p}.bands", ("time", "variable"), lambda: _cube_bands(spec)),
        TableSuite(f"{p}.acquisitions", ("time",), lambda: _cube_acquisitions(spec)),
        TableSuite(f"{p}.metadata", (), lambda: _cube_metadata(spec)),
        TableSuite(f"{p}.sample", ("time", "y", "x"), lambda: _cube_sample(spec)),
    )
    if spec.plausibility:
        # the sun zenith is quoted next to each offending date: it is the value at fault
        index = ("time", spec.sun_zenith) if spec.sun_zenith else ("time",)
        suites += (TableSuite(f"{p}.plausibility", index, lambda: _cube_plausibility(spec)),)
    return suites


def _param(name: str) -> dict[str, str]:
    return {"$PARAMETER": name}


def _survey() -> list[Any]:
    gxe, _ = _gx()
    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        _not_null("point_id"),
        _not_null("date", notes="Dates must parse (ISO 8601)."),
        gxe.ExpectColumnValuesToBeBetween(
            column="date",
            min_value=_param("period_start"),
            max_value=_param("period_end"),
            notes="Measurements must fall inside the data period.",
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["point_id", "date"], notes="One measurement per point and date."
        ),
    ]
    out += [
        gxe.ExpectColumnValuesToBeInTypeList(column=name, type_list=list(NUMERIC_DTYPES))
        for name in SURVEY_NUMERIC
    ]
    for name in SURVEY_TEXT:
        out += [_not_null(name), gxe.ExpectColumnValuesToBeOfType(column=name, type_="str")]
    out += [
        _in_set("land_cover", c.LAND_COVER_CLASSES),
        _not_null("lai"),
        _between("lai", LAI),
        _not_null("lai_std"),
        _between("lai_std", LAI_STD),
    ]
    note = "Points, reprojected from their crs column to the site CRS, lie inside the site."
    for axis in ("x", "y"):
        out += [
            _not_null(f"{axis}_site", notes=f"{axis} must be numeric in a valid CRS."),
            gxe.ExpectColumnValuesToBeBetween(
                column=f"{axis}_site",
                min_value=_param(f"{axis}_min"),
                max_value=_param(f"{axis}_max"),
                notes=note,
            ),
        ]
    return out


SURVEY = TableSuite("field_survey.table", ("point_id", "date"), _survey)


def _pixel_table() -> list[Any]:
    gxe, Column = _gx()
    clear = Column("cloud_mask") == 0
    out: list[Any] = [
        gxe.ExpectTableRowCountToBeBetween(min_value=1),
        _not_null("point_id"),
        _not_null("date"),
        gxe.ExpectCompoundColumnsToBeUnique(column_list=["point_id", "date"]),
        _not_null("cloud_mask"),
        _in_set("cloud_mask", c.PIXEL_CLOUD_MASK_VALUES),
    ]
    # Cloudy rows (cloud_mask 1) may hold any band value (> 1, 0, -10000, empty): only clear
    # rows are judged. A cloudy row with no bands and no angles is a requested date (LAI is
    # asked where there was no acquisition).
    for band in c.S2_BANDS:
        note = f"{band} must lie in {REFLECTANCE} on clear rows (cloud_mask == 0)."
        out += [_between(band, REFLECTANCE, clear, notes=note), _not_null(band, clear)]
    for name, rng in PIXEL_TABLE_ANGLES.items():
        out += [_not_null(name, clear), _between(name, rng)]
    out += [_between(name, rng) for name, rng in PIXEL_TABLE_OPTIONAL_RANGES.items()]
    return out


PIXEL_TABLE = TableSuite("pixel_table.table", ("point_id", "date"), _pixel_table)
