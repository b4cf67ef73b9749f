"""Residual analysis of the model's outputs.

The scalar residual per modality, its dependence on the physical variables (disentanglement), and
the best affine match of the chunks' residual latents to the simulator's planted effects.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.chunks import load_part
from releo.discover.analysis import dependence, leading_direction, normalised_hsic, ridge_match
from releo.discover.config import DiscoverConfig
from releo.discover.fields import Fields
from releo.discover.latents import S1_RESIDUALS, S2_RESIDUALS, ModelOutputs
from releo.discover.series import field_date_means
from releo.discover.trajectories import Drivers
from releo.discover.truth import PlantedEquation, first_day
from releo.models import VARIABLES


def add_residual_scalars(outputs: ModelOutputs, cfg: DiscoverConfig) -> dict:
    """Project each modality's residual vectors on their leading direction.

    The direction is fitted on the fit splits; the projection is the scalar residual trajectory of a
    pixel.
    """
    info: dict[str, dict[str, Any]] = {}
    for modality, names, table in (
        ("s2", S2_RESIDUALS, outputs.s2),
        ("s1", S1_RESIDUALS, outputs.s1),
    ):
        if table.empty:
            table[f"res_{modality}"] = []
            info[modality] = {"rows": 0}
            continue
        rows = table["split"].isin(cfg.fit_splits) & table["clear"].astype(bool)
        source = table.loc[rows, list(names)] if rows.any() else table[list(names)]
        direction, share = leading_direction(source.to_numpy())
        table[f"res_{modality}"] = table[list(names)].to_numpy() @ direction
        info[modality] = {
            "rows": len(table),
            "leading_direction": dict(zip(names, np.round(direction, 4).tolist(), strict=True)),
            "leading_direction_energy_share": share,
            "residual_rms": float(np.sqrt(np.mean(table[list(names)].to_numpy() ** 2))),
        }
    return info


def disentanglement(outputs: ModelOutputs, cfg: DiscoverConfig) -> dict:
    """Dependence of the residuals on the physical variables on held-out places.

    Per pixel-date (scalar residual vs each decoded variable) and per chunk (residual latent vector
    vs mean decoded variables).
    """
    out = {}
    for modality, table in (("s2", outputs.s2), ("s1", outputs.s1)):
        if table.empty:
            continue
        rows = ~table["split"].isin(cfg.fit_splits)
        if modality == "s2":
            rows &= table["clear"].astype(bool)
        if rows.sum() < 10:
            rows = table["clear"].astype(bool) if modality == "s2" else table["split"].notna()
        part = table[rows]
        per_variable = dependence(
            part[f"res_{modality}"].to_numpy(), {v: part[v].to_numpy() for v in VARIABLES}
        )
        r = outputs.chunks.filter(like=f"{modality}_latent_").to_numpy()
        chunk_means = outputs.s2.groupby("chunk_id")[list(VARIABLES)].mean()
        physical = chunk_means.reindex(outputs.chunks["chunk_id"]).to_numpy()
        ok = np.isfinite(physical).all(axis=1)
        pair_corr = [
            abs(np.corrcoef(r[ok, i], physical[ok, j])[0, 1])
            for i in range(r.shape[1])
            for j in range(physical.shape[1])
            if np.std(r[ok, i]) > 0 and np.std(physical[ok, j]) > 0
        ]
        out[modality] = {
            "pixel_level": per_variable,
            "pixel_max_abs_pearson": max(v["abs_pearson"] for v in per_variable.values()),
            "pixel_max_mutual_information": max(
                v["mutual_information"] for v in per_variable.values()
            ),
            "pixel_max_hsic": max(v["hsic"] for v in per_variable.values()),
            "chunk_latent_vs_physical_hsic": normalised_hsic(r[ok], physical[ok])
            if ok.sum() >= 5
            else None,
            "chunk_latent_vs_physical_max_abs_pearson": max(pair_corr) if pair_corr else None,
            "pixel_rows": len(part),
        }
    return out


def chunk_latent_match(
    outputs: ModelOutputs,
    truth: xr.Dataset,
    planted: list[PlantedEquation],
    cfg: DiscoverConfig,
) -> dict:
    """Best affine (ridge) map from each chunk's residual latents to the planted imprint.

    The target is the mean planted imprint over the chunk's pixels and window; the map is fitted on
    the fit splits.
    """
    chunks = outputs.chunks
    out = {}
    for eq in planted:
        modality = eq.modality.lower()
        effect = truth[eq.pixel_variable]
        first = first_day(effect)
        target = np.full(len(chunks), np.nan)
        # one band of chunk rows (every day) read at a time: a lazily opened truth streams
        for (y0, size), members in chunks.groupby(["y0", "size_px"]).indices.items():
            band = load_part(effect.isel(y=slice(int(y0), int(y0 + size)))).values
            for i in members:
                row = chunks.iloc[i]
                start: np.datetime64 = np.datetime64(row.start, "D")
                end: np.datetime64 = np.datetime64(row.end, "D")
                a = max(int((start - first).astype(int)), 0)
                b = min(int((end - first).astype(int)) + 1, len(band))
                cols = slice(int(row.x0), int(row.x0 + row.size_px))
                if a < b:  # float64: the same sum whatever the memory layout read
                    target[i] = float(band[a:b, :, cols].mean(dtype=np.float64))
        features = chunks.filter(like=f"{modality}_latent_").to_numpy()
        ok = np.isfinite(target)
        fit = chunks["split"].isin(cfg.fit_splits).to_numpy() & ok
        test = ~chunks["split"].isin(cfg.fit_splits).to_numpy() & ok
        if fit.sum() < 3:
            out[modality] = {"note": f"{int(fit.sum())} fitted chunks"}
            continue
        out[modality] = ridge_match(features[fit], target[fit], features[test], target[test])
    return out


def field_series_table(outputs: ModelOutputs, fields: Fields, drivers: Drivers) -> pd.DataFrame:
    """Per modality, field and date: the scalar residual, the physical variables and drivers.

    The decoded physical variables are field means over the sampled pixels (clear ones for S2), next
    to the day's drivers: the extraction behind every latent and LAI target, for inspection.
    """
    parts = []
    for modality, table in (("s2", outputs.s2), ("s1", outputs.s1)):
        means = field_date_means(
            table,
            [f"res_{modality}", *VARIABLES],
            clear_only=modality == "s2",
            min_clear_fraction=0.0,
        )
        if means.empty:
            continue
        means = means.rename(columns={f"res_{modality}": "residual"})
        days = drivers.day_of(means["date"].to_numpy().astype("datetime64[D]"))
        inside = (days >= 0) & (days < len(drivers.dates))
        means = means[inside].copy()
        for k, name in enumerate(drivers.names):
            means[name] = drivers.values[days[inside], k]
        means.insert(0, "modality", modality)
        means.insert(2, "field_name", means["field"].map(fields.names))
        means.insert(3, "split", means["field"].map(fields.split))
        parts.append(means)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
