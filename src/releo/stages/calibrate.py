"""DVC stage ``calibrate``: gate the surveys and embeddings, then fit the LAI calibration.

The detection limit and the spread scale (:mod:`releo.products.calibrate`), fitted on the field
surveys of the places of ``products.calibrate.splits``; writes ``calibration/lai.json`` and
``metrics/calibrate.json``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd

from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.io import json_safe, open_cube, write_json
from releo.data.readers import read_field_survey
from releo.data.site import open_site
from releo.products.calibrate import fit_spread_scale
from releo.products.decode import decode_distribution, pair_queries
from releo.products.embed import load_autoencoder
from releo.products.evaluate import held_out_mask, survey_pixels
from releo.products.product_gates import check_embeddings, check_site_surveys
from releo.stage import stage
from releo.stages.embed import EMBEDDINGS
from releo.stages.train import MODEL
from releo.timings import record, timed

CALIBRATION = Path("calibration/lai.json")
CALIBRATE_METRICS = Path("metrics/calibrate.json")


def run_calibrate(params: Params, root: Path = Path()) -> dict:
    """Stage ``calibrate``: fit the spread scale on the field surveys of held-out places.

    The places are those of ``products.calibrate.splits``; writes ``calibration/lai.json`` and
    ``metrics/calibrate.json``.
    """
    started = time.perf_counter()
    root = Path(root)
    cfg = params.products.calibrate
    interval = params.products.decode.interval
    model, _ = load_autoencoder(root / MODEL)
    embeddings = open_cube(root / EMBEDDINGS)
    site = open_site(root / params.data_dir)
    index = pd.read_parquet(root / INDEX)
    if site.surveys is None:
        surveys = pd.DataFrame(columns=["x", "y", "date", "lai", "lai_std"])
    else:
        surveys = read_field_survey(site.path("surveys"), target_crs=site.crs)
    s2 = site.s2
    row, col, inside = survey_pixels(surveys, s2.x.values, s2.y.values)
    places = held_out_mask(index, (s2.sizes["y"], s2.sizes["x"]), cfg.splits)
    chosen = inside.copy()
    chosen[inside] = places[row[inside], col[inside]]
    table = surveys.loc[chosen].reset_index(drop=True)
    when = pd.DatetimeIndex(pd.to_datetime(table["date"])).tz_localize(None).normalize()
    queries = pair_queries(
        embeddings, table["x"].to_numpy(), table["y"].to_numpy(), when,
        blend_days=params.products.decode.blend_days,
    )  # fmt: skip
    valid = queries.valid
    observed = table["lai"].to_numpy(float)[valid]
    observed_std = table["lai_std"].fillna(0.0).to_numpy(float)[valid]
    result = {
        "splits": list(cfg.splits),
        "interval": interval,
        "detection_limit": cfg.detection_limit,
        "surveys": int(valid.sum()),
        "min_surveys": cfg.min_surveys,
        "site_has_surveys": site.surveys is not None,
        "site_has_truth": site.has_truth,  # never used here: the record of what the site holds
    }
    if valid.sum() >= cfg.min_surveys:
        dist = decode_distribution(model, queries)
        scale, before, after = fit_spread_scale(
            dist, observed, observed_std, interval=interval, detection_limit=cfg.detection_limit
        )
        result.update(fitted=True, spread_scale=scale, coverage_before=before, coverage=after)
    else:
        why = (
            f"{site.path('surveys')}: absent (no field surveys)"
            if site.surveys is None
            else f"{int(valid.sum())} surveys on {'+'.join(cfg.splits)} places, fewer than "
            f"min_surveys={cfg.min_surveys}"
        )
        result.update(
            fitted=False, spread_scale=1.0, coverage_before=math.nan, coverage=math.nan,
            note=f"{why}: spread left as decoded",
        )  # fmt: skip
    write_json(
        {k: result[k] for k in ("spread_scale", "detection_limit", "interval", "surveys")},
        root / CALIBRATION,
    )
    record(calibrate_seconds=round(time.perf_counter() - started, 2))
    write_json(json_safe(result), root / CALIBRATE_METRICS)
    return result


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("calibrate"), timed("calibrate") as clock:
        params = load_params()
        root = params.quality.context_root
        site = open_site(params.data_dir)
        with clock.part("gates"):
            check_site_surveys(site, context_root=root)
            check_embeddings(open_cube(EMBEDDINGS), EMBEDDINGS, context_root=root)
        m = run_calibrate(params, Path.cwd())
        if m["fitted"]:
            print(
                f"{m['surveys']} surveys on {'+'.join(m['splits'])} places: spread x "
                f"{m['spread_scale']:.3g}, {m['interval']:.0%} interval coverage "
                f"{m['coverage_before']:.2f} -> {m['coverage']:.2f}; LAI < "
                f"{m['detection_limit']:g} reported as 0"
            )
        else:
            print(m["note"])
