"""PROSAIL input variables of every management zone through time.

Leaf chlorophyll and water fall, brown pigments, anthocyanins and dry-matter fraction rise with
the senescent-leaf fraction of ``phenology`` (the classic yellowing of ripening cereals and
autumn leaves); the soil turns from its wet to its dry spectrum as the surface dries
(``psoil``, the dry-soil fraction of PROSAIL's soil model, is the relative dryness of the
drydown). Open water is a dark, flat, fully wet "soil" with no canopy.
"""

from __future__ import annotations

import numpy as np

from releo.data.contracts import LAND_COVER_CLASSES
from releo.data.simulate.parcels import Parcels
from releo.data.simulate.random_fields import round_mantissa
from releo.data.simulate.traits import FieldTraits

STATIC_VARIABLES: tuple[str, ...] = ("N", "lidfa", "hspot", "rsoil")
DYNAMIC_VARIABLES: tuple[str, ...] = ("cab", "car", "cant", "cbrown", "cw", "cm", "lai", "psoil")
VARIABLE_RANGES: dict[str, tuple[float, float]] = {
    "N": (1.2, 1.8), "cab": (20.0, 90.0), "car": (5.0, 23.0), "cant": (0.0, 10.0),
    "cbrown": (0.0, 2.0), "cw": (0.0075, 0.075), "cm": (0.003, 0.011), "lai": (0.0, 10.0),
    "lidfa": (30.0, 80.0), "hspot": (0.01, 0.5), "psoil": (0.0, 1.0), "rsoil": (0.3, 3.5),
}  # fmt: skip
"""Domain kept by the simulator (the PROSAIL-VAE ranges, Zérah et al. 2024)."""
UNITS: dict[str, str] = {
    "N": "1", "cab": "ug cm-2", "car": "ug cm-2", "cant": "ug cm-2", "cbrown": "1",
    "cw": "cm", "cm": "g cm-2", "lai": "m2 m-2", "lidfa": "degree", "hspot": "1",
    "psoil": "1", "rsoil": "1", "soil_moisture": "m3 m-3",
}  # fmt: skip

# Relative change per unit of within-field vigour (greener, wetter leaves and darker, deeper
# soil where the crop is vigorous).
VIGOUR_GAIN = {"cab": 0.04, "cw": 0.03, "rsoil": -0.05}
WATER = LAND_COVER_CLASSES.index("water")


def _finish(name: str, values: np.ndarray) -> np.ndarray:
    """Clip to the simulator's domain and round for storage (the rounding stays inside)."""
    lo, hi = (np.float32(v) for v in VARIABLE_RANGES[name])
    return np.clip(round_mantissa(values), lo, hi)


def static_variables(parcels: Parcels, traits: FieldTraits) -> dict[str, np.ndarray]:
    """N, mean leaf angle, hot spot and soil brightness of every zone, (n_zones,)."""
    zp, vigour = parcels.zone_parcel, parcels.zone_vigour.astype(float)
    rsoil = traits.rsoil[zp] * (1 + VIGOUR_GAIN["rsoil"] * vigour)
    return {
        "N": _finish("N", traits.N[zp]),
        "lidfa": _finish("lidfa", traits.lidfa[zp]),
        "hspot": _finish("hspot", traits.hspot[zp]),
        "rsoil": _finish("rsoil", rsoil),
    }


def psoil_from_moisture(theta: np.ndarray, theta_r: np.ndarray, theta_s: np.ndarray) -> np.ndarray:
    """Dry-soil fraction: 1 at the residual moisture, 0 at saturation (linear in between)."""
    return np.clip((theta_s - theta) / (theta_s - theta_r), 0.0, 1.0)


def dynamic_variables(
    parcels: Parcels,
    traits: FieldTraits,
    lai: np.ndarray,
    senescence: np.ndarray,
    soil_moisture: np.ndarray,
) -> dict[str, np.ndarray]:
    """Time-varying PROSAIL inputs of every zone, each (n_dates, n_zones).

    They come from the zone LAI and senescent fraction and from the soil moisture of the zone's
    parcel (n_dates, n_parcels).
    """
    zp, vigour = parcels.zone_parcel, parcels.zone_vigour.astype(float)
    green = 1.0 - senescence
    cab_green = traits.cab_green[zp] * (1 + VIGOUR_GAIN["cab"] * vigour)
    cab = traits.cab_brown[zp] + (cab_green - traits.cab_brown[zp]) * green
    cw_green = traits.cw_green[zp] * (1 + VIGOUR_GAIN["cw"] * vigour)
    cw_brown = np.maximum(0.0078, 0.45 * cw_green)  # ripe straw keeps ~10 % water
    theta = soil_moisture[:, zp]
    psoil = psoil_from_moisture(theta, traits.theta_r[zp], traits.theta_s[zp])
    is_water = parcels.zone_class == WATER
    lai = np.where(is_water, 0.0, lai)
    psoil = np.where(is_water, 0.0, psoil)
    return {
        "cab": _finish("cab", cab),
        "car": _finish("car", cab / traits.cab_car_ratio[zp]),
        "cant": _finish("cant", traits.cant_green[zp] + 3.0 * senescence),
        "cbrown": _finish("cbrown", traits.cbrown_max[zp] * senescence),
        "cw": _finish("cw", cw_brown + (cw_green - cw_brown) * green),
        "cm": _finish("cm", traits.cm_green[zp] * (1 + 0.3 * senescence)),
        "lai": _finish("lai", lai),
        "psoil": _finish("psoil", psoil),
    }
