"""Static traits of every field.

Leaf biochemistry, canopy structure, soil optics and hydraulics, and susceptibility to the exclusive
effects.

Class-wise distributions follow the ranges of the PROSAIL-VAE training set (Zérah et al.
2024) and field measurements over crops (e.g. Jacquemoud et al. 2009, "PROSPECT+SAIL models:
a review", Remote Sens. Environ. 113, S56–S66): e.g. erectophile cereals and grass (mean leaf
angle ~60°) versus a planophile sunflower (~42°), thin dry matter in crops, thicker in oak
leaves. Soil hydraulics follow the surface-layer drydown of ``meteo``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from releo.data.contracts import LAND_COVER_CLASSES
from releo.data.simulate.parcels import Parcels
from releo.data.simulate.random_fields import keyed_rng

# Per class: (mean, sd) of a normal draw or (low, high) of a uniform one, as tagged.
_N = {"broadleaf_forest": ("U", 1.55, 1.8)}
_CAB = {
    "winter_wheat": (55, 6), "maize": (58, 7), "sunflower": (50, 6), "grassland": (45, 6),
    "broadleaf_forest": (48, 6), "bare_soil": (35, 5), "water": (30, 0),
}  # fmt: skip
_CW = {
    "winter_wheat": (0.018, 0.002), "maize": (0.020, 0.003), "sunflower": (0.022, 0.003),
    "grassland": (0.016, 0.002), "broadleaf_forest": (0.012, 0.0015), "bare_soil": (0.012, 0.002),
    "water": (0.012, 0.0),
}  # fmt: skip
_CM = {
    "winter_wheat": (0.0050, 0.0006), "maize": (0.0055, 0.0006), "sunflower": (0.0050, 0.0006),
    "grassland": (0.0045, 0.0005), "broadleaf_forest": (0.0075, 0.0008),
    "bare_soil": (0.0050, 0.0005), "water": (0.0050, 0.0),
}  # fmt: skip
_LIDFA = {
    "winter_wheat": (62, 4), "maize": (57, 4), "sunflower": (42, 4), "grassland": (60, 4),
    "broadleaf_forest": (50, 4), "bare_soil": (55, 4), "water": (50, 0),
}  # fmt: skip
_HSPOT = {"broadleaf_forest": (0.15, 0.3), "grassland": (0.05, 0.12)}  # uniform; others 0.05–0.15
_CBROWN_MAX = {"broadleaf_forest": (1.0, 1.8), "grassland": (0.5, 1.0)}  # uniform; crops 0.8–1.6
_RSOIL = {"bare_soil": (1.1, 1.6), "broadleaf_forest": (0.6, 0.8), "water": (0.3, 0.3)}  # unif.
_OPTICAL_SUSCEPTIBILITY = {
    "winter_wheat": (0.8, 1.2), "maize": (0.8, 1.2), "sunflower": (0.8, 1.2),
    "grassland": (0.6, 0.9), "broadleaf_forest": (0.3, 0.5), "bare_soil": (1.0, 1.4),
    "water": (0.0, 0.0),
}  # fmt: skip
_SAR_SUSCEPTIBILITY = {
    "winter_wheat": (0.7, 1.1), "maize": (0.7, 1.1), "sunflower": (0.7, 1.1),
    "grassland": (0.6, 0.9), "broadleaf_forest": (0.3, 0.5), "bare_soil": (0.9, 1.3),
    "water": (0.0, 0.0),
}  # fmt: skip


@dataclass(frozen=True)
class FieldTraits:
    """Per-parcel static traits, each an array of shape (n_parcels,)."""

    N: np.ndarray  # leaf structure parameter
    cab_green: np.ndarray  # µg/cm², chlorophyll a+b of green leaves
    cab_brown: np.ndarray  # µg/cm², of fully senescent leaves
    cab_car_ratio: np.ndarray  # chlorophyll / carotenoid ratio
    cant_green: np.ndarray  # µg/cm², anthocyanins (rise at senescence)
    cbrown_max: np.ndarray  # brown pigment of fully senescent leaves
    cw_green: np.ndarray  # cm, equivalent water thickness of green leaves
    cm_green: np.ndarray  # g/cm², dry matter of green leaves
    lidfa: np.ndarray  # degrees, mean leaf inclination
    hspot: np.ndarray  # hot-spot size parameter
    rsoil: np.ndarray  # soil brightness factor
    theta_r: np.ndarray  # m³/m³, residual surface soil moisture
    theta_s: np.ndarray  # m³/m³, saturation
    tau_days: np.ndarray  # drydown time scale at T⁺ = 0 (winter), ~4 days in summer
    depth_mm: np.ndarray  # effective depth of the surface layer for rain infiltration
    et_sensitivity: np.ndarray  # 1/°C, acceleration of drydown with temperature excess
    optical_susceptibility: np.ndarray  # weight of the optical exclusive effect
    sar_susceptibility: np.ndarray  # weight of the SAR exclusive effect

    def as_records(self) -> list[dict[str, float]]:
        """One dict of trait values per entry."""
        names = [f.name for f in fields(self)]
        return [
            {n: round(float(getattr(self, n)[p]), 6) for n in names} for p in range(self.N.size)
        ]


def _normal(rng: np.random.Generator, spec: tuple[float, float], lo: float, hi: float) -> float:
    return float(np.clip(rng.normal(*spec), lo, hi))


def _uniform(rng: np.random.Generator, spec: tuple[float, float]) -> float:
    return float(rng.uniform(*spec))


def field_traits(parcels: Parcels, seed: int) -> FieldTraits:
    """Draw the traits of every parcel, each parcel from its own random stream."""
    rows = []
    for p in range(parcels.n_parcels):
        name = LAND_COVER_CLASSES[int(parcels.classes[p])]
        rng = keyed_rng(seed, "traits", p)
        forest = name == "broadleaf_forest"
        n_spec = _N.get(name, ("U", 1.4, 1.7))
        rows.append(
            {
                "N": _uniform(rng, n_spec[1:]),
                "cab_green": _normal(rng, _CAB[name], 25.0, 85.0),
                "cab_brown": _uniform(rng, (20.0, 26.0)),
                "cab_car_ratio": _uniform(rng, (4.0, 5.5)),
                "cant_green": _uniform(rng, (0.5, 2.5)),
                "cbrown_max": _uniform(rng, _CBROWN_MAX.get(name, (0.8, 1.6))),
                "cw_green": _normal(rng, _CW[name], 0.009, 0.04),
                "cm_green": _normal(rng, _CM[name], 0.0035, 0.0095),
                "lidfa": _normal(rng, _LIDFA[name], 35.0, 75.0),
                "hspot": _uniform(rng, _HSPOT.get(name, (0.05, 0.15))),
                "rsoil": float(np.clip(rng.normal(1.0, 0.15), 0.65, 1.4))
                if name not in _RSOIL
                else _uniform(rng, _RSOIL[name]),
                "theta_r": _uniform(rng, (0.04, 0.08)),
                "theta_s": _uniform(rng, (0.40, 0.48)),
                # shaded forest soils dry slower than open fields
                "tau_days": _uniform(rng, (12.0, 16.0) if forest else (8.0, 12.0)),
                "depth_mm": _uniform(rng, (60.0, 100.0)),
                "et_sensitivity": _uniform(rng, (0.07, 0.10)),
                "optical_susceptibility": _uniform(rng, _OPTICAL_SUSCEPTIBILITY[name]),
                "sar_susceptibility": _uniform(rng, _SAR_SUSCEPTIBILITY[name]),
            }
        )
    return FieldTraits(**{k: np.array([r[k] for r in rows]) for k in rows[0]})
