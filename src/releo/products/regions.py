"""Embedding, decoding and evaluating by regions, as Ray tasks.

The ``embed``, ``decode`` and ``evaluate`` stages (:mod:`releo.stages`) and ``releo decode``
run on these (:mod:`releo.distributed`): ``embed`` over blocks of its output cube's chunks
(``EMBED_REGION`` windows × rows × cols of chunks), ``decode`` over blocks of the product
(``DECODE_REGION`` dates × rows × cols of pixels), ``evaluate`` over blocks of the site's chunks
(``EVALUATE_REGION``) holding scored pixels. Each task reads the site or the embeddings from
their stores; embed and decode tasks write their region, evaluate tasks return their pixels'
estimates. The values are those of the one-process functions (:func:`encode_chunks`,
:func:`decode_grid`, :func:`held_out_estimates`), bit for bit.
"""

from __future__ import annotations

import functools
import math
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.chunks import ChunkDataset, load_part
from releo.data.io import atomic_dir, open_cube
from releo.data.site import SITE_FILES, open_site
from releo.data.spill import trim_heap
from releo.distributed import (
    create_region_cube,
    finish_cube,
    map_tasks,
    ray_session,
    regions,
    use_ray,
    write_region,
)
from releo.models.checkpoint import trained_weights
from releo.products import plots
from releo.products.config import DecodeConfig
from releo.products.decode import LAI_VARIABLES, LaiCalibration, decode_grid_arrays, lai_cube
from releo.products.embed import encode_chunks, load_autoencoder
from releo.products.evaluate import HeldOut, held_out_estimates, merge_pixels, scored_truth
from releo.products.export import write_geotiffs
from releo.products.grid import ChunkLayout, Grid, query_dates
from releo.timings import record

LAI_CUBE_NAME = "lai.zarr"
"""The LAI cube's name in a product folder (the layout of :mod:`releo.products.export`)."""
EMBED_REGION = (4, 16, 16)
"""Chunks per embed task and per Zarr chunk of the cube: windows, rows, cols (≤ 1,024 chunks,
2 MiB of float16 at 256 features)."""
DECODE_REGION = (8, 512, 512)
"""Pixel-dates per decode task and per Zarr chunk of the product: dates, rows, cols (2.1 M,
8 MiB per variable)."""
EVALUATE_REGION = (2, 2)
"""Chunks of the site per evaluate task: rows, cols (whole inner chunks of its cubes; the
baseline reads their S2 bands: 16 MB per date at 100-px chunks)."""

COMPILE_MIN_PIXEL_DATES = 16_000_000
"""Requests this large decode with ``products.decode.compile`` (smaller ones eagerly)."""

# ------------------------------------------------------------------ inputs, cached per worker
# A Ray worker process runs many tasks of a stage: it opens the model and the stores once.


def _stamp(path: str | Path, probe: str | Path | None = None) -> tuple[str, int]:
    """A cache key of ``path`` that changes when the file or cube at ``probe`` is rewritten.

    ``probe`` defaults to ``path``.
    """
    path = Path(path).resolve()
    probe = path if probe is None else Path(probe)
    probe = probe / "zarr.json" if probe.is_dir() else probe
    return str(path), probe.stat().st_mtime_ns


@functools.lru_cache(maxsize=2)
def _cached_load(key: tuple[str, int]):
    return load_autoencoder(key[0])


def _cached_model(key: tuple[str, int]):
    return _cached_load(key)[0]


@functools.lru_cache(maxsize=1)
def _cached_site(key: tuple[str, int]):
    return open_site(key[0], lazy=True)


@functools.lru_cache(maxsize=2)  # the embeddings, and the truth of the site
def _cached_cube(key: tuple[str, int]):
    return open_cube(key[0], lazy=True)


def embed_region(
    *,
    data_dir: str,
    model_path: str,
    rows: pd.DataFrame,
    region: tuple[slice, slice, slice],
    batch_size: int,
    dtype: str,
    out: str,
    refine_steps: int = 0,
    refine_lr: float = 0.05,
    refine_terms: tuple[str, ...] | None = None,
) -> dict:
    """Encode the chunks ``rows`` and write ``region`` of the embeddings cube at ``out``.

    The chunks all lie inside ``region`` (windows, rows, cols). With ``refine_steps`` each
    embedding is refined on its chunk's loss (:func:`~releo.products.embed.encode_chunks`).

    Returns:
        The quantisation figures.
    """
    model, payload = _cached_load(_stamp(model_path))
    site = _cached_site(_stamp(data_dir, Path(data_dir) / SITE_FILES["s2"]))
    z = np.zeros((len(rows), model.cfg.embedding_dim), np.float32)
    # One chunk square at a time: its whole series read once (a few tens of MB a year), its
    # windows encoded from memory; the task never holds more than one square of the site.
    rows = rows.reset_index(drop=True)
    for (y0, x0, size), square in rows.groupby(["y0", "x0", "size_px"], sort=False):
        px = {"y": slice(int(y0), int(y0 + size)), "x": slice(int(x0), int(x0 + size))}
        s2, s1 = load_part(site.s2.isel(px)), load_part(site.s1.isel(px))
        local = square.assign(y0=0, x0=0)
        chunks = ChunkDataset(s2, s1, local, context_days=model.cfg.context_days)
        z[square.index] = encode_chunks(
            model,
            chunks,
            batch_size,
            weights=trained_weights(payload),
            refine_steps=refine_steps,
            refine_lr=refine_lr,
            refine_terms=refine_terms,
        )
        trim_heap()  # else the worker grows ~1.6 MB per square encoded (glibc fragmentation)
    names = ("window", "row", "col")
    at = tuple(rows[k].to_numpy() - s.start for k, s in zip(names, region, strict=True))
    block = np.full((*(s.stop - s.start for s in region), z.shape[1]), np.nan, np.float32)
    block[at] = z
    block = block.astype(dtype)  # as embeddings_cube: float32 rounded once to the stored dtype
    write_region(Path(out), "embedding", (*region, slice(None)), block)
    error = np.abs(block[at].astype(np.float32) - z)
    return {
        "quantisation_max_abs_error": float(error.max()) if z.size else -math.inf,
        "embedding_abs_max": float(np.abs(z).max()) if z.size else -math.inf,
    }


def embeddings_under(
    embeddings: xr.Dataset, x: np.ndarray, y: np.ndarray, dates: pd.DatetimeIndex
) -> xr.Dataset:
    """The part of ``embeddings`` that decoding points or a grid at ``dates`` reads, in memory.

    The chunks under the box of map coordinates ``x``, ``y`` (a grid's axes, or points), and
    the windows of the dates with one more on each side (the windows a date may blend in); the
    layout attributes follow the cut.
    """
    layout = ChunkLayout.from_embeddings(embeddings)
    corners = np.array([np.min(x), np.max(x)]), np.array([np.min(y), np.max(y)])
    row, col, _, _, _ = layout.locate(*corners)
    window, _ = layout.window_of(dates)
    if not len(dates):
        window = np.zeros(1, np.int64)
    rows = slice(int(row.min()), int(row.max()) + 1)
    cols = slice(int(col.min()), int(col.max()) + 1)
    windows = slice(max(int(window.min()) - 1, 0), int(window.max()) + 2)
    part = embeddings.isel(time=windows, y=rows, x=cols).load()
    part.attrs = {
        **embeddings.attrs,
        "chunk_x_min": layout.x_min + cols.start * layout.size_m,
        "chunk_y_max": layout.y_max - rows.start * layout.size_m,
    }
    return part


def request_dates(cfg: DecodeConfig, layout: ChunkLayout, attrs: dict) -> pd.DatetimeIndex:
    """The dates of a decode request; start/end default to the data period of the embeddings."""
    first, last = layout.period
    start = cfg.start or pd.Timestamp(attrs.get("data_start", first))
    end = cfg.end or pd.Timestamp(attrs.get("data_end", last))
    return query_dates(dates=cfg.dates, start=start, end=end, step_days=cfg.step_days)


def decode_region(
    *,
    embeddings_path: str,
    model_path: str,
    grid: Grid,
    dates: pd.DatetimeIndex,
    region: tuple[slice, slice, slice],
    interval: float,
    calibration: LaiCalibration | None,
    blend_days: float | None,
    batch_queries: int,
    compiled: bool,
    out: str,
) -> None:
    """Decode ``region`` of the product and write it into the LAI cube at ``out``.

    ``region`` is (dates, rows, cols) of the product on ``grid`` at ``dates``.
    """
    model = _cached_model(_stamp(model_path))
    t, r, c = region
    sub = Grid(x=grid.x[c], y=grid.y[r], crs=grid.crs, resolution=grid.resolution)
    embeddings = embeddings_under(_cached_cube(_stamp(embeddings_path)), sub.x, sub.y, dates[t])
    values = decode_grid_arrays(
        model, embeddings, sub, dates[t],
        interval=interval, calibration=calibration, blend_days=blend_days,
        batch_queries=batch_queries, compiled=compiled,
    )  # fmt: skip
    for name, value in values.items():
        write_region(Path(out), name, region, value)


def evaluate_region(
    *,
    data_dir: str,
    model_path: str,
    embeddings_path: str,
    rows: np.ndarray,
    cols: np.ndarray,
    interval: float,
    baseline,
    calibration: LaiCalibration | None,
    blend_days: float | None,
) -> HeldOut:
    """:func:`held_out_estimates` at pixels (``rows``, ``cols``) of the site at ``data_dir``.

    Only the part of each store under those pixels is read.
    """
    model = _cached_model(_stamp(model_path))
    site = _cached_site(_stamp(data_dir, Path(data_dir) / SITE_FILES["s2"]))
    truth = None
    if site.path("truth").exists():
        truth = scored_truth(_cached_cube(_stamp(site.path("truth"))))
    dates = pd.DatetimeIndex(site.s2.time.values).normalize()
    x, y = site.s2.x.values[cols], site.s2.y.values[rows]
    embeddings = embeddings_under(_cached_cube(_stamp(embeddings_path)), x, y, dates)
    return held_out_estimates(
        model, embeddings, site, truth, rows, cols,
        interval=interval, baseline=baseline, calibration=calibration, blend_days=blend_days,
    )  # fmt: skip


def held_out_by_regions(
    data_dir: Path,
    model_path: Path,
    embeddings_path: Path,
    pixels: np.ndarray,
    chunk_px: int,
    *,
    interval: float,
    baseline=None,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
    workers: int | None = None,
    region: tuple[int, int] = EVALUATE_REGION,
) -> HeldOut:
    """:func:`held_out_estimates` at the ``pixels`` (y, x) of the site, as Ray tasks.

    One task per block of ``region`` chunks (of ``chunk_px`` pixels) holding pixels; one block
    runs here. The estimates are those of one process, bit for bit, in the pixels' row-major
    order.
    """
    rows, cols = np.nonzero(pixels)
    rows_px, cols_px = region[0] * chunk_px, region[1] * chunk_px
    block = (rows // rows_px) * -(-pixels.shape[1] // cols_px) + cols // cols_px
    order = np.argsort(block, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(block[order])) + 1)
    paths = {
        "data_dir": str(Path(data_dir).resolve()),
        "model_path": str(Path(model_path).resolve()),
        "embeddings_path": str(Path(embeddings_path).resolve()),
    }
    tasks = [
        {**paths, "rows": rows[at], "cols": cols[at], "interval": interval, "baseline": baseline,
         "calibration": calibration, "blend_days": blend_days}
        for at in groups
    ]  # fmt: skip
    parallel = use_ray(len(tasks))
    with ray_session(workers) if parallel else nullcontext():
        parts = map_tasks(evaluate_region, tasks, workers=workers, in_process=not parallel)
    record(evaluate_tasks=len(tasks), evaluate_ray=parallel)
    return merge_pixels(parts, groups, len(rows))


def decode_to_folder(
    cfg: DecodeConfig,
    embeddings_path: Path,
    model_path: Path,
    target: Path,
    calibration: LaiCalibration | None = None,
    *,
    region: tuple[int, int, int] = DECODE_REGION,
    compile_from: int = COMPILE_MIN_PIXEL_DATES,
) -> dict:
    """Decode the request ``cfg`` from the embeddings cube and write the product folder.

    The LAI ``calibration`` is applied (None: as decoded). Runs as Ray tasks over blocks of
    ``region`` pixel-dates (dates, rows, cols); the folder has the layout of
    :mod:`releo.products.export`. Requests of ``compile_from`` pixel-dates or more decode
    compiled (``cfg.compile``).
    """
    started = time.perf_counter()
    embeddings_path, model_path = Path(embeddings_path).resolve(), Path(model_path).resolve()
    embeddings = open_cube(embeddings_path, lazy=True)  # its layout; the tasks read their parts
    layout = ChunkLayout.from_embeddings(embeddings)
    grid = Grid.from_bounds(cfg.bounds or layout.bounds, cfg.resolution_m, layout.crs)
    dates = request_dates(cfg, layout, embeddings.attrs)
    template = lai_cube(
        None, grid, dates, interval=cfg.interval, calibration=calibration,
        source_model_sha256=str(embeddings.attrs.get("model_sha256", "")), chunks=region,
    )  # fmt: skip
    blocks = regions(template["lai"].shape, region)
    # torch.compile costs each worker ~10-20 s once: worth it for large requests only
    compiled = cfg.compile and math.prod(template["lai"].shape) >= compile_from
    parallel = use_ray(len(blocks))
    counts = {"dates": len(dates)}
    with atomic_dir(Path(target)) as tmp:
        cube = tmp / LAI_CUBE_NAME
        create_region_cube(template, cube, dict.fromkeys(LAI_VARIABLES, region))
        tasks = [
            {"embeddings_path": str(embeddings_path), "model_path": str(model_path),
             "grid": grid, "dates": dates, "region": block, "interval": cfg.interval,
             "calibration": calibration, "blend_days": cfg.blend_days,
             "batch_queries": cfg.batch_queries,
                "compiled": compiled, "out": str(cube)}
            for block in blocks
        ]  # fmt: skip
        with ray_session(cfg.workers) if parallel else nullcontext():
            t0 = time.perf_counter()  # after Ray's start: the decoding rate, not the start-up
            map_tasks(decode_region, tasks, workers=cfg.workers, in_process=not parallel)
            decode_s = time.perf_counter() - t0
        finish_cube(cube)
        # The per-date files of a whole map (as releo.products.export.write_products)
        ds = open_cube(cube)
        if cfg.geotiff:
            counts["geotiffs"] = len(write_geotiffs(ds, tmp / "geotiff"))
        if cfg.quicklooks:
            looks = plots.quicklooks(ds, tmp / "quicklooks", cfg.lai_max_display)
            counts["quicklooks"] = len(looks)
        if len(dates):
            plots.overview(ds, tmp / "overview.png", cfg.overview_panels, cfg.lai_max_display)
    valid = np.isfinite(ds["lai"].values)
    pixel_dates = int(valid.size)
    metrics = {
        **counts,
        "first_date": str(dates[0].date()),
        "last_date": str(dates[-1].date()),
        "grid": {"ny": grid.shape[0], "nx": grid.shape[1], "resolution_m": grid.resolution},
        "pixel_dates": pixel_dates,
        "valid_fraction": float(valid.mean()) if pixel_dates else math.nan,
        "dates_with_gaps": int((~valid).reshape(len(dates), -1).any(axis=1).sum()),
        "lai_mean": float(np.nanmean(ds["lai"].values)) if valid.any() else math.nan,
        "lai_std_mean": float(np.nanmean(ds["lai_std"].values)) if valid.any() else math.nan,
        "tasks": len(blocks),
    }
    # timings stay out of DVC's metrics (releo.timings)
    record(
        decode_seconds=round(decode_s, 2),
        pixel_dates_per_s=round(pixel_dates / decode_s, 1) if decode_s > 0 else math.nan,
        decode_ray=parallel,
        seconds=round(time.perf_counter() - started, 2),
    )
    return metrics


def decode_request(
    base: DecodeConfig | None,
    overrides: dict,
    embeddings_path: Path,
    model_path: Path,
    target: Path,
    calibration: LaiCalibration | None = None,
) -> dict:
    """``releo decode``: ``base`` (params.yaml) updated with the non-None ``overrides``.

    An invalid request is a ParamsError naming the field and the value.
    """
    from pydantic import ValidationError

    from releo.config import ParamsError

    values = (base or DecodeConfig()).model_dump()
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = DecodeConfig.model_validate(values)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        raise ParamsError(f"decode request: {problems}") from err
    return decode_to_folder(cfg, embeddings_path, model_path, target, calibration)
