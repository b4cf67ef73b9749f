"""The embedded default dataset: a physically grounded scene simulator.

A site of parcels near Toulouse (crops, grassland, forest, bare soil, water) with per-class
phenology, leaf biochemistry and soil, daily meteorology and soil moisture; Sentinel-2 L2A from
PROSAIL with real geometry, clouds and noise; Sentinel-1 from the Water Cloud Model with speckle;
exclusive effects whose ODEs are known (ground truth for residual models and SINDy); field
surveys; the SNAP LAI reference product; and the truth kept apart. Entry points:
:func:`simulate_site` and :func:`simulate_drop`.

A site's bytes are a function of its configuration and of the library versions (numpy, torch,
zarr, numcodecs, xarray, PROJ), not of the machine: thread counts, CPU instruction sets and
batch sizes change float32 results in the last bits, so the physics (PROSAIL, SNAP) runs in
float64 and is rounded once to the stored precision, and every random draw comes from a keyed
numpy stream. ``tests/data/tiny_site_checksums.json`` pins a small site. To check the default
site against ``data.dvc`` on a new machine: ``releo simulate`` (it writes ``data/``), then
``dvc status data.dvc`` reports nothing to do when the bytes are the recorded ones.
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
