"""The simulator's planted equations and their true trajectories, observed like the sensors.

Each exclusive effect is one site-wide state x(t) imprinted per parcel as
``susceptibility × x`` (S2: times a fixed brown spectrum added to reflectance; S1: dB added to
VV and VH). A field's trajectory is therefore the truth imprint divided by the susceptibility,
averaged over the field's pixels that the sensor saw — at the S2 dates where the field is
clear enough, at every S1 date — plus the noise such a field average would carry: the L2A
noise projected on the effect's spectrum for S2, the speckle (in dB, both polarisations) for
S1, each divided by the square root of the pixels averaged.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.special import polygamma

from releo.data.chunks import load_part
from releo.data.contracts import MASK_CLEAR, S2_BANDS, S2_MASK
from releo.data.errors import DataError
from releo.data.site import Site
from releo.data.spill import date_blocks
from releo.discover.config import DiscoverConfig
from releo.discover.fields import Fields, field_means
from releo.discover.library import term_label
from releo.discover.trajectories import Drivers, Trajectory


@dataclass(frozen=True)
class PlantedEquation:
    """A planted ODE as recorded in ``site.json`` (``planted_equations``)."""

    name: str
    modality: str  # "S2" or "S1"
    state: str
    units: str
    terms: dict[str, float]  # term label → coefficient
    drivers: dict[str, str]  # symbol → meteo column
    state_variable: str
    pixel_variable: str
    susceptibility_variable: str
    band_amplitude: dict[str, float] | None
    text: str


def planted_equations(metadata: dict, source: str) -> list[PlantedEquation]:
    """The planted equations of a simulated site (empty for a real site)."""
    out = []
    for i, record in enumerate(metadata.get("planted_equations") or []):
        try:
            out.append(
                PlantedEquation(
                    name=record["name"],
                    modality=record["modality"],
                    state=record["state"],
                    units=record.get("units", ""),
                    terms={
                        term_label(t["factors"]): float(t["coefficient"]) for t in record["terms"]
                    },
                    drivers=dict(record["drivers"]),
                    state_variable=record["state_variable"],
                    pixel_variable=record["pixel_variable"],
                    susceptibility_variable=record.get(
                        "susceptibility_variable", f"{record['pixel_variable']}_susceptibility"
                    ),
                    band_amplitude=record.get("band_amplitude"),
                    text=record.get("equation", ""),
                )
            )
        except (KeyError, TypeError) as err:
            raise DataError(f"{source}: planted_equations[{i}] lacks {err}") from err
    return out


def speckle_db_sd(enl: float) -> float:
    """Standard deviation (dB) of 10·log10 of unit-mean gamma speckle with ``enl`` looks."""
    return float(10 / np.log(10) * np.sqrt(polygamma(1, enl)))


def first_day(cube: xr.DataArray) -> np.datetime64:
    """The first day of a daily truth variable."""
    return cube.time.values[0].astype("datetime64[D]")


def _at_days(cube: xr.DataArray, times: np.ndarray) -> np.ndarray:
    days = np.asarray(times).astype("datetime64[D]").astype("datetime64[ns]")
    return load_part(cube.sel(time=days)).values


def _s2_noise(
    site: Site, fields: Fields, clear: np.ndarray, eq: PlantedEquation, dates: slice
) -> np.ndarray:
    """Per-pixel noise sd of the effect estimated from the 10 L2A bands, per date and field.

    At the S2 ``dates`` (``clear``: their clear pixels). σ = 1 / sqrt(Σ_b a_b² / σ_b²) with
    σ_b = abs + rel · (field-mean reflectance).
    """
    noise = site.metadata.get("observation_models", {}).get("s2", {}).get("noise", {})
    absolute, relative = float(noise.get("absolute", 0.005)), float(noise.get("relative", 0.02))
    amplitude = eq.band_amplitude or {}
    n = max(fields.ids) if fields.ids else 0
    precision = 0.0
    for band in S2_BANDS:
        a = float(amplitude.get(band, 0.0))
        if a == 0.0:
            continue
        reflectance = load_part(site.s2[band].isel(time=dates)).values
        rho, _ = field_means(reflectance, fields.labels, n, clear)
        precision = precision + a**2 / (absolute + relative * np.nan_to_num(rho)) ** 2
    if np.isscalar(precision):
        raise DataError(f"{site.path('metadata')}: {eq.name} has no band_amplitude for S2 bands")
    return 1.0 / np.sqrt(precision)


def truth_trajectories(
    site: Site,
    truth: xr.Dataset,
    fields: Fields,
    eq: PlantedEquation,
    drivers: Drivers,
    cfg: DiscoverConfig,
) -> tuple[list[Trajectory], dict]:
    """One trajectory of the planted state per susceptible field, and counts of what was kept.

    Each trajectory is sampled and noised like the sensor of ``eq``.
    """
    for name in (eq.pixel_variable, eq.susceptibility_variable):
        if name not in truth:
            raise DataError(f"{site.path('truth')}: variable {name!r} missing")
    s2 = eq.modality.upper() == "S2"
    cube = site.s2 if s2 else site.s1
    times = cube.time.values
    susceptibility = truth[eq.susceptibility_variable].values.astype(float)
    n = max(fields.ids) if fields.ids else 0
    susceptible = susceptibility > 0
    field_s, _ = field_means(susceptibility[None], fields.labels, n)
    enl = float(site.metadata.get("config", {}).get("s1_enl", 4.4))
    parts: list[tuple[np.ndarray, ...]] = []
    # by blocks of dates (each date's field means are its own): lazily opened cubes are read
    # a block at a time
    for dates in date_blocks(len(times), susceptibility.size):
        effect = _at_days(truth[eq.pixel_variable], times[dates]).astype(float)
        seen = load_part(cube[S2_MASK if s2 else "VV"].isel(time=dates)).values
        seen = seen == MASK_CLEAR if s2 else np.isfinite(seen)
        state = np.where(susceptible, effect / np.where(susceptible, susceptibility, 1.0), 0.0)
        values, counts = field_means(state, fields.labels, n, seen & susceptible[None])
        _, totals = field_means(np.ones_like(effect), fields.labels, n)
        if s2:
            pixel_sd = _s2_noise(site, fields, seen, eq, dates)
        else:
            pixel_sd = np.full(values.shape, speckle_db_sd(enl) / np.sqrt(2))
        parts.append((values, counts, totals, pixel_sd))
    values, counts, totals, pixel_sd = (np.concatenate(p) for p in zip(*parts, strict=True))
    rng = np.random.default_rng([cfg.seed, zlib.crc32(eq.name.encode())])
    days = drivers.day_of(times)
    trajectories, skipped = [], {"few_pixels": 0, "low_susceptibility": 0, "few_dates": 0}
    for f in fields.ids:
        if totals[0, f] < cfg.min_field_pixels:
            skipped["few_pixels"] += 1
            continue
        if not field_s[0, f] >= cfg.min_susceptibility:
            skipped["low_susceptibility"] += 1
            continue
        observed = counts[:, f] >= cfg.min_clear_fraction * totals[:, f]
        if observed.sum() < cfg.min_dates:
            skipped["few_dates"] += 1
            continue
        sd = pixel_sd[observed, f] / np.sqrt(counts[observed, f]) / field_s[0, f]
        noise = rng.standard_normal(sd.size) * sd if cfg.truth_noise else 0.0
        group = "train" if fields.split[f] in cfg.fit_splits else "heldout"
        meta = {"field": f, "susceptibility": float(field_s[0, f]), "noise_sd": float(sd.mean())}
        trajectories.append(
            Trajectory(fields.names[f], days[observed], values[observed, f] + noise, group, meta)
        )
    return trajectories, {"fields": len(fields.ids), "kept": len(trajectories), **skipped}
