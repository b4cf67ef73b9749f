"""Run the quality gates: register suites in a GE file context, validate, report, raise.

Each validated table has a pandas dataframe asset, a whole-dataframe batch definition, a suite,
a validation definition and a checkpoint (all named ``<contract>.<table>``). A table needs its
own checkpoint because a checkpoint passes the same ``batch_parameters`` (hence the same
dataframe) to all of its validation definitions. The Data Docs are refreshed once per gate,
for all of its tables' results, rather than by an UpdateDataDocsAction per checkpoint: each
build re-renders the index page from every stored result, so one build per table cost a
cube gate four of them (about half its time), and more as ``gx/`` accumulates runs.
"""

from __future__ import annotations

import os
import re
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from time import perf_counter
from typing import Any, TypeAlias

import numpy as np
import pandas as pd
import xarray as xr

from releo.data import contracts as c
from releo.quality.errors import Failure, QualityGateError
from releo.quality.specs import (
    PARTIAL_UNEXPECTED_COUNT,
    REFERENCE_PRODUCT,
    S1_CUBE,
    S2_CUBE,
    CubeSpec,
)
from releo.quality.suites import PIXEL_TABLE, SURVEY, TableSuite, cube_suites
from releo.quality.summaries import (
    check_cube_structure,
    check_table_columns,
    cube_tables,
    pixel_table,
    survey_table,
)

DATASOURCE = "releo"
BATCH_DEFINITION = "whole_dataframe"

PathLike = str | os.PathLike[str]
DateLike: TypeAlias = str | date | datetime | np.datetime64 | pd.Timestamp

# A gate process runs many gates on one context: keep the context and the registered
# checkpoints so that only the first run of each table pays for (re)registration.
_CONTEXTS: dict[Path, Any] = {}
_CHECKPOINTS: dict[tuple[Path, str], Any] = {}


@dataclass(frozen=True)
class GateResult:
    """Outcome of a gate that passed (a failing gate raises QualityGateError instead)."""

    contract: str
    source: str
    success: bool
    statistics: dict[str, float]
    """Evaluated, successful and unsuccessful expectations, success percent, over all tables."""
    docs_path: Path | None
    """The Data Docs index.html."""
    rows: dict[str, int] = field(default_factory=dict)
    """Rows validated per table."""
    seconds: float = 0.0


def default_context_root() -> Path:
    """``<cwd>/gx``: the GE file-context folder (Data Docs under ``uncommitted/data_docs``)."""
    return Path.cwd() / "gx"


def _context(root: Path) -> Any:
    ctx = _CONTEXTS.get(root)
    if ctx is not None and (root / "great_expectations.yml").exists():
        return ctx
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="file", context_root_dir=str(root))
    bars = ctx.variables.progress_bars  # a ProgressBarsConfig, or a dict when read from the yml
    globally = bars.get("globally") if isinstance(bars, dict) else getattr(bars, "globally", None)
    if ctx.variables.analytics_enabled is not False or globally is not False:
        # Gates run in CI logs and offline machines: no tqdm bars, no telemetry.
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        ctx.variables.analytics_enabled = False
        ctx.variables.save()
    _CONTEXTS[root] = ctx
    for key in [k for k in _CHECKPOINTS if k[0] == root]:
        del _CHECKPOINTS[key]  # a recreated folder has none of them
    return ctx


def _checkpoint(ctx: Any, root: Path, table: TableSuite) -> Any:
    """Register (or update) the asset, suite, validation definition and checkpoint of a table."""
    key = (root, table.name)
    if key in _CHECKPOINTS and (root / "checkpoints" / f"{table.name}.json").exists():
        return _CHECKPOINTS[key]
    import great_expectations as gx

    try:
        source = ctx.data_sources.get(DATASOURCE)
    except LookupError:
        source = ctx.data_sources.add_pandas(name=DATASOURCE)
    try:
        asset = source.get_asset(table.name)
    except LookupError:
        asset = source.add_dataframe_asset(name=table.name)
    try:
        batch_definition = asset.get_batch_definition(BATCH_DEFINITION)
    except LookupError:
        batch_definition = asset.add_batch_definition_whole_dataframe(BATCH_DEFINITION)
    suite = ctx.suites.add_or_update(
        gx.ExpectationSuite(name=table.name, expectations=table.build())
    )
    validation = ctx.validation_definitions.add_or_update(
        gx.ValidationDefinition(name=table.name, data=batch_definition, suite=suite)
    )
    result_format: dict[str, Any] = {
        "result_format": "SUMMARY",
        "partial_unexpected_count": PARTIAL_UNEXPECTED_COUNT,
    }
    if table.index_columns:
        result_format["unexpected_index_column_names"] = list(table.index_columns)
    checkpoint = ctx.checkpoints.add_or_update(
        gx.Checkpoint(
            name=table.name,
            validation_definitions=[validation],
            actions=[],  # Data Docs: built once per gate by validate_tables
            result_format=result_format,
        )
    )
    _CHECKPOINTS[key] = checkpoint
    return checkpoint


def _fmt(value: Any) -> str:
    if isinstance(value, pd.Timestamp | datetime | np.datetime64):
        ts = pd.Timestamp(value)
        return ts.date().isoformat() if ts == ts.normalize() else ts.isoformat()
    if isinstance(value, float | np.floating):
        return f"{float(value):.6g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={_fmt(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, np.generic):
        return _fmt(value.item())
    return str(value)


def _condition(cond: Any) -> str:
    """A row condition (Condition object or its dict) as text, e.g. ``variable in [B02, B03]``."""
    if cond is None or cond == "":
        return ""
    if hasattr(cond, "dict"):
        cond = cond.dict()
    if isinstance(cond, dict) and "column" in cond and "operator" in cond:
        column = cond["column"]
        name = column.get("name") if isinstance(column, dict) else str(column)
        op = str(cond["operator"]).lower()
        return f"{name} {op} {_fmt(cond.get('parameter'))}"
    return str(cond)


def _failure(table: str, er: Any) -> Failure:
    """A failed expectation result as a Failure with arguments and sample offending values."""
    config = er.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.pop("column", None)
    if column is None and "column_list" in kwargs:
        column = ",".join(kwargs.pop("column_list"))
    condition = _condition(kwargs.pop("row_condition", None))
    for key in ("batch_id", "result_format", "condition_parser", "catch_exceptions"):
        kwargs.pop(key, None)
    # None/False are the defaults (no strict bound, ...): quoting them is noise.
    args = ", ".join(
        f"{k}={_fmt(v)}" for k, v in kwargs.items() if v is not None and v is not False
    )
    result = er.result or {}
    parts = [f"where {condition}"] if condition else []
    if "unexpected_count" in result:
        parts.append(f"{result['unexpected_count']}/{result.get('element_count')} rows unexpected")
    rows = [e for e in result.get("partial_unexpected_index_list") or [] if isinstance(e, dict)]
    if rows:
        parts.append("e.g. " + "; ".join(_fmt_row(row, column) for row in rows))
    elif result.get("partial_unexpected_list"):
        parts.append("e.g. " + ", ".join(_fmt(v) for v in result["partial_unexpected_list"]))
    elif "observed_value" in result:
        parts.append(f"observed {_fmt(result['observed_value'])}")
    info = er.exception_info or {}
    infos = [info] if "raised_exception" in info else list(info.values())
    for item in infos:
        if isinstance(item, dict) and item.get("raised_exception"):
            parts.append(f"raised {item.get('exception_message')}")
    return Failure(table, config.type, column, "; ".join(parts), args)


def _fmt_row(row: dict[str, Any], column: str | None) -> str:
    """An offending row as ``time=2024-04-02, variable=B04 -> max=5959.4``."""
    where = ", ".join(f"{k}={_fmt(v)}" for k, v in row.items() if k != column)
    if column not in row:
        return where
    value = f"{column}={_fmt(row[column])}"
    return f"{where} -> {value}" if where else value


def _url_to_path(url: str) -> Path:
    parsed = urllib.parse.urlparse(url)
    return Path(urllib.request.url2pathname(parsed.path)) if parsed.scheme == "file" else Path(url)


def _run_name(source: str) -> str:
    # GE keys validation results by path segments: a '/' in the run name would break the store.
    return re.sub(r"[^\w.\-]+", "_", source).strip("_")[-120:] or "source"


def validate_tables(
    contract: str,
    source: str,
    tables: Sequence[tuple[TableSuite, pd.DataFrame]],
    context_root: PathLike | None,
    started: float,
    parameters: dict[str, Any] | None = None,
) -> GateResult:
    """Validate every table through its checkpoint; raise QualityGateError on any failure."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
    )

    root = Path(context_root if context_root is not None else default_context_root()).resolve()
    ctx = _context(root)
    run_id = RunIdentifier(run_name=_run_name(source))
    failures: list[Failure] = []
    failed_ids: list[Any] = []
    rendered: list[Any] = []
    stats = dict.fromkeys(("evaluated", "successful", "unsuccessful"), 0)
    for table, df in tables:
        checkpoint = _checkpoint(ctx, root, table)
        outcome = checkpoint.run(
            batch_parameters={"dataframe": df},
            expectation_parameters=parameters or {},
            run_id=run_id,
        )
        rendered.append(ExpectationSuiteIdentifier(name=table.name))
        for identifier, validation in outcome.run_results.items():
            rendered.append(identifier)
            for key in stats:
                stats[key] += int(validation.statistics.get(f"{key}_expectations", 0))
            bad = [_failure(table.name, er) for er in validation.results if not er.success]
            if bad:
                failures += bad
                failed_ids.append(identifier)
    # Only this gate's suites and results are (re)rendered, plus the index.
    ctx.build_data_docs(resource_identifiers=rendered)
    sites = ctx.get_docs_sites_urls()
    docs = _url_to_path(sites[0]["site_url"]) if sites else None
    if failures:
        pages = []
        for identifier in failed_ids:
            urls = ctx.get_docs_sites_urls(resource_identifier=identifier)
            pages += [_url_to_path(u["site_url"]) for u in urls if u.get("site_url")]
        raise QualityGateError(contract, source, failures, docs, pages)
    evaluated = stats["evaluated"]
    return GateResult(
        contract=contract,
        source=source,
        success=True,
        statistics={
            "evaluated_expectations": evaluated,
            "successful_expectations": stats["successful"],
            "unsuccessful_expectations": stats["unsuccessful"],
            "success_percent": 100.0 * stats["successful"] / evaluated if evaluated else 100.0,
        },
        docs_path=docs,
        rows={table.name: len(df) for table, df in tables},
        seconds=perf_counter() - started,
    )


def _check_cube(
    ds: xr.Dataset, source: PathLike, spec: CubeSpec, context_root: PathLike | None, stored: bool
) -> GateResult:
    started = perf_counter()
    src = os.fspath(source)
    check_cube_structure(ds, src, spec)
    tables = cube_tables(ds, spec, src if stored else None)
    pairs = [(suite, tables[suite.name.rsplit(".", 1)[1]]) for suite in cube_suites(spec)]
    return validate_tables(spec.contract, src, pairs, context_root, started)


def check_s2_cube(
    ds: xr.Dataset, source: PathLike, *, context_root: PathLike | None = None, stored: bool = False
) -> GateResult:
    """Gate an S2 L2A cube: reflectance, angles, dates, CRS and 10 m pixels.

    Clear (mask 0) reflectance must lie in [0, 1] and not be NaN. Masked pixels (cloud, shadow, no
    data) may hold any value. ``stored``: ``ds`` is the cube at ``source``, opened lazily; its
    blocks of dates may then be reduced by Ray tasks reading it there.
    """
    return _check_cube(ds, source, S2_CUBE, context_root, stored)


def check_s1_cube(
    ds: xr.Dataset, source: PathLike, *, context_root: PathLike | None = None, stored: bool = False
) -> GateResult:
    """Gate an S1 cube: finite σ0 in dB range, incidence angle, orbits, dates, CRS, 10 m.

    ``stored``: as :func:`check_s2_cube`.
    """
    return _check_cube(ds, source, S1_CUBE, context_root, stored)


def check_reference_product(
    ds: xr.Dataset, source: PathLike, *, context_root: PathLike | None = None, stored: bool = False
) -> GateResult:
    """Gate a reference LAI product cube: LAI in range or NaN, dates, projected CRS.

    ``stored``: as :func:`check_s2_cube`.
    """
    return _check_cube(ds, source, REFERENCE_PRODUCT, context_root, stored)


def _period(period: tuple[DateLike, DateLike]) -> tuple[pd.Timestamp, pd.Timestamp]:
    start, end = (pd.Timestamp(p) for p in period)
    # Survey dates are compared as naive days (see summaries.survey_table); so is the period.
    start, end = (
        (t.tz_convert("UTC").tz_localize(None) if t.tzinfo else t).normalize() for t in (start, end)
    )
    if start > end:
        raise ValueError(f"period starts after it ends: {period}")
    return start, end


def check_field_survey(
    df: pd.DataFrame,
    source: PathLike,
    *,
    site_bounds: tuple[float, float, float, float],
    period: tuple[DateLike, DateLike],
    site_crs: str,
    context_root: PathLike | None = None,
) -> GateResult:
    """Gate a field-survey table: columns, types, LAI ranges, dates in period, points in site.

    ``site_bounds`` is (xmin, ymin, xmax, ymax) in ``site_crs``; each row's x, y are reprojected
    from its ``crs`` column to ``site_crs`` before the bounds check.
    """
    started = perf_counter()
    src = os.fspath(source)
    xmin, ymin, xmax, ymax = (float(v) for v in site_bounds)
    if not (xmin < xmax and ymin < ymax):
        raise ValueError(f"site_bounds must be (xmin, ymin, xmax, ymax), got {site_bounds}")
    check_table_columns(df, src, "field_survey", c.SURVEY_COLUMNS)
    start, end = _period(period)
    parameters = {
        "x_min": xmin,
        "y_min": ymin,
        "x_max": xmax,
        "y_max": ymax,
        "period_start": start,
        "period_end": end,
    }
    table = survey_table(df, site_crs)
    return validate_tables(
        "field_survey", src, [(SURVEY, table)], context_root, started, parameters
    )


def check_pixel_table(
    df: pd.DataFrame, source: PathLike, *, context_root: PathLike | None = None
) -> GateResult:
    """Gate a pixel time-series table.

    Clear rows (cloud_mask 0) must be complete with bands in [0, 1], angles in range, cloud mask 0/1
    and (point, date) unique. Cloudy rows may hold any band value or none (a requested date without
    acquisition).
    """
    started = perf_counter()
    src = os.fspath(source)
    check_table_columns(df, src, "pixel_table", c.PIXEL_TABLE_COLUMNS)
    return validate_tables(
        "pixel_table", src, [(PIXEL_TABLE, pixel_table(df))], context_root, started
    )
