"""The ``embed`` and ``decode`` stages (and ``releo decode``) as library calls."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from releo.config import Params
from releo.data.chunks import INDEX, ChunkDataset
from releo.data.io import open_cube, write_cube, write_json
from releo.data.site import open_site
from releo.products.config import DecodeConfig
from releo.products.decode import LaiCalibration, decode_grid
from releo.products.embed import embeddings_cube, encode_chunks, file_sha256, load_autoencoder
from releo.products.export import write_products
from releo.products.grid import ChunkLayout, Grid, query_dates

MODEL = Path("models/model.pt")
EMBEDDINGS = Path("embeddings/embeddings.zarr")
CALIBRATION = Path("calibration/lai.json")
PRODUCTS = Path("products")
LAI_CUBE = PRODUCTS / "lai.zarr"
EMBED_METRICS = Path("metrics/embed.json")
DECODE_METRICS = Path("metrics/decode.json")


def model_card(model_path: Path) -> dict:
    """``model.json`` beside the model file (empty when absent)."""
    try:
        return json.loads(model_path.with_suffix(".json").read_text())
    except (OSError, ValueError):
        return {}


def run_embed(params: Params, root: Path = Path()) -> dict:
    """Stage ``embed``: encode every chunk of the site; write the cube and its metrics."""
    root = Path(root)
    cfg = params.products.embed
    started = time.perf_counter()
    model, _ = load_autoencoder(root / MODEL)
    site = open_site(root / params.data_dir)
    index = pd.read_parquet(root / INDEX)
    chunks = ChunkDataset(
        site.s2.load(), site.s1.load(), index, context_days=model.cfg.context_days
    )
    z = encode_chunks(model, chunks, cfg.batch_size)
    period = site.period
    ds = embeddings_cube(
        z,
        index,
        crs=site.crs,
        pixel_size_m=float(abs(site.s2.x.values[1] - site.s2.x.values[0])),
        chunk_days=params.chunks.days,
        dtype=cfg.dtype,
        attrs={
            "model_sha256": file_sha256(root / MODEL),
            "model_mlflow_run_id": str(model_card(root / MODEL).get("mlflow_run_id", "")),
            "data_start": str(period[0].date()),
            "data_end": str(period[1].date()),
        },
    )
    write_cube(ds, root / EMBEDDINGS)
    w, r, c = (index[k].to_numpy() for k in ("window", "row", "col"))
    stored = ds["embedding"].values[w, r, c].astype(np.float32)
    metrics = {
        "chunks": len(index),
        "embedding_dim": int(z.shape[1]),
        "dtype": cfg.dtype,
        "bytes_per_chunk": int(z.shape[1] * np.dtype(cfg.dtype).itemsize),
        "quantisation_max_abs_error": float(np.abs(stored - z).max()) if z.size else math.nan,
        "embedding_abs_max": float(np.abs(z).max()) if z.size else math.nan,
        "site_has_truth": site.has_truth,  # never used here: the record of what the site holds
        "seconds": round(time.perf_counter() - started, 2),
    }
    write_json(metrics, root / EMBED_METRICS)
    return metrics


def request_dates(cfg: DecodeConfig, layout: ChunkLayout, attrs: dict) -> pd.DatetimeIndex:
    """The dates of a decode request; start/end default to the data period of the embeddings."""
    first, last = layout.period
    start = cfg.start or pd.Timestamp(attrs.get("data_start", first))
    end = cfg.end or pd.Timestamp(attrs.get("data_end", last))
    return query_dates(dates=cfg.dates, start=start, end=end, step_days=cfg.step_days)


def decode_to_folder(
    cfg: DecodeConfig,
    embeddings_path: Path,
    model_path: Path,
    target: Path,
    calibration: LaiCalibration | None = None,
) -> dict:
    """Decode the request ``cfg`` from the embeddings cube (with the LAI ``calibration``, None:
    as decoded) and write the product folder."""
    started = time.perf_counter()
    model, _ = load_autoencoder(model_path)
    embeddings = open_cube(embeddings_path)
    layout = ChunkLayout.from_embeddings(embeddings)
    grid = Grid.from_bounds(cfg.bounds or layout.bounds, cfg.resolution_m, layout.crs)
    dates = request_dates(cfg, layout, embeddings.attrs)
    t0 = time.perf_counter()
    ds = decode_grid(
        model, embeddings, grid, dates, interval=cfg.interval, calibration=calibration,
        batch_queries=cfg.batch_queries,
    )  # fmt: skip
    decode_s = time.perf_counter() - t0
    counts = write_products(
        ds,
        target,
        geotiff=cfg.geotiff,
        quicklooks=cfg.quicklooks,
        overview_panels=cfg.overview_panels,
        vmax=cfg.lai_max_display,
    )
    valid = np.isfinite(ds["lai"].values)
    pixel_dates = int(valid.size)
    return {
        **counts,
        "first_date": str(dates[0].date()),
        "last_date": str(dates[-1].date()),
        "grid": {"ny": grid.shape[0], "nx": grid.shape[1], "resolution_m": grid.resolution},
        "pixel_dates": pixel_dates,
        "valid_fraction": float(valid.mean()) if pixel_dates else math.nan,
        "dates_with_gaps": int((~valid).reshape(len(dates), -1).any(axis=1).sum()),
        "lai_mean": float(np.nanmean(ds["lai"].values)) if valid.any() else math.nan,
        "lai_std_mean": float(np.nanmean(ds["lai_std"].values)) if valid.any() else math.nan,
        "decode_seconds": round(decode_s, 2),
        "pixel_dates_per_s": round(pixel_dates / decode_s, 1) if decode_s > 0 else math.nan,
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_decode(
    params: Params, root: Path = Path(), calibration: LaiCalibration | None = None
) -> dict:
    """Stage ``decode``: the product of ``products.decode`` into ``products/``."""
    root = Path(root)
    metrics = decode_to_folder(
        params.products.decode, root / EMBEDDINGS, root / MODEL, root / PRODUCTS, calibration
    )
    write_json(metrics, root / DECODE_METRICS)
    return metrics


def decode_request(
    base: DecodeConfig | None,
    overrides: dict,
    embeddings_path: Path,
    model_path: Path,
    target: Path,
    calibration: LaiCalibration | None = None,
) -> dict:
    """``releo decode``: ``base`` (params.yaml) updated with the non-None ``overrides``;
    an invalid request is a ParamsError naming the field and the value."""
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
