"""Figures of the products: per-date quick-looks, the overview, and evaluation plots."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # headless: stages run in CI and on servers
    import matplotlib.pyplot as plt

    return plt


def _extent(ds: xr.Dataset) -> tuple[float, float, float, float]:
    dx = float(abs(ds.x.values[1] - ds.x.values[0])) if ds.sizes["x"] > 1 else 1.0
    dy = float(abs(ds.y.values[1] - ds.y.values[0])) if ds.sizes["y"] > 1 else 1.0
    return (
        float(ds.x.values.min()) - dx / 2,
        float(ds.x.values.max()) + dx / 2,
        float(ds.y.values.min()) - dy / 2,
        float(ds.y.values.max()) + dy / 2,
    )


def quicklooks(ds: xr.Dataset, folder: Path, vmax: float = 7.0) -> list[Path]:
    """One PNG of the LAI map per date (``lai_YYYY-MM-DD.png``); gaps stay blank."""
    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(4.2, 3.6), dpi=80)
    image = ax.imshow(
        ds["lai"].values[0], extent=_extent(ds), vmin=0, vmax=vmax, cmap="YlGn",
        interpolation="nearest",
    )  # fmt: skip
    fig.colorbar(image, ax=ax, label="LAI (m² m⁻²)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    paths = []
    for i, when in enumerate(pd.DatetimeIndex(ds.time.values)):
        image.set_data(ds["lai"].values[i])
        ax.set_title(f"LAI {when.date()}", fontsize=10)
        path = folder / f"lai_{when.date()}.png"
        fig.savefig(path)
        paths.append(path)
    plt.close(fig)
    return paths


def overview(ds: xr.Dataset, path: Path, panels: int = 12, vmax: float = 7.0) -> Path:
    """Evenly spaced dates: LAI maps with their standard deviation below, in one figure."""
    plt = _plt()
    n = min(panels, ds.sizes["time"])
    picks = np.unique(np.linspace(0, ds.sizes["time"] - 1, n).round().astype(int))
    cols = min(6, len(picks))
    lines = math.ceil(len(picks) / cols)
    fig, axes = plt.subplots(
        2 * lines, cols, figsize=(2.1 * cols + 1, 4.2 * lines), squeeze=False, dpi=90
    )
    std_max = (
        float(np.nanpercentile(ds["lai_std"].values, 99)) if ds["lai_std"].notnull().any() else 1.0
    )
    extent = _extent(ds)
    images = {}
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, i in enumerate(picks):
        line, col = divmod(k, cols)
        when = pd.Timestamp(ds.time.values[i]).date()
        for offset, var, cmap, top in ((0, "lai", "YlGn", vmax), (1, "lai_std", "magma", std_max)):
            ax = axes[2 * line + offset, col]
            images[var] = ax.imshow(
                ds[var].values[i], extent=extent, vmin=0, vmax=top, cmap=cmap,
                interpolation="nearest",
            )  # fmt: skip
            ax.set_title(f"{'LAI' if offset == 0 else 'σ'} {when}", fontsize=8)
    fig.subplots_adjust(left=0.02, right=0.88, top=0.9, bottom=0.03, hspace=0.35, wspace=0.1)
    fig.colorbar(images["lai"], cax=fig.add_axes((0.9, 0.55, 0.015, 0.33)), label="LAI")
    fig.colorbar(images["lai_std"], cax=fig.add_axes((0.9, 0.08, 0.015, 0.33)), label="LAI σ")
    fig.suptitle(ds.attrs.get("title", "LAI"), fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def scatter(table: pd.DataFrame, x: str, ys: Mapping[str, str], path: Path, title: str) -> Path:
    """Predictions (columns ``ys``: label → column) against ``x``, with the 1:1 line."""
    plt = _plt()
    cols = [c for c in ys.values() if c in table and table[c].notna().any()]
    fig, axes = plt.subplots(
        1, max(len(cols), 1), figsize=(3.6 * max(len(cols), 1), 3.6), squeeze=False, dpi=90
    )
    top = float(np.nanmax(table[[x, *cols]].to_numpy())) if cols else 1.0
    for ax, (label, col) in zip(
        axes[0], [(k, v) for k, v in ys.items() if v in cols], strict=False
    ):
        ok = table[[x, col]].notna().all(axis=1)
        err = table.loc[ok, col] - table.loc[ok, x]
        rmse = float(np.sqrt((err**2).mean())) if ok.any() else math.nan
        ax.scatter(table.loc[ok, x], table.loc[ok, col], s=4, alpha=0.4)
        ax.plot([0, top], [0, top], color="k", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(x)
        ax.set_ylabel(label)
        ax.set_title(f"{label}: RMSE {rmse:.2f} (n={int(ok.sum())})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def time_series(series: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """One panel per field: truth (daily), ours with its interval, SNAP, baseline, surveys.

    Each frame is indexed by date with columns among ``truth``, ``lai``, ``lai_low``,
    ``lai_high``, ``snap``, ``baseline``, ``survey``.
    """
    plt = _plt()
    n = max(len(series), 1)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.4 * n), squeeze=False, sharex=True, dpi=90)
    styles = {
        "truth": {"color": "k", "lw": 1.2, "label": "truth"},
        "lai": {"color": "tab:green", "lw": 1.5, "label": "ours (embeddings)"},
        "snap": {"color": "tab:orange", "ls": "none", "marker": "x", "label": "SNAP"},
        "baseline": {"color": "tab:purple", "ls": "none", "marker": "+", "label": "per-pixel"},
        "survey": {"color": "tab:red", "ls": "none", "marker": "o", "label": "field survey"},
    }
    for ax, (name, frame) in zip(axes[:, 0], series.items(), strict=False):
        if {"lai_low", "lai_high"} <= set(frame):
            band = frame[["lai_low", "lai_high"]].dropna()
            ax.fill_between(
                band.index, band["lai_low"], band["lai_high"], color="tab:green", alpha=0.2
            )
        for col, style in styles.items():
            if col in frame and frame[col].notna().any():
                values = frame[col].dropna()
                ax.plot(values.index, values.to_numpy(), **style)
        ax.set_ylabel("LAI")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=7, ncol=5, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
