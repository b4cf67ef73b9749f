"""Leaf area index dynamics per land-cover class: double-logistic growth and senescence.

Each growing season follows the double-logistic curve used in land-surface phenology (Zhang et
al. 2003, "Monitoring vegetation phenology using MODIS", Remote Sens. Environ. 84, 471–475;
Beck et al. 2006), here written in LAI with a partial leaf loss at senescence, a harvest that
removes the canopy, an optional winter tillering phase (winter wheat) and mowing cuts with
exponential regrowth (grassland):

    LAI(t) = base + A·G(t)·(1 − (1 − f_dry)·S(t))·(1 − H(t))·Π_cuts C_k(t)
    G = w·σ((t − t_e)/r_e) + (1 − w)·σ((t − t_g)/r_g),   S = σ((t − t_s)/r_s),
    H = σ((t − t_h)/0.5 d),   C_k = 1 − (1 − f_cut)·exp(−(t − t_k)/τ_regrowth) for t ≥ t_k.

``S`` is also the fraction of senescent (brown) leaves, which drives chlorophyll loss and the
brown-pigment content. Dates are days from 1 January of the season's (harvest) year, so winter
wheat, sown in autumn, belongs to the next year's season. Every field draws its own dates,
amplitude and rates per season (from its own random stream), and within a field the vigour
index scales the amplitude and advances the season of vigorous zones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import expit

from releo.data.contracts import LAND_COVER_CLASSES
from releo.data.simulate.parcels import Parcels
from releo.data.simulate.random_fields import keyed_rng

NO_DATE = 1e6
"""A date far beyond any period: the event (harvest, cut) never happens."""
HARVEST_RATE_DAYS = 0.5
MIN_LAI = 1e-4
VIGOUR_AMPLITUDE_GAIN = 0.06
"""Relative LAI amplitude change per unit of vigour (mild within-field variation, ±15 % at most)."""
VIGOUR_ADVANCE_DAYS = 1.5
"""Days by which a zone's season is advanced per unit of vigour."""


@dataclass(frozen=True)
class ClassPhenology:
    """Season template of a class: mean dates (days from 1 Jan), rates (days), amplitude."""

    amplitude: float = 0.0
    amplitude_cv: float = 0.12
    amplitude_max: float = 6.0
    base: float = 0.0  # evergreen part: woody area, winter grass
    base_brown: float = 0.0  # brown fraction of the base LAI
    winter_fraction: float = 0.0
    t_emerge: float = 0.0
    r_emerge: float = 6.0
    t_green: float = 100.0
    r_green: float = 10.0
    t_senescence: float = 250.0
    r_senescence: float = 8.0
    t_harvest: float = NO_DATE
    dry_fraction: float = 0.0  # share of LAI kept (brown) at full senescence, until harvest
    cuts: tuple[float, ...] = ()
    cut_residual: float = 0.25
    regrowth_days: float = 12.0
    date_sd: float = 7.0  # field-to-field spread of the season's timing


CLASS_PHENOLOGY: dict[str, ClassPhenology] = {
    # Sown late October, tillers over winter, stem elongation in March, peak in May,
    # yellow in June, harvested early July (Toulouse area calendars).
    "winter_wheat": ClassPhenology(
        amplitude=5.2, winter_fraction=0.08, t_emerge=-55, t_green=88, r_green=10,
        t_senescence=160, r_senescence=7, t_harvest=190, dry_fraction=0.4,
    ),
    # Sown late April–May, peak LAI in late July–August, harvested late September–October.
    "maize": ClassPhenology(
        amplitude=4.8, amplitude_cv=0.15, t_green=172, r_green=8, t_senescence=248,
        r_senescence=9, t_harvest=283, dry_fraction=0.45,
    ),
    # Sown April, flowering early July, dry heads in August, harvested early-mid September.
    "sunflower": ClassPhenology(
        amplitude=3.3, t_green=158, r_green=7, t_senescence=214, r_senescence=7,
        t_harvest=255, dry_fraction=0.3,
    ),
    # Permanent meadow: green in winter, spring flush, two hay cuts, autumn decline.
    "grassland": ClassPhenology(
        amplitude=2.6, base=0.8, base_brown=0.15, t_green=80, r_green=12, t_senescence=300,
        r_senescence=15, cuts=(135, 195), date_sd=6.0,
    ),
    # Deciduous oak/hornbeam woods: bud burst mid-April, leaf fall late October.
    "broadleaf_forest": ClassPhenology(
        amplitude=4.4, amplitude_cv=0.1, amplitude_max=5.0, base=0.5, base_brown=1.0,
        t_green=106, r_green=5, t_senescence=295, r_senescence=8, date_sd=4.0,
    ),
    # Bare/built plots: a sparse spring weed flush at most.
    "bare_soil": ClassPhenology(
        amplitude=0.15, amplitude_cv=0.3, t_green=95, r_green=10, t_senescence=165,
        r_senescence=10,
    ),
    "water": ClassPhenology(),
}  # fmt: skip

_SEASON_FIELDS = (
    "amplitude", "winter_fraction", "t_emerge", "r_emerge", "t_green", "r_green",
    "t_senescence", "r_senescence", "t_harvest", "dry_fraction", "cut1", "cut2",
    "cut_residual", "regrowth_days",
)  # fmt: skip


def season_parameters(seed: int, parcel: int, class_index: int, year: int) -> dict[str, float]:
    """Jittered season of one field for the season (harvest) year ``year``."""
    template = CLASS_PHENOLOGY[LAND_COVER_CLASSES[class_index]]
    rng = keyed_rng(seed, "phenology", parcel, year)
    shift = rng.normal(0.0, template.date_sd)  # the whole calendar of the field moves together
    jitter = rng.normal(0.0, 3.0, size=5)
    rates = rng.uniform(0.85, 1.15, size=3)
    amplitude = template.amplitude * rng.normal(1.0, template.amplitude_cv)
    amplitude = float(np.clip(amplitude, 0.5 * template.amplitude, template.amplitude_max))
    cuts = list(template.cuts) + [NO_DATE] * (2 - len(template.cuts))
    return {
        "amplitude": amplitude,
        "winter_fraction": template.winter_fraction,
        "t_emerge": template.t_emerge + shift + jitter[0],
        "r_emerge": template.r_emerge,
        "t_green": template.t_green + shift + jitter[1],
        "r_green": template.r_green * rates[0],
        "t_senescence": template.t_senescence + shift + jitter[2],
        "r_senescence": template.r_senescence * rates[1],
        "t_harvest": template.t_harvest + shift + abs(jitter[3]),
        "dry_fraction": template.dry_fraction,
        "cut1": cuts[0] + shift + jitter[4],
        "cut2": cuts[1] + shift + jitter[4] + rng.normal(0.0, 4.0),
        "cut_residual": template.cut_residual,
        "regrowth_days": template.regrowth_days * rates[2],
    }


def _season_arrays(parcels: Parcels, seed: int, year: int) -> dict[str, np.ndarray]:
    """Season parameters of every zone (n_zones,) for one season year."""
    per_parcel = [
        season_parameters(seed, p, int(parcels.classes[p]), year) for p in range(parcels.n_parcels)
    ]
    table = {k: np.array([row[k] for row in per_parcel]) for k in _SEASON_FIELDS}
    zones = {k: v[parcels.zone_parcel] for k, v in table.items()}
    vigour = parcels.zone_vigour.astype(float)
    gain = 1.0 + VIGOUR_AMPLITUDE_GAIN * vigour
    zones["amplitude"] = zones["amplitude"] * gain
    advance = VIGOUR_ADVANCE_DAYS * vigour
    for key in ("t_emerge", "t_green", "t_senescence", "t_harvest", "cut1", "cut2"):
        zones[key] = zones[key] - advance
    return zones


def _cut_factor(
    t: np.ndarray, cut: np.ndarray, residual: np.ndarray, regrowth: np.ndarray
) -> np.ndarray:
    elapsed = t - cut
    after = elapsed >= 0
    return 1.0 - after * (1.0 - residual) * np.exp(-np.where(after, elapsed, 0.0) / regrowth)


def base_lai(parcels: Parcels, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Evergreen LAI (woody area, winter grass) of every zone and its brown fraction, static."""
    base = np.empty(parcels.n_parcels)
    brown = np.empty(parcels.n_parcels)
    for p in range(parcels.n_parcels):
        template = CLASS_PHENOLOGY[LAND_COVER_CLASSES[int(parcels.classes[p])]]
        base[p] = template.base * keyed_rng(seed, "phenology_base", p).uniform(0.85, 1.15)
        brown[p] = template.base_brown
    gain = 1.0 + VIGOUR_AMPLITUDE_GAIN * parcels.zone_vigour.astype(float)
    return base[parcels.zone_parcel] * gain, brown[parcels.zone_parcel]


def lai_and_senescence(
    parcels: Parcels, seed: int, dates: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """LAI (green + brown leaves) and brown-leaf fraction of every zone at ``dates``.

    ``dates`` are datetime64[D]; each output is (n_dates, n_zones). Both are analytic in time, so
    periods always agree.
    """
    dates = np.asarray(dates, dtype="datetime64[D]")
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    base, base_brown = base_lai(parcels, seed)
    lai = np.broadcast_to(base, (dates.size, parcels.n_zones)).copy()
    brown = np.broadcast_to(base * base_brown, lai.shape).copy()
    # A date can see the tail of last year's season and the start of next year's (autumn
    # sowing of wheat): every season overlapping the dates is added.
    for year in range(int(years.min()) - 1, int(years.max()) + 2):
        p = _season_arrays(parcels, seed, year)
        t = (dates - np.datetime64(f"{year}-01-01", "D")).astype(float)[:, None]
        green = p["winter_fraction"] * expit((t - p["t_emerge"]) / p["r_emerge"]) + (
            1 - p["winter_fraction"]
        ) * expit((t - p["t_green"]) / p["r_green"])
        senescence = expit((t - p["t_senescence"]) / p["r_senescence"])
        harvested = expit((t - p["t_harvest"]) / HARVEST_RATE_DAYS)
        cuts = _cut_factor(t, p["cut1"], p["cut_residual"], p["regrowth_days"]) * _cut_factor(
            t, p["cut2"], p["cut_residual"], p["regrowth_days"]
        )
        leaf_loss = 1 - (1 - p["dry_fraction"]) * senescence
        season = p["amplitude"] * green * leaf_loss * (1 - harvested) * cuts
        # Only the seasons of the date's own, previous and next year count, whatever the other
        # dates asked for: a date's value must not depend on the period it is computed in.
        season = np.where((np.abs(years - year) <= 1)[:, None], season, 0.0)
        lai += season
        brown += season * senescence
    lai = np.where(lai < MIN_LAI, 0.0, lai)  # logistic tails are not leaves
    fraction = np.divide(brown, lai, out=np.zeros_like(lai), where=lai > 0)
    return lai, np.clip(fraction, 0.0, 1.0)
