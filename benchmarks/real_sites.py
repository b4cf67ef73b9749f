"""Label-free checks of a trained model on real data: the two Belgian S2 + S1 series.

Run with `make bench-real` (or `.venv/bin/python benchmarks/real_sites.py --model models/model.pt`)
after `make run`. Each real site (tests/data/real_timeseries, MIT) is built with `releo site
build` (S1 incidence stated: 39°), cut into 640 m × 10-day chunks, embedded with the model and
decoded at every S2 date (from the embeddings alone, refined as the embed stage does, windows
blended) and daily. Three checks, none of which needs field LAI:

- agreement with SNAP's LAI (the peer, computed in the same run) on clear pixel-dates: Pearson
  r, the slope of releo on SNAP, bias and RMSE (SNAP's own error against field LAI is ~1),
  and whether releo's σ (uncalibrated) grows where the two disagree;
- crop calendars: the day of the peak of the daily parcel-mean LAI per crop of the labels'
  year (winter cereals peak in spring, maize and sugar beet in summer), releo's and SNAP's,
  and the bias and RMSE of the crop's mean LAI against SNAP's at its clear dates;
- the S2 reconstruction error of clear observations over the L2A noise level (1: the model
  explains real spectra to the noise).

Writes benchmarks/results/real_sites.json and prints the figures.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.stats import spearmanr
from torch.utils.data import DataLoader

from releo.config import load_params
from releo.data.build import build_site
from releo.data.chunks import ChunkDataset, chunk_index, collate_chunks
from releo.data.contracts import MASK_CLEAR, REFERENCE_LAI, S2_MASK
from releo.data.site import open_site
from releo.models import LossWeights
from releo.models.checkpoint import load_autoencoder, trained_weights
from releo.products.config import EmbedConfig
from releo.products.decode import decode_pixels
from releo.products.embed import embeddings_cube, encode_chunks
from releo.products.evaluate import seam_ratio
from releo.products.grid import ChunkLayout
from releo.train.loop import evaluate
from report import report

ROOT = Path(__file__).resolve().parents[1]
REAL = ROOT / "tests" / "data" / "real_timeseries"
CHUNK_M, DAYS, INCIDENCE = 640.0, 10, 39.0
# WorldCereal crop codes of the labels (tests/data/real_timeseries/README.md) and the months
# where a Belgian crop's green LAI peaks (winter cereals: heading, May-June; summer crops:
# canopy closure, July-September; grass is cut several times and has no single peak)
CROPS = {
    1110: ("winter_wheat", (5, 6)),
    1510: ("winter_barley", (4, 6)),
    1200: ("maize", (7, 9)),
    8100: ("sugar_beet", (7, 9)),
}


def build(folder: Path, out: Path) -> None:
    files = {f.name.split("_")[0]: f for f in folder.glob("*.nc")}
    build_site(
        s2=sorted(folder.glob("S2_L2A_*.nc")), s1=[files["S1"]], meteo=files["AgERA5"],
        s1_incidence=INCIDENCE, s2_platform="S2A", out=out, context_root=out.parent / "gx",
    )  # fmt: skip


def agreement(ours: np.ndarray, snap: np.ndarray) -> dict[str, float]:
    """Pearson r, OLS slope of ``ours`` on ``snap``, bias and RMSE where both are finite."""
    ok = np.isfinite(ours) & np.isfinite(snap)
    a, b = ours[ok].astype(np.float64), snap[ok].astype(np.float64)
    if len(a) < 3:
        return {"n": len(a)}
    slope = float(np.cov(a, b)[0, 1] / np.var(b, ddof=1))
    return {
        "n": len(a),
        "r": float(np.corrcoef(a, b)[0, 1]),
        "slope": slope,
        "bias": float((a - b).mean()),
        "rmse": float(np.sqrt(((a - b) ** 2).mean())),
        "mean_releo": float(a.mean()),
        "mean_snap": float(b.mean()),
    }


def uncertainty_vs_snap(decoded: dict[str, np.ndarray], snap: np.ndarray, bins: int = 5) -> dict:
    """Does releo's σ grow where it disagrees with SNAP? Where both have a value: Spearman's ρ
    between σ and |releo − SNAP|, the RMS disagreement per σ quintile, and the share of SNAP
    inside releo's 90 % interval (SNAP's own error included: not the nominal 0.9)."""
    ours, sigma = decoded["lai"], decoded["lai_std"]
    ok = np.isfinite(ours) & np.isfinite(snap) & np.isfinite(sigma)
    s, diff = sigma[ok].astype(np.float64), (ours - snap)[ok].astype(np.float64)
    edges = np.quantile(s, np.linspace(0, 1, bins + 1))
    which = np.clip(np.searchsorted(edges, s, side="right") - 1, 0, bins - 1)
    rms = [float(np.sqrt((diff[which == i] ** 2).mean())) for i in range(bins)]
    inside = (snap >= decoded["lai_low"]) & (snap <= decoded["lai_high"])
    return {
        "spearman_sigma_vs_abs_diff": float(spearmanr(s, np.abs(diff)).statistic),
        "sigma_by_quintile": [float(s[which == i].mean()) for i in range(bins)],
        "rms_diff_by_quintile": rms,
        "rms_diff_top_vs_bottom_quintile": rms[-1] / rms[0],
        "snap_inside_interval": float(inside[ok].mean()),
    }


def peak_day(series: pd.Series, smooth_days: int = 15) -> str | None:
    """Date of the maximum of a daily series after a centred running mean."""
    values = series.rolling(smooth_days, center=True, min_periods=1).mean().dropna()
    return None if values.empty else str(values.idxmax().date())


def check_site(folder: Path, model, weights: LossWeights, embed: EmbedConfig, work: Path) -> dict:
    site_dir = work / folder.name
    started = time.perf_counter()
    build(folder, site_dir)
    build_s = time.perf_counter() - started
    site = open_site(site_dir)
    s2, s1 = site.s2.load(), site.s1.load()
    reference = site.reference[[REFERENCE_LAI]].load()
    index = chunk_index(s2, s1, size_m=CHUNK_M, days=DAYS, split={"train": 0, "val": 1, "test": 0})
    context = model.cfg.context_days
    dataset = ChunkDataset(s2, s1, index, reference=reference, context_days=context)
    started = time.perf_counter()
    z = encode_chunks(
        model,
        dataset,
        batch_size=4,
        weights=weights,
        refine_steps=embed.refine_steps,
        refine_lr=embed.refine_lr,
        refine_terms=embed.refine_terms,
    )
    embed_s = time.perf_counter() - started
    pixel = float(s2.x.values[1] - s2.x.values[0])
    cube = embeddings_cube(z, index, crs=site.crs, pixel_size_m=pixel, chunk_days=DAYS)
    layout = ChunkLayout.from_embeddings(cube)
    npx = round(CHUNK_M / pixel)
    ys, xs = s2.y.values[:npx], s2.x.values[:npx]
    gx, gy = np.meshgrid(xs, ys)
    x, y = gx.ravel(), gy.ravel()

    # 1. SNAP on clear pixel-dates (SNAP is defined there only)
    dates = pd.DatetimeIndex(s2.time.values).normalize()
    decoded = decode_pixels(model, cube, x, y, dates)  # each (T, P)
    ours = decoded["lai"]
    clear = (s2[S2_MASK].values[:, :npx, :npx] == MASK_CLEAR).reshape(len(dates), -1)
    snap = reference[REFERENCE_LAI].sel(time=s2.time).values[:, :npx, :npx].reshape(len(dates), -1)
    snap = np.where(clear, snap, np.nan)
    out: dict = {"build_s": build_s, "embed_s": embed_s, "chunks": len(index)}
    out["vs_snap"] = agreement(np.where(clear, ours, np.nan), snap)
    out["uncertainty"] = uncertainty_vs_snap(decoded, snap)

    # 2. crop calendars over the labels' year
    labels = next(folder.glob("OUTPUT_POLY-110_*.nc"))
    with xr.open_dataset(labels) as ds:
        crop = ds["CT"].values[:npx, :npx].ravel()
    year = int(labels.stem.split("_")[-1][:4])
    days = pd.date_range(f"{year}-01-01", f"{year}-10-31", freq="D")
    days = days[(days >= layout.period[0]) & (days <= layout.period[1])]
    daily = decode_pixels(model, cube, x, y, days)["lai"]
    calendars = {}
    for code, (name, months) in CROPS.items():
        pick = crop == code
        if pick.sum() < 20:
            continue
        series = pd.Series(np.nanmean(daily[:, pick], axis=1), index=days)
        # SNAP at the dates where the crop is clear (>= 80 % of its pixels), a 3-date median
        seen = (clear[:, pick].mean(axis=1) >= 0.8) & (dates.year == year)
        snap_mean = np.nanmean(snap[seen][:, pick], axis=1)
        # the crop's mean LAI at those dates, releo's against SNAP's: a season's shape can
        # have two near-equal maxima, where the peak date alone says little
        crop_vs_snap = agreement(np.nanmean(ours[seen][:, pick], axis=1), snap_mean)
        snap_series = pd.Series(snap_mean, index=dates[seen])
        snap_series = snap_series.rolling(3, center=True, min_periods=1).median()
        peak = peak_day(series)
        expected = range(months[0], months[1] + 1)
        calendars[name] = {
            "pixels": int(pick.sum()),
            "peak": peak,
            "peak_in_expected_months": bool(peak and pd.Timestamp(peak).month in expected),
            "peak_lai": float(series.max()),
            "snap_peak": str(snap_series.idxmax().date()) if len(snap_series) else None,
            "snap_peak_lai": float(snap_series.max()) if len(snap_series) else math.nan,
            "snap_clear_dates": int(seen.sum()),
            "bias_to_snap": crop_vs_snap.get("bias", math.nan),
            "rmse_to_snap": crop_vs_snap.get("rmse", math.nan),
        }
    out["crop_calendars"] = calendars
    window, _ = layout.window_of(days)
    out["seam_ratio"] = seam_ratio(daily, window[1:] != window[:-1])

    # 3. S2 reconstruction of clear observations over the L2A noise (and both decoding paths
    # against SNAP)
    loader = DataLoader(dataset, batch_size=2, collate_fn=collate_chunks)
    metrics = evaluate(model, loader, weights)
    out["s2_reconstruction_rmse"] = metrics["s2_reconstruction_rmse"]
    out["s2_noise_rms"] = metrics["s2_noise_rms"]
    out["s2_fit_to_noise"] = metrics["s2_reconstruction_rmse"] / metrics["s2_noise_rms"]
    out["s1_reconstruction_rmse_db"] = metrics["s1_reconstruction_rmse_db"]
    # the two decoding paths against SNAP at the window's S2 dates: with the per-pixel detail,
    # and from the embedding alone (what the products decode)
    for key in ("lai_rmse_snap", "lai_rmse_snap_embedding_only"):
        out[key] = metrics[key]
    # per band: where real spectra leave what PROSAIL and the residual spectra can produce
    out["s2_rmse_per_band"] = {
        k[len("s2_rmse_") :]: v for k, v in metrics.items() if k.startswith("s2_rmse_B")
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "model.pt")
    parser.add_argument("--name", default="real_sites", help="results/<name>.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    model, payload = load_autoencoder(args.model)
    weights = trained_weights(payload)
    embed = load_params(ROOT / "params.yaml").products.embed  # as the embed stage refines
    results: dict = {"model": str(args.model)}
    with tempfile.TemporaryDirectory() as tmp:
        for folder in sorted(REAL.glob("worldcereal_*")):
            results[folder.name.removeprefix("worldcereal_")] = check_site(
                folder, model, weights, embed, Path(tmp)
            )
    report(args.name, results)


if __name__ == "__main__":
    main()
