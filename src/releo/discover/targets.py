"""Discovery targets: trajectories of one quantity per field, and their references.

The planted states (truth), the learned residuals mapped to them, the residuals in their own units,
and the decoded LAI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import xarray as xr

from releo.data.chunks import load_part
from releo.data.site import Site
from releo.discover.analysis import affine_match
from releo.discover.config import DiscoverConfig
from releo.discover.fields import Fields, field_means
from releo.discover.latents import ModelOutputs
from releo.discover.series import field_date_means, trajectories_from
from releo.discover.trajectories import Drivers, Trajectory
from releo.discover.truth import PlantedEquation, first_day, truth_trajectories


@dataclass
class Target:
    """Trajectories of one quantity, and what they are compared with."""

    name: str
    description: str
    state: str
    trajectories: list[Trajectory]
    drivers: Drivers
    planted: PlantedEquation | None = None
    counts: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    baseline: bool = False


def truth_targets(
    site: Site,
    truth: xr.Dataset,
    fields: Fields,
    planted: list[PlantedEquation],
    cfg: DiscoverConfig,
) -> list[Target]:
    """The planted states per field, sampled and noised like their sensor."""
    out = []
    for eq in planted:
        drivers = Drivers.from_table(site.meteo, eq.drivers, str(site.path("meteo")))
        trajectories, counts = truth_trajectories(site, truth, fields, eq, drivers, cfg)
        sensor = "clear S2 dates" if eq.modality.upper() == "S2" else "S1 dates"
        out.append(
            Target(
                f"truth_{eq.modality.lower()}",
                f"Simulator truth: the planted {eq.name} state `{eq.state}` ({eq.units}) per "
                f"field, at the {sensor}, with observation-like noise "
                f"({'on' if cfg.truth_noise else 'off'}).",
                eq.state,
                trajectories,
                drivers,
                eq,
                counts,
                baseline=True,
            )
        )
    return out


def _split_of(means: pd.DataFrame, fields: Fields) -> pd.Series:
    return means["field"].map(fields.split)


def model_targets(
    outputs: ModelOutputs, fields: Fields, drivers: Drivers, cfg: DiscoverConfig
) -> list[Target]:
    """The decoded residuals in their own units (any site) and the decoded LAI."""
    targets = []
    for modality, table in (("s2", outputs.s2), ("s1", outputs.s1)):
        means = field_date_means(
            table,
            [f"res_{modality}"],
            clear_only=modality == "s2",
            min_clear_fraction=cfg.min_clear_fraction,
        )
        trajectories, counts = trajectories_from(means, f"res_{modality}", fields, drivers, cfg)
        targets.append(
            Target(
                f"latent_raw_{modality}",
                f"Decoded {modality.upper()} exclusive residual (leading direction of the "
                "residual vectors), per field, in the model's own units; no truth used.",
                f"res_{modality}",
                trajectories,
                drivers,
                counts=counts,
            )
        )
    lai_means = field_date_means(outputs.s2, ["lai"], clear_only=False, min_clear_fraction=0.0)
    trajectories, counts = trajectories_from(lai_means, "lai", fields, drivers, cfg)
    targets.append(
        Target(
            "lai",
            "Decoded LAI (median) per field at the S2 dates (clear or not). The simulator's "
            "LAI follows phenology curves, not an ODE of the meteorology: there is no planted "
            "equation to recover.",
            "lai",
            trajectories,
            drivers,
            counts=counts,
        )
    )
    return targets


def matched_targets(
    outputs: ModelOutputs,
    fields: Fields,
    drivers: Drivers,
    cfg: DiscoverConfig,
    truth: xr.Dataset,
    planted: list[PlantedEquation],
) -> tuple[list[Target], dict]:
    """The decoded residuals mapped to each planted state, and the match statistics.

    Each residual is mapped by its best affine match to the planted imprint (fitted fields).
    """
    targets, matches = [], {}
    for eq in planted:
        modality = eq.modality.lower()
        table = outputs.s2 if modality == "s2" else outputs.s1
        column = f"res_{modality}"
        effect = truth[eq.pixel_variable]
        days = (table["date"].to_numpy().astype("datetime64[D]") - first_day(effect)).astype(int)
        inside = (days >= 0) & (days < effect.sizes["time"])
        table = table[inside]
        points = {  # pointwise: of a lazily opened truth, only the chunks holding them are read
            dim: xr.DataArray(np.asarray(at), dims="point")
            for dim, at in (("time", days[inside]), ("y", table["py"]), ("x", table["px"]))
        }
        table = table.assign(planted=load_part(effect.isel(points)).values)
        m = field_date_means(
            table,
            [column, "planted"],
            clear_only=modality == "s2",
            min_clear_fraction=cfg.min_clear_fraction,
        )
        fit = _split_of(m, fields).isin(cfg.fit_splits).to_numpy()
        match = affine_match(m.loc[fit, column], m.loc[fit, "planted"])
        match["heldout"] = affine_match(m.loc[~fit, column], m.loc[~fit, "planted"])
        matches[modality] = match
        susceptibility = truth[eq.susceptibility_variable].values.astype(float)
        mean_s, _ = field_means(susceptibility[None], fields.labels, max(fields.ids, default=0))
        susceptible = {
            f: float(mean_s[0, f]) for f in fields.ids if mean_s[0, f] >= cfg.min_susceptibility
        }
        notes = [
            f"affine match on fitted fields: {column} = {match['slope']:.4g} x planted + "
            f"{match['offset']:.4g} (R² {_num(match['r2'])}; held-out fields R² "
            f"{_num(match['heldout']['r2'])})"
        ]
        if not match["slope"] or not math.isfinite(match["slope"]):
            notes.append("no affine relation to the planted effect: nothing to map")
            trajectories: list[Trajectory] = []
            counts: dict = {"kept": 0}
        else:
            m = m.assign(mapped=(m[column] - match["offset"]) / match["slope"])
            trajectories, counts = trajectories_from(
                m, "mapped", fields, drivers, cfg, scale=susceptible
            )
        targets.append(
            Target(
                f"latent_{modality}",
                f"Decoded {modality.upper()} residual mapped to the planted {eq.name} state "
                f"`{eq.state}`: best affine match to the planted imprint (fitted fields), "
                "divided by each field's susceptibility, as for the truth target.",
                eq.state,
                trajectories,
                drivers,
                eq,
                counts,
                notes,
            )
        )
    return targets, matches


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"
