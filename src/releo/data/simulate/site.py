"""Orchestration: simulate a whole site, or extend it with a data drop, and write it out.

Layout written by :func:`simulate_site` (each cube and table written atomically)::

    site.json                   metadata: config, CRS, bounds, period, parcels, equations
    s2_l2a.zarr                 S2 L2A contract cube
    s1_grd.zarr                 S1 contract cube
    reference/snap_lai.zarr     SNAP LAI at every S2 date (NaN where mask != 0)
    truth/truth.zarr            the truth, for evaluation only
    meteo.csv                   daily rainfall_mm, temperature_c, temperature_excess_c
    field_surveys.csv           LAI surveys (contracts.SURVEY_COLUMNS)
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

import releo
from releo.data.contracts import LAND_COVER_CLASSES, S2_BANDS
from releo.data.io import open_cube, read_table, write_cube, write_json, write_table
from releo.data.meteo import METEO_COLUMNS
from releo.data.reference import SNAP_VERSION, snap_reference
from releo.data.simulate.clouds import CLOUD_SPECTRAL_SHAPE, SHADOW_TRANSMISSION
from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.effects import OPTICAL_BAND_AMPLITUDE, PLANTED_EQUATIONS
from releo.data.simulate.geometry import S1_PASSES, S2_ORBIT, s1_acquisitions, s2_acquisitions
from releo.data.simulate.meteo import daily_dates
from releo.data.simulate.s1 import OPEN_WATER_DB, simulate_s1
from releo.data.simulate.s2 import simulate_s2
from releo.data.simulate.scene import Scene
from releo.data.simulate.surveys import SURVEY_METHODS, simulate_surveys
from releo.data.simulate.truth import truth_dataset
from releo.data.site import SITE_FILES
from releo.data.spill import Scratch, scratch_folder


@dataclass(frozen=True)
class PeriodProducts:
    """Everything simulated for one period (the initial site or one data drop)."""

    s2: xr.Dataset
    s1: xr.Dataset
    reference: xr.Dataset
    truth: xr.Dataset
    meteo: pd.DataFrame
    surveys: pd.DataFrame
    s2_table: pd.DataFrame
    s1_table: pd.DataFrame


def simulate_period(
    scene: Scene, first: date, last: date, progress: bool = True, scratch: Scratch | None = None
) -> PeriodProducts:
    """Observations, reference product, truth and tables of the days [first, last].

    The cubes' (time, y, x) arrays are made date by date into ``scratch`` (memory by default;
    a scratch folder gives dask-backed cubes, read back as they are written out).
    """
    config = scene.config
    _, latitude = scene.grid.centre_lonlat
    s2_plan = s2_acquisitions(config.start_date, config.s2_revisit_days, first, last, latitude)
    s1_plan = s1_acquisitions(config.start_date, config.s1_revisit_days, first, last, latitude)
    s2, s2_table = simulate_s2(scene, s2_plan, progress, scratch)
    s1 = simulate_s1(scene, s1_plan, progress, scratch)
    reference = snap_reference(s2, scratch=scratch)
    days = daily_dates(np.datetime64(first), np.datetime64(last))
    s2_dates = s2_plan["date"].to_numpy().astype("datetime64[D]")
    truth = truth_dataset(scene, days, s2_dates, scratch)
    meteo = scene.meteo.iloc[scene.day_index(days)].reset_index(drop=True)
    meteo = meteo.assign(date=meteo["date"].dt.strftime("%Y-%m-%d"))[list(METEO_COLUMNS)]
    surveys = simulate_surveys(scene, first, last)
    return PeriodProducts(s2, s1, reference, truth, meteo, surveys, s2_table, s1_plan)


def simulate_site(
    config: SimulationConfig, out_dir: str | os.PathLike[str], progress: bool = True
) -> dict:
    """Simulate the site of ``config`` over its period and write it under ``out_dir``.

    Returns its metadata (also written to ``site.json``). Deterministic for the config. The
    cubes are made date by date in a scratch folder beside ``out_dir`` and written shard by
    shard: memory stays bounded whatever the site's size.
    """
    out = Path(out_dir)
    scene = Scene.build(config, config.end_date)
    with scratch_folder(out) as scratch:
        products = simulate_period(scene, config.start_date, config.end_date, progress, scratch)
        for name in ("s2", "s1", "reference", "truth"):
            write_cube(getattr(products, name), out / SITE_FILES[name])
    write_table(products.meteo, out / SITE_FILES["meteo"])
    write_table(products.surveys, out / SITE_FILES["surveys"])
    metadata = site_metadata(scene, config.end_date, drops=[])
    metadata["s2_acquisitions"] = _records(products.s2_table)
    metadata["s1_acquisitions"] = _records(products.s1_table)
    write_json(metadata, out / SITE_FILES["metadata"])
    return metadata


def simulate_drop(data_dir: str | os.PathLike[str], drop: int, progress: bool = True) -> dict:
    """Extend the site in ``data_dir`` with data drop ``drop`` (1, 2, ...).

    The drop covers the next ``config.drop_days`` days after the current end and continues the
    meteorology, phenology and effects seamlessly. Existing dates are left unchanged; each cube is
    rewritten atomically and ``site.json`` last. Re-applying an applied drop is a no-op; drops must
    come in order.
    """
    root = Path(data_dir)
    metadata = json.loads((root / SITE_FILES["metadata"]).read_text(encoding="utf-8"))
    config = SimulationConfig.model_validate(metadata["config"])
    applied = [d["drop"] for d in metadata["drops"]]
    if drop in applied:
        return metadata
    if drop != len(applied) + 1:
        raise ValueError(
            f"{root}: drop {drop} cannot follow drops {applied}; next is {len(applied) + 1}"
        )
    first, last = config.drop_period(drop)
    previous_end = np.datetime64(metadata["period"]["end"])
    scene = Scene.build(config, last)
    with scratch_folder(root) as scratch:
        products = simulate_period(scene, first, last, progress, scratch)
        for name in ("s2", "s1", "reference"):
            _extend(root, name, getattr(products, name), previous_end)
        _extend(root, "truth", products.truth, previous_end, ("time", "time_s2"))

    for name, table in (("meteo", products.meteo), ("surveys", products.surveys)):
        old_table = read_table(root / SITE_FILES[name], parse_dates=())
        old_table = old_table[pd.to_datetime(old_table["date"]) <= pd.Timestamp(previous_end)]
        if not table.empty:  # a winter drop has no survey campaign
            old_table = pd.concat([old_table, table], ignore_index=True)
        write_table(old_table, root / SITE_FILES[name])

    metadata["period"]["end"] = last.isoformat()
    metadata["drops"].append({"drop": drop, "start": first.isoformat(), "end": last.isoformat()})
    metadata["s2_acquisitions"] = _keep_until(metadata["s2_acquisitions"], previous_end)
    metadata["s2_acquisitions"] += _records(products.s2_table)
    metadata["s1_acquisitions"] = _keep_until(metadata["s1_acquisitions"], previous_end)
    metadata["s1_acquisitions"] += _records(products.s1_table)
    write_json(metadata, root / SITE_FILES["metadata"])
    return metadata


def _extend(
    root: Path, name: str, new: xr.Dataset, end: np.datetime64, dims: tuple[str, ...] = ("time",)
) -> None:
    """Rewrite the cube ``name`` of the site in ``root``: its dates up to ``end``, then ``new``."""
    old = open_cube(root / SITE_FILES[name], lazy=True)
    # Dates beyond the recorded end come from an interrupted drop: they are redone.
    for dim in dims:
        old = old.isel({dim: old[dim].values <= end})
    write_cube(_concat(old, new, dims), root / SITE_FILES[name])


def _concat(old: xr.Dataset, new: xr.Dataset, dims: tuple[str, ...]) -> xr.Dataset:
    """Append ``new`` after ``old`` along each of ``dims``; variables without them are kept."""
    parts = []
    for dim in dims:
        names = [v for v in new.data_vars if dim in new[v].dims]
        parts.append(
            xr.concat(
                [old[names], new[names]],
                dim=dim,
                data_vars="all",
                coords="minimal",
                compat="override",
                join="override",
            )
        )
    static = [v for v in new.data_vars if not set(dims) & set(new[v].dims)]
    parts.append(old[static])
    merged = xr.merge(parts, compat="override", join="outer", combine_attrs="override")
    merged.attrs = dict(new.attrs)
    return merged.rio.write_crs(new.rio.crs)


def site_metadata(scene: Scene, end: date, drops: list[dict]) -> dict:
    """site.json content (without the acquisition lists)."""
    config, grid, parcels = scene.config, scene.grid, scene.parcels
    lon, lat = grid.centre_lonlat
    areas = parcels.pixel_counts() * grid.pixel_size_m**2 / 1e4
    zones_per_parcel = np.bincount(parcels.zone_parcel, minlength=parcels.n_parcels)
    rows, cols = np.indices(parcels.parcel_id.shape)
    index = parcels.parcel_id.ravel() - 1
    counts = np.maximum(parcels.pixel_counts(), 1)
    centre_x = np.bincount(index, weights=grid.x[cols.ravel()], minlength=parcels.n_parcels)
    centre_y = np.bincount(index, weights=grid.y[rows.ravel()], minlength=parcels.n_parcels)
    traits = scene.traits.as_records()
    parcel_records = [
        {
            "parcel_id": p + 1,
            "land_cover": LAND_COVER_CLASSES[int(parcels.classes[p])],
            "area_ha": round(float(areas[p]), 3),
            "zones": int(zones_per_parcel[p]),
            "centroid_x": round(float(centre_x[p] / counts[p]), 1),
            "centroid_y": round(float(centre_y[p] / counts[p]), 1),
            **traits[p],
        }
        for p in range(parcels.n_parcels)
    ]
    class_summary = {
        name: {
            "parcels": int((parcels.classes == c).sum()),
            "area_ha": round(float(areas[parcels.classes == c].sum()), 2),
        }
        for c, name in enumerate(LAND_COVER_CLASSES)
    }
    equations = []
    for equation in PLANTED_EQUATIONS:
        record = equation.as_dict()
        record["susceptibility_variable"] = f"{equation.pixel_variable}_susceptibility"
        if equation.modality == "S2":
            record["band_amplitude"] = OPTICAL_BAND_AMPLITUDE
            record["imprint"] = (
                "S2 reflectance[band] += optical_effect * band_amplitude[band], "
                "optical_effect = susceptibility * b (truth variable optical_effect)"
            )
        else:
            record["imprint"] = (
                "S1 sigma0_dB (VV and VH) += sar_effect_db = susceptibility * r "
                "(truth variable sar_effect_db)"
            )
        equations.append(record)
    return {
        "title": "releo simulated site",
        "generator": f"releo.data.simulate (releo {releo.__version__})",
        "config": config.model_dump(mode="json"),
        "crs": config.crs,
        "pixel_size_m": config.pixel_size_m,
        "shape": {"y": grid.shape[0], "x": grid.shape[1]},
        "bounds": dict(zip(("xmin", "ymin", "xmax", "ymax"), grid.bounds, strict=True)),
        "centre_lonlat": {"lon": round(lon, 6), "lat": round(lat, 6)},
        "period": {"start": config.start_date.isoformat(), "end": end.isoformat()},
        "drops": drops,
        "files": SITE_FILES,
        "land_cover_classes": list(LAND_COVER_CLASSES),
        "class_summary": class_summary,
        "parcels": parcel_records,
        "planted_equations": equations,
        "soil_moisture_model": {
            "equation": "dtheta/dt = -(1 + et_sensitivity*Tplus)*(theta - theta_r)/tau_days "
            "+ P/depth_mm, theta_r <= theta <= theta_s (saturation excess runs off)",
            "drivers": {"P": "rainfall_mm", "Tplus": "temperature_excess_c"},
            "parameters": "per parcel, see parcels[*].theta_r/theta_s/tau_days/depth_mm/"
            "et_sensitivity; open water is reported at theta_s",
            "psoil": "(theta_s - theta)/(theta_s - theta_r), clipped to [0, 1]; 0 for water",
        },
        "observation_models": {
            "s2": {
                "radiative_transfer": "releo.physics.prosail_s2_bands per management zone "
                "and date, at the date's sun/view geometry and platform SRFs",
                "noise": {
                    "kind": "gaussian",
                    "sigma": "absolute + relative * reflectance",
                    "absolute": config.s2_noise_absolute,
                    "relative": config.s2_noise_relative,
                },
                "clip": [0.0, 1.0],
                "clouds": "mask 1: bright flat reflectance (not NaN); cover fraction mixture "
                f"with mean cloudiness {config.cloudiness}, correlated with rain",
                "cloud_spectral_shape": dict(
                    zip(S2_BANDS, CLOUD_SPECTRAL_SHAPE.tolist(), strict=True)
                ),
                "shadow_transmission": dict(
                    zip(S2_BANDS, SHADOW_TRANSMISSION.tolist(), strict=True)
                ),
                "orbit": {
                    "relative_orbit": S2_ORBIT.relative_orbit,
                    "across_track_km": S2_ORBIT.across_track_km,
                    "local_solar_time_h": S2_ORBIT.local_solar_time_h,
                },
            },
            "s1": {
                "backscatter": "releo.physics.wcm_backscatter_db (default parameters) with true "
                "LAI and soil moisture; open water: sigma0_dB = level + slope*(incidence - 35)",
                "open_water_db": {
                    k: {"level": v[0], "slope_per_degree": v[1]} for k, v in OPEN_WATER_DB.items()
                },
                "speckle": {"kind": "gamma, unit mean, linear power", "enl": config.s1_enl},
                "passes": [
                    {
                        "direction": p.direction,
                        "platform": p.platform,
                        "relative_orbit": p.relative_orbit,
                        "centre_incidence_deg": p.centre_incidence_deg,
                    }
                    for p in S1_PASSES
                ],
            },
            "reference": {"product": "SNAP biophysical processor LAI", "version": SNAP_VERSION},
            "surveys": {
                m.name: {
                    "bias_factor": m.bias_factor,
                    "relative_error": m.relative_error,
                    "absolute_error": m.absolute_error,
                }
                for m in SURVEY_METHODS
            },
        },
    }


def _records(table: pd.DataFrame) -> list[dict]:
    out = []
    for row in table.to_dict(orient="records"):
        record = {}
        for key, value in row.items():
            if isinstance(value, pd.Timestamp):
                record[key] = value.strftime("%Y-%m-%d")
            elif isinstance(value, float | np.floating):
                record[key] = round(float(value), 4)
            elif isinstance(value, np.integer):
                record[key] = int(value)
            else:
                record[key] = value
        out.append(record)
    return out


def _keep_until(records: list[dict], end: np.datetime64) -> list[dict]:
    return [r for r in records if np.datetime64(r["date"]) <= end]
