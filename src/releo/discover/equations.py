"""The equations of the ``discover`` stage's targets: fitted, summarised and written out.

Targets (each a set of field trajectories fitted together, some fields held out):

- ``truth_s2`` / ``truth_s1`` (simulated sites): the planted exclusive-effect states, sampled
  and noised as the sensors see them — the check that discovery recovers the planted ODEs;
- ``latent_s2`` / ``latent_s1`` (simulated sites): the model's decoded residuals, mapped to
  the planted state by their best affine match, so the discovered equation can be compared;
- ``latent_raw_s2`` / ``latent_raw_s1``: the same residuals in their own units (any site);
- ``lai``: the decoded LAI (no planted equation: its discovered law and skill).

The stage (:mod:`releo.stages.discover`) writes them to ``discover/`` (``equations.md``,
``plots/<target>.png`` and ``.csv``) with :func:`write_outputs`.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from releo.data.io import write_table
from releo.discover.compare import structure_scores
from releo.discover.config import DiscoverConfig
from releo.discover.report import (
    equation_section,
    plot_trajectories,
    simulated_table,
    write_equations,
)
from releo.discover.sindy import Discovery, derivative_baseline, discover, format_rhs
from releo.discover.targets import Target
from releo.discover.trajectories import is_constant
from releo.models import PhysicsAutoencoder
from releo.models.checkpoint import load_autoencoder

PLOTTED = ("truth_s2", "truth_s1", "latent_s2", "latent_s1", "lai")
"""Targets with a ``dvc plots`` table (written, possibly empty, on every run)."""
PLOT_COLUMNS = ["trajectory", "day", "date", "observed", "simulated"]


def load_model(path: Path) -> PhysicsAutoencoder:
    """The trained model of ``models/model.pt`` in evaluation mode."""
    return load_autoencoder(path)[0]


def fit_target(target: Target, cfg: DiscoverConfig) -> tuple[Discovery | None, dict]:
    """Discover the equation of ``target``; small-but-valid data gives a note, not an error."""
    entry: dict = {
        "description": target.description,
        "state": target.state,
        "counts": target.counts,
        "notes": list(target.notes),
    }
    usable = [t for t in target.trajectories if not is_constant(t.values)]
    if len(usable) < len(target.trajectories):
        entry["notes"].append(
            f"{len(target.trajectories) - len(usable)} constant trajectories left out"
        )
    fitted = [t for t in usable if t.group == "train"]
    if len(fitted) < cfg.min_trajectories:
        entry["note"] = (
            f"{len(fitted)} fitted trajectories with >= {cfg.min_dates} dates "
            f"(min_trajectories {cfg.min_trajectories}); counts {target.counts}"
        )
        entry["notes"].append(entry["note"])
        return None, entry
    if len(fitted) == len(usable):
        entry["notes"].append("no held-out trajectory: only the in-sample skill is reported")
    result = discover(usable, target.drivers, target.state, cfg, target.name)
    if len(result.selected) > len(result.terms) // 2:
        entry["notes"].append(
            f"dense equation ({len(result.selected)} of {len(result.terms)} terms): the data "
            "do not single out a sparse law (too short, too noisy, or not an ODE of the drivers)"
        )
    if result.pruned:
        dropped = ", ".join(step["dropped"] for step in result.pruned)
        entry["notes"].append(f"removed by the BIC on the simulation error: {dropped}")
    entry.update(
        equation=result.equation(),
        pruned_by_bic=result.pruned,
        terms=[asdict(t) for t in result.terms],
        skill=result.skill,
        bridge_iterations_converged=result.converged,
        iterations=result.iterations,
    )
    if target.planted is not None:
        entry["planted_equation"] = target.planted.text
        entry["planted_terms"] = target.planted.terms
        entry["comparison"] = structure_scores(result.selected, target.planted.terms)
        if target.baseline:
            base = derivative_baseline(usable, target.drivers, target.state, cfg)
            entry["baseline"] = {
                "equation": f"d{target.state}/dt = {format_rhs(base)}",
                **structure_scores(base, target.planted.terms),
            }
    return result, entry


def _worst(entries: list[dict], path: tuple[str, ...], pick) -> float | None:
    values: list[float] = []
    for entry in entries:
        value: Any = entry
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        if isinstance(value, int | float) and math.isfinite(value):
            values.append(float(value))
    return pick(values) if values else None


def headline(entries: dict[str, dict], analysis: dict) -> dict:
    """The figures of ``metrics/discover.json`` (worst case over modalities)."""
    truth = [v for k, v in entries.items() if k.startswith("truth_")]
    latent = [entries[k] for k in ("latent_s2", "latent_s1") if k in entries]
    raw = [entries[k] for k in ("latent_raw_s2", "latent_raw_s1") if k in entries]
    out = {
        "truth_structure_f1": _worst(truth, ("comparison", "structure_f1"), min),
        "truth_max_coef_rel_error": _worst(truth, ("comparison", "max_coef_rel_error"), max),
        "truth_sim_r2_heldout": _worst(truth, ("skill", "sim_r2_within_heldout"), min),
        "truth_baseline_structure_f1": _worst(truth, ("baseline", "structure_f1"), min),
        "latent_structure_f1": _worst(latent, ("comparison", "structure_f1"), min),
        "latent_max_coef_rel_error": _worst(latent, ("comparison", "max_coef_rel_error"), max),
        "latent_sim_r2": _worst(latent or raw, ("skill", "sim_r2_within_heldout"), min),
        "latent_sim_r2_pooled": _worst(latent or raw, ("skill", "sim_r2_heldout"), min),
        "latent_raw_sim_r2": _worst(raw, ("skill", "sim_r2_within_heldout"), min),
        "lai_sim_r2": _worst([entries.get("lai", {})], ("skill", "sim_r2_within_heldout"), min),
        "lai_sim_r2_pooled": _worst([entries.get("lai", {})], ("skill", "sim_r2_heldout"), min),
    }
    for modality in ("s2", "s1"):
        variance = analysis.get("explained_variance", {}).get(modality, {})
        out[f"{modality}_residual_variance_share"] = variance.get(
            "explained_variance_share_of_residual"
        )
        dis = analysis.get("disentanglement", {}).get(modality, {})
        out[f"{modality}_residual_max_abs_pearson"] = dis.get("pixel_max_abs_pearson")
        out[f"{modality}_residual_max_hsic"] = dis.get("pixel_max_hsic")
        match = analysis.get("planted_field_match", {}).get(modality, {})
        out[f"{modality}_residual_planted_r2_heldout"] = (match.get("heldout") or {}).get("r2")
        chunk = analysis.get("planted_chunk_match", {}).get(modality, {})
        out[f"{modality}_latent_planted_r2_heldout"] = chunk.get("r2_heldout")
    return out


def write_outputs(
    out_dir: Path,
    targets: list[Target],
    results: dict[str, Discovery | None],
    entries: dict[str, dict],
    cfg: DiscoverConfig,
    header: str,
) -> list[Path]:
    """equations.md, a PNG per fitted target, a dvc-plots CSV per plotted target, in ``out_dir``."""
    plots = out_dir / "plots"
    written = []
    sections = []
    for target in targets:
        result = results.get(target.name)
        sections.append(equation_section(target.name, entries[target.name], result))
        csv = plots / f"{target.name}.csv"
        table = pd.DataFrame(columns=PLOT_COLUMNS)
        if result is not None:
            trajectories = [t for t in target.trajectories if not is_constant(t.values)]
            shown = [t for t in trajectories if t.group != "train"] or trajectories
            shown = shown[: cfg.plot_trajectories]
            png = plots / f"{target.name}.png"
            title = f"{target.name}: {result.equation(3)}"
            plot_trajectories(png, title, result, shown, target.drivers, cfg.substeps)
            written.append(png)
            table = simulated_table(result, shown[:1], target.drivers, cfg.substeps)
        if result is not None or target.name in PLOTTED:
            write_table(table, csv)
            written.append(csv)
    for name in PLOTTED:  # the dvc plots tables exist even when their target does not
        csv = plots / f"{name}.csv"
        if csv not in written:
            write_table(pd.DataFrame(columns=PLOT_COLUMNS), csv)
            written.append(csv)
    equations = out_dir / "equations.md"
    write_equations(equations, header, sections)
    written.append(equations)
    for stale in plots.glob("*"):
        if stale.is_file() and stale not in written:
            stale.unlink()
    return written


def missing_drivers(meteo: pd.DataFrame | None, cfg: DiscoverConfig, path: Path) -> str | None:
    """Why discovery cannot run on this site's drivers (None: it can).

    No ``meteo.csv``, or none of the columns that ``discover.drivers`` names.
    """
    if meteo is None:
        return f"{path}: absent; discovery needs the daily drivers {dict(cfg.drivers)}"
    missing = [c for c in ("date", *cfg.drivers.values()) if c not in meteo.columns]
    if missing:
        return (
            f"{path}: no column(s) {missing} (discover.drivers {dict(cfg.drivers)}); found "
            f"{list(meteo.columns)}"
        )
    return None
