"""DVC stage ``discover``: gate the site and chunk index, then residual analysis and SINDy.

Equations of the residuals, the decoded LAI and (simulated sites) the planted effects
(:mod:`releo.discover.equations`). Writes ``discover/`` (``equations.md``,
``plots/<target>.png`` and ``.csv``, the extracted ``residual_series.parquet`` and
``chunk_latents.parquet``), ``metrics/discover.json``, and an MLflow run (experiment
``releo-discover``).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from releo import tracking
from releo.config import Params, load_params
from releo.data.chunks import INDEX
from releo.data.errors import DataError
from releo.data.io import json_safe, open_cube, write_table
from releo.data.site import open_site
from releo.discover.config import DiscoverConfig
from releo.discover.equations import (
    PLOT_COLUMNS,
    PLOTTED,
    fit_target,
    headline,
    load_model,
    missing_drivers,
    write_outputs,
)
from releo.discover.fields import make_fields
from releo.discover.latents import extract
from releo.discover.report import write_equations
from releo.discover.residuals import (
    add_residual_scalars,
    chunk_latent_match,
    disentanglement,
    field_series_table,
)
from releo.discover.targets import matched_targets, model_targets, truth_targets
from releo.discover.trajectories import Drivers
from releo.discover.truth import planted_equations
from releo.stage import stage
from releo.stages.train import MODEL
from releo.timings import record, timed, write_metrics
from releo.train.inputs import gate_training_inputs

OUT_DIR = Path("discover")
METRICS = Path("metrics/discover.json")


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
    site = open_site(root / params.data_dir, lazy=True)  # every part is read by blocks
    index_path = root / INDEX
    if not index_path.exists():
        raise DataError(f"{index_path}: not found; run the chunk stage first")
    reason = missing_drivers(site.meteo, cfg, site.path("meteo"))
    if reason is not None:
        return _skip(params, root, reason, site.has_truth, log_mlflow, started)
    index = pd.read_parquet(index_path)
    truth = open_cube(site.path("truth"), lazy=True) if site.has_truth else None
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
        site.s2,
        site.s1,
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
    written = write_outputs(root / OUT_DIR, targets, results, entries, cfg, header)
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


def main() -> None:
    """Run the stage in the project of the working directory."""
    with stage("discover"), timed("discover") as clock:
        params = load_params()
        with clock.part("gates"):
            gate_training_inputs(params, INDEX)
        metrics = run_discover(params, Path.cwd())
        if metrics["skipped"]:
            return  # run_discover said why; metrics/discover.json says it too
        print(
            f"truth: structure F1 {_num(metrics['truth_structure_f1'])}, max coefficient error "
            f"{_num(metrics['truth_max_coef_rel_error'])}; learned residuals: structure F1 "
            f"{_num(metrics['latent_structure_f1'])}, held-out simulation R² "
            f"{_num(metrics['latent_sim_r2'])}; LAI simulation R² {_num(metrics['lai_sim_r2'])}"
        )
        for note in metrics["notes"]:
            print(f"note: {note}")
