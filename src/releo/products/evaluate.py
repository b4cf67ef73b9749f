"""The decoded LAI scored against truth, SNAP and field surveys (stage ``evaluate``).

The references are the simulator truth, the SNAP reference and the field surveys; the
per-pixel inversion baseline is scored next to ours, on held-out chunks. A site may lack any
of the three references (real sites have no truth): its scores are then null, and
``references`` says which were there.

Everything is matched in space and time on the held-out places (``products.evaluate.splits``):

- truth: every held-out pixel at every S2 acquisition date (clear and cloudy); SNAP and the
  baseline exist only at clear pixel-dates, so ours is also scored on exactly theirs
  (``*_at_snap``, ``*_at_baseline``); the weekly product is scored at its own dates;
- SNAP (any site with the reference product): ours and the baseline at SNAP's held-out
  pixel-dates (``*_snap``): agreement with the operational product, not accuracy;
- field surveys: ours decoded at the exact point and day; SNAP and the baseline at the
  point's pixel on the nearest date with a value within ± ``field_max_days``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from releo.config import Params
from releo.data.chunks import INDEX
from releo.data.contracts import LAND_COVER_CLASSES, MASK_CLEAR, REFERENCE_LAI, S2_MASK
from releo.data.io import atomic_dir, write_table
from releo.data.site import Site
from releo.models import PhysicsAutoencoder
from releo.products import plots
from releo.products.decode import LaiCalibration, decode_pairs, decode_pixels, padded_rows
from releo.products.grid import ChunkLayout
from releo.products.scores import grouped_scores, parcel_split, scores

TRUTH_VARIABLES = ("lai", "land_cover", "parcel_id")
"""The simulator truth's variables that the scores read."""

SURVEY_CLASSES = ("winter_wheat", "maize", "sunflower", "grassland", "broadleaf_forest")
# Headline scores per reference, written as null when the site lacks that reference.
HEADLINE = {
    "truth": ("lai_rmse_truth", "snap_lai_rmse_truth", "baseline_lai_rmse_truth"),
    "snap": ("lai_rmse_snap", "baseline_lai_rmse_snap"),
    "field_surveys": ("lai_rmse_field", "snap_lai_rmse_field", "baseline_lai_rmse_field"),
}


@dataclass
class HeldOut:
    """Estimates on the held-out pixels (P) at the S2 dates (T), each (T, P) unless noted."""

    dates: pd.DatetimeIndex
    rows: np.ndarray  # (P,) S2 grid row of each pixel
    cols: np.ndarray  # (P,)
    lai: np.ndarray
    low: np.ndarray
    high: np.ndarray
    clear: np.ndarray
    snap: np.ndarray
    truth: np.ndarray | None
    baseline: np.ndarray | None
    baseline_low: np.ndarray | None
    baseline_high: np.ndarray | None
    land_cover: np.ndarray | None  # (P,)
    parcel: np.ndarray | None = None  # (P,) the simulator's parcel id of each pixel


def scored_truth(truth: xr.Dataset) -> xr.Dataset:
    """The :data:`TRUTH_VARIABLES` of a truth cube (those it has)."""
    return truth[[v for v in TRUTH_VARIABLES if v in truth]]


def held_out_mask(index: pd.DataFrame, shape: tuple[int, int], splits: Sequence[str]) -> np.ndarray:
    """Bool (y, x): pixels of the places whose chunks belong to ``splits``."""
    mask = np.zeros(shape, dtype=bool)
    places = index[index["split"].isin(splits)].drop_duplicates(["row", "col"])
    for row in places.itertuples(index=False):
        y0, x0, n = int(row.y0), int(row.x0), int(row.size_px)
        mask[y0 : y0 + n, x0 : x0 + n] = True
    return mask


def split_metrics(
    est: HeldOut, index: pd.DataFrame, shape: tuple[int, int], splits: Sequence[str], cov: str
) -> dict[str, float]:
    """LAI RMSE against truth at SNAP's pixel-dates on each held-out split apart.

    Ours (with the interval's coverage) and SNAP's: training keeps the epoch that validated
    best on ``val``, so ``test`` is the split no choice has seen.

    Raises:
        ValueError: ``est`` has no truth.
    """
    truth = est.truth
    if truth is None:
        raise ValueError("split_metrics needs the truth: the site has none")
    out: dict[str, float] = {}
    at_snap = np.isfinite(est.snap)
    for split in splits:
        sel = held_out_mask(index, shape, [split])[est.rows, est.cols][None] & at_snap
        ours = scores(est.lai[sel], truth[sel], est.low[sel], est.high[sel])
        out[f"lai_n_truth_at_snap_{split}"] = ours["n"]
        out[f"lai_rmse_truth_at_snap_{split}"] = ours["rmse"]
        out[f"lai_{cov}_truth_at_snap_{split}"] = ours["coverage"]
        out[f"snap_lai_rmse_truth_{split}"] = scores(est.snap[sel], truth[sel])["rmse"]
    return out


def at_pixels(cube: xr.DataArray, rows: np.ndarray, cols: np.ndarray) -> xr.DataArray:
    """``cube`` (..., y, x) at the pixels (``rows``, ``cols``): (..., P).

    Only those pixels are read: of a lazily opened cube, only the chunks that hold them.
    """
    return cube.isel(y=xr.DataArray(rows, dims="p"), x=xr.DataArray(cols, dims="p"))


def at_days(
    cube: xr.DataArray, dates: pd.DatetimeIndex, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """Values (T, P) of a dated cube at pixels (``rows``, ``cols``) on the days of ``dates``.

    NaN where the cube has no value on a day.
    """
    cube = at_pixels(cube, rows, cols)
    days = cube.time.values.astype("datetime64[D]").astype("datetime64[ns]")
    cube = cube.assign_coords(time=days)
    cube = cube.isel(time=~pd.Index(days).duplicated())
    wanted = dates.values.astype("datetime64[D]").astype("datetime64[ns]")
    return cube.reindex(time=wanted).values


def nearest_valid(
    values: np.ndarray, dates: pd.DatetimeIndex, when: pd.DatetimeIndex, max_days: int
) -> tuple[np.ndarray, np.ndarray]:
    """For each column s of ``values`` (T, S): the finite value nearest in time to ``when[s]``.

    The value is taken on the date nearest to ``when[s]`` within ± ``max_days`` (earlier on
    ties).

    Returns:
        The values and their dates (NaN and NaT where none).
    """
    delta = np.abs(
        (dates.values[:, None] - when.values[None, :]).astype("timedelta64[D]").astype(float)
    )
    delta = np.where(np.isfinite(values) & (delta <= max_days), delta, np.inf)
    best = np.argmin(delta, axis=0)
    found = np.isfinite(delta[best, np.arange(values.shape[1])])
    value = np.where(found, values[best, np.arange(values.shape[1])], np.nan)
    picked = np.where(found, dates.values[best], np.datetime64("NaT"))
    return value, picked


BASELINE_BATCH = 65536  # pixel-dates per call of the per-pixel model


@torch.no_grad()
def baseline_estimates(
    model: torch.nn.Module, s2: xr.Dataset, selection: np.ndarray, interval: float
) -> tuple[np.ndarray, ...]:
    """Per-pixel inversion LAI median and interval bounds (time, y, x).

    Values at the clear pixel-dates inside ``selection`` (time, y, x); NaN elsewhere. A
    pixel-date's value does not depend on which others share its call (regions of a site
    equal the whole site): small calls are padded as the decoder's (:func:`padded_rows`).
    """
    from releo.models.pixel_train import clear_pixel_dates

    pixels = clear_pixel_dates(s2, selection)
    q = (1.0 - interval) / 2
    outs = [np.full(selection.size, np.nan, np.float32) for _ in range(3)]
    model.eval()
    for start in range(0, len(pixels), BASELINE_BATCH):
        sl = slice(start, start + BASELINE_BATCH)
        n = len(pixels.flat[sl])
        bands, angles = (
            torch.from_numpy(padded_rows(a[sl])) for a in (pixels.bands, pixels.angles)
        )
        dist = model(bands, angles)["lai"]
        for out, value in zip(outs, (dist.median, dist.icdf(q), dist.icdf(1 - q)), strict=True):
            out[pixels.flat[sl]] = value[:n].numpy()
    return tuple(o.reshape(selection.shape) for o in outs)


def held_out_estimates(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    site: Site,
    truth: xr.Dataset | None,
    rows: np.ndarray,
    cols: np.ndarray,
    *,
    interval: float,
    baseline: torch.nn.Module | None,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
) -> HeldOut:
    """Ours, SNAP, the baseline and the truth at pixels (``rows``, ``cols``) at every S2 date.

    Only those pixels are read (the baseline's bands: the box that holds them).
    """
    s2 = site.s2
    dates = pd.DatetimeIndex(s2.time.values).normalize()
    x, y = s2.x.values[cols], s2.y.values[rows]
    ours = decode_pixels(
        model, embeddings, x, y, dates,
        interval=interval, calibration=calibration, blend_days=blend_days,
    )  # fmt: skip
    clear = at_pixels(s2[S2_MASK], rows, cols).values == MASK_CLEAR
    snap = np.full(clear.shape, np.nan, np.float32)
    if site.reference is not None:
        snap = at_days(site.reference[REFERENCE_LAI], dates, rows, cols)
    base: list[np.ndarray | None] = [None, None, None]
    if baseline is not None and len(rows):
        y0, x0 = int(rows.min()), int(cols.min())
        box = s2.isel(y=slice(y0, int(rows.max()) + 1), x=slice(x0, int(cols.max()) + 1))
        selection = np.zeros((len(dates), box.sizes["y"], box.sizes["x"]), bool)
        selection[:, rows - y0, cols - x0] = True
        estimates = baseline_estimates(baseline, box, selection, interval)
        base = [b[:, rows - y0, cols - x0] for b in estimates]
    truth_lai = land = parcel = None
    if truth is not None:
        truth_lai = at_days(truth["lai"], dates, rows, cols)
        if "land_cover" in truth:
            land = at_pixels(truth["land_cover"], rows, cols).values
        if "parcel_id" in truth:
            parcel = at_pixels(truth["parcel_id"], rows, cols).values
    return HeldOut(
        dates=dates, rows=rows, cols=cols,
        lai=ours["lai"], low=ours["lai_low"], high=ours["lai_high"],
        clear=clear, snap=snap, truth=truth_lai,
        baseline=base[0], baseline_low=base[1], baseline_high=base[2], land_cover=land,
        parcel=parcel,
    )  # fmt: skip


def merge_pixels(parts: Sequence[HeldOut], where: Sequence[np.ndarray], n: int) -> HeldOut:
    """One :class:`HeldOut` of ``n`` pixels from ``parts`` whose pixels are ``where`` in it."""
    merged: dict = {"dates": parts[0].dates}
    for field in dataclasses.fields(HeldOut):
        values = [getattr(p, field.name) for p in parts]
        if field.name == "dates" or values[0] is None:
            merged.setdefault(field.name, values[0])
            continue
        full = np.empty((*values[0].shape[:-1], n), values[0].dtype)
        for value, at in zip(values, where, strict=True):
            full[..., at] = value  # pixels are the last axis
        merged[field.name] = full
    return HeldOut(**merged)


def named(result: dict[str, float], **names: str) -> dict[str, float]:
    """The :func:`scores` of ``result`` under the metric names given for them.

    Names are given as ``rmse="lai_rmse_truth"``; scores not computed (no interval, no
    coverage) are left out.
    """
    return {name: result[score] for score, name in names.items() if score in result}


def truth_metrics(est: HeldOut, cov: str) -> tuple[dict, dict]:
    """Flat headline metrics and nested breakdowns (per sky, per land cover) against truth."""
    if est.truth is None:
        return {}, {}
    t = est.truth
    base = est.baseline if est.baseline is not None else np.full_like(t, np.nan)
    b_low = est.baseline_low if est.baseline_low is not None else None
    b_high = est.baseline_high if est.baseline_high is not None else None
    at_snap = np.isfinite(est.snap)
    at_base = np.isfinite(base)
    clear, cloudy = est.clear, ~est.clear
    flat: dict = {
        **named(
            scores(est.lai, t, est.low, est.high),
            n="lai_n_truth", rmse="lai_rmse_truth", bias="lai_bias_truth", r2="lai_r2_truth",
            coverage=f"lai_{cov}_truth",
        ),
        **named(
            scores(est.lai[clear], t[clear], est.low[clear], est.high[clear]),
            n="lai_n_truth_clear", rmse="lai_rmse_truth_clear", bias="lai_bias_truth_clear",
            r2="lai_r2_truth_clear", coverage=f"lai_{cov}_truth_clear",
        ),
        **named(
            scores(est.lai[cloudy], t[cloudy], est.low[cloudy], est.high[cloudy]),
            n="lai_n_truth_cloudy", rmse="lai_rmse_truth_cloudy", bias="lai_bias_truth_cloudy",
            r2="lai_r2_truth_cloudy", coverage=f"lai_{cov}_truth_cloudy",
        ),
        **named(
            scores(est.lai[at_snap], t[at_snap], est.low[at_snap], est.high[at_snap]),
            n="lai_n_truth_at_snap", rmse="lai_rmse_truth_at_snap",
            bias="lai_bias_truth_at_snap", r2="lai_r2_truth_at_snap",
            coverage=f"lai_{cov}_truth_at_snap",
        ),
        **named(
            scores(est.snap, t),
            n="snap_lai_n_truth", rmse="snap_lai_rmse_truth", bias="snap_lai_bias_truth",
            r2="snap_lai_r2_truth",
        ),
        **named(
            scores(est.lai[at_base], t[at_base]),
            n="lai_n_truth_at_baseline", rmse="lai_rmse_truth_at_baseline",
            bias="lai_bias_truth_at_baseline", r2="lai_r2_truth_at_baseline",
        ),
        **named(
            scores(base, t, b_low, b_high),
            n="baseline_lai_n_truth", rmse="baseline_lai_rmse_truth",
            bias="baseline_lai_bias_truth", r2="baseline_lai_r2_truth",
            coverage=f"baseline_lai_{cov}_truth",
        ),
    }  # fmt: skip
    if est.parcel is not None:
        # one group per parcel and date, at SNAP's pixel-dates: level vs layout errors
        groups = np.arange(t.shape[0])[:, None] * (int(est.parcel.max()) + 1) + est.parcel
        ours = parcel_split(np.where(at_snap, est.lai, np.nan), t, groups)
        snap = parcel_split(est.snap, t, groups)
        flat["lai_rmse_truth_at_snap_between_parcels"] = ours["between"]
        flat["lai_rmse_truth_at_snap_within_parcels"] = ours["within"]
        flat["snap_lai_rmse_truth_at_snap_between_parcels"] = snap["between"]
        flat["snap_lai_rmse_truth_at_snap_within_parcels"] = snap["within"]
        flat["truth_lai_within_parcels_at_snap"] = ours["reference_within"]
    names = dict(enumerate(LAND_COVER_CLASSES))
    classes = np.broadcast_to(est.land_cover, t.shape) if est.land_cover is not None else None
    nested = {
        "by_sky": {
            sky: {
                "lai": scores(est.lai[sel], t[sel], est.low[sel], est.high[sel]),
                "snap": scores(est.snap[sel], t[sel]),
                "baseline": scores(base[sel], t[sel]),
            }
            for sky, sel in (("clear", est.clear), ("cloudy", ~est.clear))
        }
    }
    if classes is not None:
        per = {
            "lai": grouped_scores(classes, names, est.lai, t, est.low, est.high),
            "snap": grouped_scores(classes, names, est.snap, t),
            "baseline": grouped_scores(classes, names, base, t),
        }
        nested["by_land_cover"] = {
            name: {k: v[name] for k, v in per.items() if name in v} for name in per["lai"]
        }
    return flat, nested


def snap_metrics(est: HeldOut, cov: str) -> dict:
    """Ours and the baseline against the SNAP reference at its held-out pixel-dates.

    Ours with its interval's coverage of SNAP: how far the products are from the operational
    one.
    """
    base = est.baseline if est.baseline is not None else np.full_like(est.snap, np.nan)
    return {
        **named(
            scores(est.lai, est.snap, est.low, est.high),
            n="lai_n_snap", rmse="lai_rmse_snap", bias="lai_bias_snap", r2="lai_r2_snap",
            coverage=f"lai_{cov}_snap",
        ),
        **named(
            scores(base, est.snap),
            n="baseline_lai_n_snap", rmse="baseline_lai_rmse_snap",
            bias="baseline_lai_bias_snap", r2="baseline_lai_r2_snap",
        ),
    }  # fmt: skip


def survey_pixels(surveys: pd.DataFrame, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Grid row and column of each survey, and whether it falls on the grid.

    The grid is given by its pixel-centre axes ``x``, ``y`` (north-up).
    """
    res = float(abs(x[1] - x[0]))
    col = np.floor((surveys["x"].to_numpy() - (x[0] - res / 2)) / res).astype(int)
    row = np.floor(((y[0] + res / 2) - surveys["y"].to_numpy()) / res).astype(int)
    inside = (row >= 0) & (row < len(y)) & (col >= 0) & (col < len(x))
    return row, col, inside


def survey_matches(
    surveys: pd.DataFrame,
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    site: Site,
    est: HeldOut,
    mask: np.ndarray,
    *,
    interval: float,
    max_days: int,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
) -> pd.DataFrame:
    """One row per held-out survey: the measurement, ours, SNAP and the baseline.

    Ours is decoded at the point and day; SNAP and the baseline are taken at the point's
    pixel on the nearest date with a value (± ``max_days``).
    """
    row, col, inside = survey_pixels(surveys, site.s2.x.values, site.s2.y.values)
    keep = inside.copy()
    keep[inside] = mask[row[inside], col[inside]]
    table = surveys.loc[keep].reset_index(drop=True)
    row, col = row[keep], col[keep]
    when = pd.DatetimeIndex(pd.to_datetime(table["date"])).tz_localize(None).normalize()
    ours = decode_pairs(
        model, embeddings, table["x"].to_numpy(), table["y"].to_numpy(), when,
        interval=interval, calibration=calibration, blend_days=blend_days,
    )  # fmt: skip
    out = pd.DataFrame(
        {
            "point_id": table["point_id"],
            "date": when,
            "land_cover": table["land_cover"].astype(str),
            "survey": table["lai"].astype(float),
            "survey_std": table["lai_std"].astype(float),
            "lai": ours["lai"],
            "lai_low": ours["lai_low"],
            "lai_high": ours["lai_high"],
            "row": row,
            "col": col,
        }
    )
    # held-out pixel p of each survey: est arrays are (T, P) over np.nonzero(mask) order
    position = np.full(mask.shape, -1, dtype=np.int64)
    position[est.rows, est.cols] = np.arange(len(est.rows))
    p = position[row, col]
    for name, values in (("snap", est.snap), ("baseline", est.baseline)):
        if values is None:
            out[name], out[f"{name}_date"] = np.nan, pd.NaT
            continue
        value, picked = nearest_valid(values[:, p], est.dates, when, max_days)
        out[name], out[f"{name}_date"] = value, picked
    return out


def field_metrics(table: pd.DataFrame, cov: str) -> tuple[dict, dict]:
    """Flat metrics and per-land-cover breakdown against the field surveys."""
    s, lai = table["survey"].to_numpy(), table["lai"].to_numpy()
    snap, base = table["snap"].to_numpy(), table["baseline"].to_numpy()
    at_snap = np.isfinite(snap)
    flat = {
        **named(
            scores(lai, s, table["lai_low"], table["lai_high"]),
            n="lai_n_field", rmse="lai_rmse_field", bias="lai_bias_field", r2="lai_r2_field",
            coverage=f"lai_{cov}_field",
        ),
        **named(
            scores(lai[at_snap], s[at_snap]),
            n="lai_n_field_at_snap", rmse="lai_rmse_field_at_snap",
            bias="lai_bias_field_at_snap", r2="lai_r2_field_at_snap",
        ),
        **named(
            scores(snap, s),
            n="snap_lai_n_field", rmse="snap_lai_rmse_field", bias="snap_lai_bias_field",
            r2="snap_lai_r2_field",
        ),
        **named(
            scores(base, s),
            n="baseline_lai_n_field", rmse="baseline_lai_rmse_field",
            bias="baseline_lai_bias_field", r2="baseline_lai_r2_field",
        ),
    }  # fmt: skip
    classes = table["land_cover"].to_numpy()
    per = {
        "lai": grouped_scores(classes, None, lai, s, table["lai_low"], table["lai_high"]),
        "snap": grouped_scores(classes, None, snap, s),
        "baseline": grouped_scores(classes, None, base, s),
    }
    nested = {name: {k: v[name] for k, v in per.items() if name in v} for name in per["lai"]}
    return flat, {"by_land_cover": nested}


def product_metrics(product: xr.Dataset, truth: xr.Dataset, mask: np.ndarray, cov: str) -> dict:
    """The decoded product itself (e.g. weekly maps) against the daily truth on held-out pixels.

    The product is sampled at the truth pixel centres (nearest product pixel).
    """
    rows, cols = np.nonzero(mask)
    res = float(product.attrs.get("resolution_m", 10.0))
    xs = xr.DataArray(truth.x.values[cols], dims="p")
    ys = xr.DataArray(truth.y.values[rows], dims="p")
    picked = product.sel(x=xs, y=ys, method="nearest")
    near = (np.abs(picked.x.values - xs.values) <= res / 2) & (
        np.abs(picked.y.values - ys.values) <= res / 2
    )
    dates = pd.DatetimeIndex(product.time.values).normalize()
    t = at_days(truth["lai"], dates, rows, cols)
    sel = np.broadcast_to(near, t.shape)
    lai, low, high = (
        np.where(sel, picked[v].values, np.nan) for v in ("lai", "lai_low", "lai_high")
    )
    return named(
        scores(lai, t, low, high),
        n="lai_n_truth_product", rmse="lai_rmse_truth_product", bias="lai_bias_truth_product",
        r2="lai_r2_truth_product", coverage=f"lai_{cov}_truth_product",
    )  # fmt: skip


def sample_fields(
    truth: xr.Dataset, mask: np.ndarray, surveyed: np.ndarray, n: int
) -> list[tuple[str, np.ndarray]]:
    """Up to ``n`` held-out parcels (name, held-out pixels), one per vegetated class.

    Parcels with ``surveyed`` pixels come first.
    """
    if n <= 0 or "parcel_id" not in truth or "land_cover" not in truth:
        return []
    parcel = truth["parcel_id"].values
    land = truth["land_cover"].values
    ids, counts = np.unique(parcel[mask], return_counts=True)
    with_surveys = set(parcel[surveyed].tolist())
    picks = []
    for name in SURVEY_CLASSES:
        k = LAND_COVER_CLASSES.index(name)
        cand = [(pid in with_surveys, c, pid) for pid, c in zip(ids, counts, strict=True)
                if land[parcel == pid][0] == k and c >= 20]  # fmt: skip
        if cand:
            pid = max(cand)[2]
            picks.append((f"{name} (parcel {int(pid)})", (parcel == pid) & mask))
        if len(picks) == n:
            break
    return picks


def scored_pixels(mask: np.ndarray, limit: int | None, seed: int, keep: np.ndarray) -> np.ndarray:
    """The held-out pixels whose every S2 date is scored: all of ``mask`` up to ``limit``.

    Above it, a seeded random sample of ``limit`` of them plus the held-out ``keep`` pixels
    (surveys, plotted fields): the scores' memory stays bounded whatever the site's size.
    """
    if limit is None or int(mask.sum()) <= limit:
        return mask
    rows, cols = np.nonzero(mask)
    pick = np.random.default_rng(seed).choice(len(rows), limit, replace=False)
    out = keep & mask
    out[rows[pick], cols[pick]] = True
    return out


def field_time_series(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    site: Site,
    truth: xr.Dataset,
    est: HeldOut,
    surveys: pd.DataFrame | None,
    fields: list[tuple[str, np.ndarray]],
    *,
    interval: float,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
) -> dict[str, pd.DataFrame]:
    """Daily parcel means of truth, ours, SNAP and the baseline, and the parcel's surveys.

    For the ``fields`` of :func:`sample_fields`, whose pixels ``est`` holds. Ours comes with
    its interval; SNAP and the baseline are taken at the S2 dates, where ≥ half the parcel
    has a value.
    """
    start, end = site.period
    days = pd.date_range(start, end, freq="D")
    position = np.full(truth["lai"].shape[-2:], -1, dtype=np.int64)
    position[est.rows, est.cols] = np.arange(len(est.rows))
    out = {}
    for name, pixels in fields:
        rows, cols = np.nonzero(pixels)
        ours = decode_pixels(
            model, embeddings, site.s2.x.values[cols], site.s2.y.values[rows], days,
            interval=interval, calibration=calibration, blend_days=blend_days,
        )  # fmt: skip
        frame = pd.DataFrame(
            {
                "truth": np.nanmean(at_days(truth["lai"], days, rows, cols), axis=1),
                "lai": np.nanmean(ours["lai"], axis=1),
                "lai_low": np.nanmean(ours["lai_low"], axis=1),
                "lai_high": np.nanmean(ours["lai_high"], axis=1),
            },
            index=days,
        )
        p = position[rows, cols]
        for key, values in (("snap", est.snap), ("baseline", est.baseline)):
            if values is None:
                continue
            part = values[:, p]
            enough = np.isfinite(part).mean(axis=1) >= 0.5
            mean = np.where(enough, np.nanmean(np.where(enough[:, None], part, 0), axis=1), np.nan)
            frame[key] = pd.Series(mean, index=est.dates).groupby(level=0).mean()
        if surveys is not None and len(surveys):
            inside = surveys[pixels[surveys["row"].to_numpy(), surveys["col"].to_numpy()]]
            frame["survey"] = inside.groupby("date")["survey"].mean().reindex(days)
        frame.index.name = "date"
        out[name] = frame
    return out


def seam_ratio(series: np.ndarray, crossing: np.ndarray) -> float:
    """Mean day-to-day |change| of daily ``series`` across window boundaries over within them.

    ``series`` is (days, pixels); ``crossing`` (days - 1,) marks the day pairs that cross a
    window boundary. 1 for a product without steps at the boundaries, ~3 for a 10-day
    staircase.
    """
    change = np.abs(np.diff(series, axis=0))
    across, within = change[crossing], change[~crossing]
    if not (np.isfinite(across).any() and np.isfinite(within).any()):
        return math.nan
    return float(np.nanmean(across) / np.nanmean(within))


def seam_metrics(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    site: Site,
    truth: xr.Dataset | None,
    mask: np.ndarray,
    *,
    pixels: int,
    seed: int,
    blend_days: float | None,
) -> dict[str, float | None]:
    """The seam ratio (:func:`seam_ratio`) of daily LAI at ``pixels`` held-out pixels.

    Of the LAI as decoded (``seam_ratio``), without blending windows
    (``seam_ratio_unblended``) and of the truth (``seam_ratio_truth``).
    """
    rows, cols = np.nonzero(mask)
    if pixels == 0 or len(rows) == 0:
        return {"seam_ratio": None, "seam_ratio_unblended": None, "seam_ratio_truth": None}
    pick = np.random.default_rng(seed).choice(len(rows), min(pixels, len(rows)), replace=False)
    rows, cols = rows[np.sort(pick)], cols[np.sort(pick)]
    layout = ChunkLayout.from_embeddings(embeddings)
    first, last = layout.period
    days = pd.date_range(first, last, freq="D")
    window, _ = layout.window_of(days)
    crossing = window[1:] != window[:-1]
    x, y = site.s2.x.values[cols], site.s2.y.values[rows]
    out: dict[str, float | None] = {}
    for key, blend in (("seam_ratio", blend_days), ("seam_ratio_unblended", 0.0)):
        lai = decode_pixels(model, embeddings, x, y, days, blend_days=blend)["lai"]
        out[key] = seam_ratio(lai, crossing)
    out["seam_ratio_truth"] = (
        seam_ratio(at_days(truth["lai"], days, rows, cols), crossing) if truth is not None else None
    )
    return out


def load_baseline(params: Params, root: Path) -> tuple[torch.nn.Module | None, str]:
    """The per-pixel inversion: the configured model file, else trained now.

    Trained on the train split (``params.baseline`` when the project defines it); None if the
    module is absent.
    """
    # INTEGRATION POINT (per-pixel baseline, releo.models.pixel / pixel_train).
    try:
        from releo.models.pixel import BaselineConfig, load_pixel_inversion
        from releo.models.pixel_train import train_pixel_inversion
    except ImportError:
        return None, "unavailable"
    path = params.products.evaluate.baseline_model
    if path is not None and (root / path).is_file():
        return load_pixel_inversion(root / path), str(path)
    cfg = getattr(params, "baseline", None) or BaselineConfig()
    model, _ = train_pixel_inversion(root / params.data_dir, root / INDEX, cfg)
    return model, "trained during evaluate"


def scatter_table(est: HeldOut, n: int, seed: int, against: str = "truth") -> pd.DataFrame:
    """A random sample of held-out pixel-dates with a value of ``against``.

    ``against`` is ``truth``, or ``snap`` on sites without truth; every estimate side by side.

    Raises:
        ValueError: ``est`` has no value of ``against``.
    """
    reference = est.truth if against == "truth" else est.snap
    if reference is None:
        raise ValueError(f"no {against} to sample the scatter table against")
    t_idx, p_idx = np.nonzero(np.isfinite(reference))
    if len(t_idx) > n:
        pick = np.sort(np.random.default_rng(seed).choice(len(t_idx), n, replace=False))
        t_idx, p_idx = t_idx[pick], p_idx[pick]
    classes = np.array(LAND_COVER_CLASSES)
    land = est.land_cover[p_idx] if est.land_cover is not None else np.full(len(p_idx), -1)
    base = est.baseline if est.baseline is not None else np.full_like(est.lai, np.nan)
    dates = est.dates[t_idx]
    truth = est.truth[t_idx, p_idx] if est.truth is not None else None
    return pd.DataFrame(
        {
            "date": dates.date.astype(str),
            "doy": dates.day_of_year,
            "land_cover": np.where(land >= 0, classes[np.clip(land, 0, None)], "unknown"),
            "sky": np.where(est.clear[t_idx, p_idx], "clear", "cloudy"),
            **({"truth": truth} if truth is not None else {}),
            "lai": est.lai[t_idx, p_idx],
            "lai_low": est.low[t_idx, p_idx],
            "lai_high": est.high[t_idx, p_idx],
            "snap": est.snap[t_idx, p_idx],
            "baseline": base[t_idx, p_idx],
        }
    )


def write_plots(
    target: Path,
    scatter: pd.DataFrame | None,
    field: pd.DataFrame | None,
    series: dict[str, pd.DataFrame],
    snap_scatter: pd.DataFrame | None = None,
) -> list[str]:
    """The ``dvc plots`` tables and their PNG renderings, replacing the folder ``target``."""
    written = []
    estimates = {"ours (embeddings)": "lai", "SNAP": "snap", "per-pixel": "baseline"}
    with atomic_dir(target) as tmp:
        if snap_scatter is not None:
            write_table(snap_scatter, tmp / "snap_scatter.csv")
            ours = {k: v for k, v in estimates.items() if v != "snap"}
            plots.scatter(snap_scatter, "snap", ours, tmp / "snap_scatter.png",
                          "held-out pixel-dates vs the SNAP reference")  # fmt: skip
            written += ["snap_scatter.csv", "snap_scatter.png"]
        if scatter is not None:
            write_table(scatter, tmp / "truth_scatter.csv")
            plots.scatter(scatter, "truth", estimates, tmp / "truth_scatter.png",
                          "held-out pixel-dates vs simulator truth")  # fmt: skip
            written += ["truth_scatter.csv", "truth_scatter.png"]
        if field is not None:
            table = field.assign(date=field["date"].dt.date.astype(str))
            write_table(table, tmp / "field_scatter.csv")
            plots.scatter(field, "survey", estimates, tmp / "field_scatter.png",
                          "held-out field surveys")  # fmt: skip
            written += ["field_scatter.csv", "field_scatter.png"]
        for k, (name, frame) in enumerate(series.items(), start=1):
            table = frame.reset_index()
            table.insert(0, "field", name)
            table.insert(2, "doy", table["date"].dt.day_of_year)
            table["date"] = table["date"].dt.date.astype(str)
            write_table(table, tmp / f"timeseries_{k}.csv")
            written.append(f"timeseries_{k}.csv")
        if series:
            plots.time_series(series, tmp / "timeseries.png")
            written.append("timeseries.png")
    return written
