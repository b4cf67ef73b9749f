"""The ``discover`` stage as a library call: residual analysis and equation discovery.

Targets (each a set of field trajectories fitted together, some fields held out):

- ``truth_s2`` / ``truth_s1`` (simulated sites): the planted exclusive-effect states, sampled
  and noised as the sensors see them — the check that discovery recovers the planted ODEs;
- ``latent_s2`` / ``latent_s1`` (simulated sites): the model's decoded residuals, mapped to
  the planted state by their best affine match, so the discovered equation can be compared;
- ``latent_raw_s2`` / ``latent_raw_s1``: the same residuals in their own units (any site);
- ``lai``: the decoded LAI (no planted equation: its discovered law and skill).

Writes ``discover/`` (``equations.md``, ``plots/<target>.png`` and ``.csv``, the extracted
``residual_series.parquet`` and ``chunk_latents.parquet``),
``metrics/discover.json``, and an MLflow run (experiment ``releo-discover``).
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from releo import tracking
from releo.config import Params
from releo.data.chunks import INDEX
from releo.data.errors import DataError
from releo.data.io import json_safe, open_cube, write_table
from releo.data.site import open_site
from releo.discover.compare import structure_scores
from releo.discover.config import DiscoverConfig
from releo.discover.fields import make_fields
from releo.discover.latents import extract
from releo.discover.report import (
    equation_section,
    plot_trajectories,
    simulated_table,
    write_equations,
)
from releo.discover.residuals import (
    add_residual_scalars,
    chunk_latent_match,
    disentanglement,
    field_series_table,
)
from releo.discover.sindy import Discovery, derivative_baseline, discover, format_rhs
from releo.discover.targets import Target, matched_targets, model_targets, truth_targets
from releo.discover.trajectories import Drivers, is_constant
from releo.discover.truth import planted_equations
from releo.models import PhysicsAutoencoder
from releo.models.checkpoint import load_autoencoder
from releo.timings import record, write_metrics

MODEL = Path("models/model.pt")
OUT_DIR = Path("discover")
METRICS = Path("metrics/discover.json")
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
    root: Path,
    targets: list[Target],
    results: dict[str, Discovery | None],
    entries: dict[str, dict],
    cfg: DiscoverConfig,
    header: str,
) -> list[Path]:
    """equations.md, a PNG per fitted target, a dvc-plots CSV per plotted target."""
    out_dir = root / OUT_DIR
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


def _num(value) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _header(metrics: dict, cfg: DiscoverConfig) -> str:
    lib = cfg.library
    return "\n".join(
        [
            "# Discovered equations",
            "",
            "Sparse identification (pysindy 2.x: PolynomialLibrary, STLSQ, bagging "
            "EnsembleOptimizer) on field trajectories observed at the S2/S1 dates, in integral "
            "form between observations with the daily drivers, refined on the simulation "
            f"error. Library: monomials of (state, {', '.join(cfg.drivers)}) up to degree "
            f"{lib.degree}; threshold {cfg.threshold} (share of the rate); terms kept when "
            f"their inclusion probability is >= {cfg.min_inclusion} ({cfg.n_models} bagged "
            "models) and the BIC of the free runs does not drop without them. Coefficients: "
            "per day; ± is the Gauss-Newton standard error, which "
            "ignores the correlation between fields that share one weather series, so it "
            "understates the uncertainty.",
            "",
            f"- truth structure F1 {_num(metrics.get('truth_structure_f1'))}, largest "
            f"coefficient error {_num(metrics.get('truth_max_coef_rel_error'))}",
            f"- learned residuals: structure F1 {_num(metrics.get('latent_structure_f1'))}, "
            f"held-out simulation R² {_num(metrics.get('latent_sim_r2'))}",
            f"- decoded LAI: held-out simulation R² {_num(metrics.get('lai_sim_r2'))}",
            "",
        ]
    )


def run_discover(params: Params, root: Path = Path(), log_mlflow: bool = True) -> dict:
    """Run the whole stage; returns the metrics written to ``metrics/discover.json``."""
    started = time.perf_counter()
    cfg: DiscoverConfig = params.discover
    root = Path(root).resolve()
    site = open_site(root / params.data_dir)
    index_path = root / INDEX
    if not index_path.exists():
        raise DataError(f"{index_path}: not found; run the chunk stage first")
    reason = missing_drivers(site.meteo, cfg, site.path("meteo"))
    if reason is not None:
        return _skip(params, root, reason, site.has_truth, log_mlflow, started)
    index = pd.read_parquet(index_path)
    truth = open_cube(site.path("truth")) if site.has_truth else None
    planted = (
        planted_equations(site.metadata, str(site.path("metadata"))) if truth is not None else []
    )
    shape = (site.s2.sizes["y"], site.s2.sizes["x"])
    parcels = truth["parcel_id"].values if truth is not None and "parcel_id" in truth else None
    pixel = abs(float(np.diff(site.s2.x[:2])[0]))  # the grid's, not site.json's (real sites)
    fields = make_fields(parcels, index, shape, max(1, round(cfg.block_m / pixel)))
    drivers = Drivers.from_table(site.meteo, dict(cfg.drivers), str(site.path("meteo")))

    targets = truth_targets(site, truth, fields, planted, cfg) if truth is not None else []
    model = load_model(root / MODEL)
    torch.manual_seed(cfg.seed)
    outputs = extract(
        model,
        site.s2.load(),
        site.s1.load(),
        index,
        fields,
        decode_pixels=cfg.decode_pixels,
        variance_pixels=cfg.variance_pixels,
        heldout_splits=tuple(s for s in ("train", "val", "test") if s not in cfg.fit_splits),
        seed=cfg.seed,
    )
    analysis = {
        "residuals": add_residual_scalars(outputs, cfg),
        "explained_variance": outputs.variance,
        "disentanglement": disentanglement(outputs, cfg),
        "fields": {"kind": fields.kind, "count": len(fields.ids)},
    }
    if truth is not None:
        matched, analysis["planted_field_match"] = matched_targets(
            outputs, fields, drivers, cfg, truth, planted
        )
        targets += matched
        analysis["planted_chunk_match"] = chunk_latent_match(outputs, truth, planted, cfg)
    targets += model_targets(outputs, fields, drivers, cfg)

    results, entries = {}, {}
    for target in targets:
        results[target.name], entries[target.name] = fit_target(target, cfg)
    metrics = headline(entries, analysis)
    notes = [f"{k}: {n}" for k, e in entries.items() for n in e.get("notes", [])]
    if truth is None:
        notes.append("no simulator truth: planted-equation checks skipped")
    header = _header(metrics, cfg)
    written = write_outputs(root, targets, results, entries, cfg, header)
    for name, table in (
        ("residual_series.parquet", field_series_table(outputs, fields, drivers)),
        ("chunk_latents.parquet", outputs.chunks),
    ):
        written.append(write_table(table, root / OUT_DIR / name))
    metrics.update(
        skipped=None,
        site_has_truth=truth is not None,
        targets=entries,
        residual_analysis=analysis,
        notes=notes,
    )
    metrics = json_safe(metrics)
    if log_mlflow:
        metrics["mlflow_run_id"] = _log_run(params, root, metrics, written, started)
    write_metrics(metrics, root / METRICS)
    return metrics


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


def _skip(
    params: Params, root: Path, reason: str, has_truth: bool, log_mlflow: bool, started: float
) -> dict:
    """Record a skipped discovery.

    The outputs say why (equations.md, empty plot tables); the metrics carry the reason in
    ``skipped`` and ``notes``, and null figures.
    """
    out_dir = root / OUT_DIR
    shutil.rmtree(out_dir, ignore_errors=True)  # the last run's equations are not this site's
    metrics: dict[str, Any] = {k: None for k in headline({}, {})}
    written = [write_table(pd.DataFrame(columns=PLOT_COLUMNS), out_dir / "plots" / f"{n}.csv")
               for n in PLOTTED]  # fmt: skip
    equations = out_dir / "equations.md"
    write_equations(equations, "# Discovered equations\n", [f"Skipped: {reason}\n"])
    written.append(equations)
    metrics.update(
        skipped=reason,
        site_has_truth=has_truth,
        targets={},
        residual_analysis={},
        notes=[f"discovery skipped: {reason}"],
    )
    print(f"discover skipped: {reason}")
    if log_mlflow:
        metrics["mlflow_run_id"] = _log_run(params, root, metrics, written, started)
    write_metrics(metrics, root / METRICS)
    return metrics


def _log_run(params: Params, root: Path, metrics: dict, written: list[Path], started: float) -> str:
    """An MLflow run with the discover params, the headline metrics and the outputs.

    The stage's timings are logged too, through :func:`releo.timings.record`.
    """
    import mlflow

    with tracking.stage_run(params, root, "discover") as run:
        flat = params.discover.model_dump(mode="json")
        library = flat.pop("library")
        mlflow.log_params(
            {
                **tracking.section_params("discover", flat),
                **tracking.section_params("discover.library", library),
            }
        )
        tracking.log_finite_metrics(metrics)
        for path in written:
            folder = path.parent.relative_to(root).as_posix()
            mlflow.log_artifact(str(path), artifact_path=folder)
        mlflow.log_dict(metrics, "discover.json")
        record(discover_seconds=round(time.perf_counter() - started, 1))
        return run.run_id
