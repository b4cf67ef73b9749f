"""DVC stage ``evaluate``: gate the reference, surveys, embeddings and product, then score.

The decoded LAI is scored against truth, SNAP and field surveys, with the per-pixel baseline
alongside (:mod:`releo.products.evaluate`); writes ``metrics/evaluate.json`` and the plot
tables and figures of ``metrics/evaluate_plots/``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from releo import quality
from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.errors import DataError
from releo.data.io import json_safe, open_cube, write_json
from releo.data.readers import read_field_survey
from releo.data.site import open_site
from releo.products.decode import LaiCalibration
from releo.products.embed import load_autoencoder
from releo.products.evaluate import (
    HEADLINE,
    field_metrics,
    field_time_series,
    held_out_mask,
    load_baseline,
    product_metrics,
    sample_fields,
    scatter_table,
    scored_pixels,
    scored_truth,
    seam_metrics,
    snap_metrics,
    split_metrics,
    survey_matches,
    survey_pixels,
    truth_metrics,
    write_plots,
)
from releo.products.product_gates import check_embeddings, check_lai_product, check_site_surveys
from releo.products.regions import EVALUATE_REGION, held_out_by_regions
from releo.stage import stage
from releo.stages.calibrate import CALIBRATION
from releo.stages.decode import LAI_CUBE
from releo.stages.embed import EMBEDDINGS
from releo.stages.train import MODEL
from releo.timings import record, timed

EVALUATE_METRICS = Path("metrics/evaluate.json")
PLOTS = Path("metrics/evaluate_plots")


def run_evaluate(
    params: Params,
    root: Path = Path(),
    baseline: str | torch.nn.Module | None = "load",
    calibration: LaiCalibration | None = None,
    *,
    region: tuple[int, int] = EVALUATE_REGION,
) -> dict:
    """Stage ``evaluate``: write ``metrics/evaluate.json`` and the plot tables/figures.

    ``baseline``: "load" (:func:`load_baseline`), a per-pixel model, or None to skip it;
    ``calibration``: the LAI calibration of the decoded product (None: as decoded). The scored
    pixels are estimated as Ray tasks over blocks of ``region`` chunks
    (:func:`held_out_by_regions`).
    """
    started = time.perf_counter()
    root = Path(root)
    cfg = params.products.evaluate
    interval = params.products.decode.interval
    cov = f"coverage{round(interval * 100)}"
    model, _ = load_autoencoder(root / MODEL)
    embeddings = open_cube(root / EMBEDDINGS)
    # lazily: the scores read the held-out pixels, not the site
    site = open_site(root / params.data_dir, lazy=True)
    index = pd.read_parquet(root / INDEX)
    truth = None
    if site.path("truth").exists():
        truth = open_cube(site.path("truth"), lazy=True)
        truth = scored_truth(truth)
    shape = (site.s2.sizes["y"], site.s2.sizes["x"])
    mask = held_out_mask(index, shape, cfg.splits)
    if not mask.any():
        raise DataError(f"{root / INDEX}: no chunk in the evaluated splits {cfg.splits}")
    surveys = None
    keep = np.zeros_like(mask)  # pixels scored whatever the sample: surveys, plotted fields
    if site.surveys is not None:
        surveys = read_field_survey(site.path("surveys"), target_crs=site.crs)
        row, col, inside = survey_pixels(surveys, site.s2.x.values, site.s2.y.values)
        keep[row[inside], col[inside]] = True
        keep &= mask
    fields = sample_fields(truth, mask, keep, cfg.sample_fields) if truth is not None else []
    for _, pixels in fields:
        keep |= pixels
    scored = scored_pixels(mask, cfg.max_pixels, cfg.seed, keep)
    source = "none"
    if isinstance(baseline, str):
        baseline, source = load_baseline(params, root)
    elif baseline is not None:
        source = "given"
    blend_days = params.products.decode.blend_days
    est = held_out_by_regions(
        root / params.data_dir, root / MODEL, root / EMBEDDINGS, scored,
        int(index["size_px"].max()), interval=interval, baseline=baseline,
        calibration=calibration, blend_days=blend_days, workers=cfg.workers, region=region,
    )  # fmt: skip
    metrics: dict = {
        "splits": list(cfg.splits),
        "held_out_pixels": int(mask.sum()),
        "scored_pixels": int(scored.sum()),
        "s2_dates": len(est.dates),
        "decoded_from": "embeddings alone (no per-pixel context)",
        "interval": interval,
        **(calibration or LaiCalibration()).fields("calibration_"),
        "baseline": source,
        # share of held-out pixel-dates (S2 dates) with a value: SNAP and the baseline have gaps
        "lai_valid_fraction": float(np.isfinite(est.lai).mean()),
        "snap_lai_valid_fraction": float(np.isfinite(est.snap).mean()),
        "baseline_lai_valid_fraction": float(np.isfinite(est.baseline).mean())
        if est.baseline is not None
        else None,
    }
    references = {
        "truth": truth is not None,
        "snap": site.reference is not None,
        "field_surveys": site.surveys is not None,
    }
    metrics["references"] = references
    metrics["site_has_truth"] = references["truth"]
    metrics.update({key: None for part, keys in HEADLINE.items() for key in keys})
    nested: dict = {}
    scatter = None
    if site.reference is not None:
        metrics.update(snap_metrics(est, cov))
    if truth is not None:
        flat, nested["truth"] = truth_metrics(est, cov)
        metrics.update(flat)
        metrics.update(split_metrics(est, index, shape, cfg.splits, cov))
        if (root / LAI_CUBE).exists():
            product = open_cube(root / LAI_CUBE, lazy=True)
            metrics.update(product_metrics(product, truth, scored, cov))
        scatter = scatter_table(est, cfg.scatter_points, cfg.seed)
    matches = None
    if surveys is not None:
        matches = survey_matches(
            surveys, model, embeddings, site, est, mask,
            interval=interval, max_days=cfg.field_max_days, calibration=calibration,
            blend_days=blend_days,
        )  # fmt: skip
        flat, nested["field"] = field_metrics(matches, cov)
        metrics.update(flat)
    seams = seam_metrics(
        model, embeddings, site, truth, mask,
        pixels=cfg.seam_pixels, seed=cfg.seed, blend_days=blend_days,
    )  # fmt: skip
    metrics.update(seams)
    ours, snap = metrics.get("lai_rmse_truth", math.nan), metrics.get("snap_lai_rmse_truth")
    if snap:
        metrics["lai_rmse_truth_reduction_vs_snap"] = 1.0 - ours / snap
    series = {}
    if truth is not None:
        series = field_time_series(
            model, embeddings, site, truth, est, matches, fields,
            interval=interval, calibration=calibration,
            blend_days=blend_days,
        )  # fmt: skip
    # without truth, the reference product is what the held-out pixel-dates are drawn against
    snap_scatter = None
    if truth is None and site.reference is not None:
        snap_scatter = scatter_table(est, cfg.scatter_points, cfg.seed, against="snap")
    metrics["plots"] = write_plots(root / PLOTS, scatter, matches, series, snap_scatter)
    metrics["absent"] = [part for part, present in references.items() if not present]
    metrics.update(nested)
    record(evaluate_seconds=round(time.perf_counter() - started, 2))
    write_json(json_safe(metrics), root / EVALUATE_METRICS)
    return metrics


def _gate(params) -> None:
    root = params.quality.context_root
    site = open_site(params.data_dir)
    if site.reference is not None:
        quality.check_reference_product(site.reference, site.path("reference"), context_root=root)
    check_site_surveys(site, context_root=root)
    check_embeddings(open_cube(EMBEDDINGS), EMBEDDINGS, context_root=root)
    check_lai_product(open_cube(LAI_CUBE), LAI_CUBE, context_root=root)


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("evaluate"), timed("evaluate") as clock:
        params = load_params()
        with clock.part("gates"):
            _gate(params)
        m = run_evaluate(params, Path.cwd(), calibration=LaiCalibration.load(CALIBRATION))
        fmt = lambda k: "n/a" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
        print(
            f"held-out {'+'.join(m['splits'])}: LAI RMSE vs truth {fmt('lai_rmse_truth')} "
            f"(SNAP {fmt('snap_lai_rmse_truth')}, per-pixel {fmt('baseline_lai_rmse_truth')}); "
            f"vs field {fmt('lai_rmse_field')} (SNAP {fmt('snap_lai_rmse_field')}, "
            f"per-pixel {fmt('baseline_lai_rmse_field')}); vs SNAP {fmt('lai_rmse_snap')} "
            f"(per-pixel {fmt('baseline_lai_rmse_snap')})"
        )
        if m["absent"]:
            print(f"absent from the site, not scored: {', '.join(m['absent'])}")
