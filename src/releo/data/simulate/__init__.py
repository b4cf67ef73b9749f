"""The embedded default dataset: a physically grounded scene simulator.

A site of parcels near Toulouse (crops, grassland, forest, bare soil, water) with per-class
phenology, leaf biochemistry and soil, daily meteorology and soil moisture; Sentinel-2 L2A from
PROSAIL with real geometry, clouds and noise; Sentinel-1 from the Water Cloud Model with speckle;
exclusive effects whose ODEs are known (ground truth for residual models and SINDy); field
surveys; the SNAP LAI reference product; and the truth kept apart. Entry points:
:func:`simulate_site` and :func:`simulate_drop`.
"""

from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.effects import PLANTED_EQUATIONS, PlantedEquation
from releo.data.simulate.scene import Scene
from releo.data.simulate.site import SITE_FILES, simulate_drop, simulate_period, simulate_site

__all__ = [
    "PLANTED_EQUATIONS",
    "SITE_FILES",
    "PlantedEquation",
    "Scene",
    "SimulationConfig",
    "simulate_drop",
    "simulate_period",
    "simulate_site",
]
