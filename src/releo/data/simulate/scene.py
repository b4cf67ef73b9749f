"""The true state of a site: layout, traits, meteorology, soil moisture, canopy and effects.

Everything observable is derived from this state, and the truth cube is a view of it. The
state is analytic in time (phenology) or integrated from a fixed spin-up start (soil moisture,
exclusive effects), so a scene built to a later end date agrees exactly with an earlier one
on their common days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from releo.data.simulate.canopy import dynamic_variables, static_variables
from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.effects import DRIVER_COLUMNS, PLANTED_EQUATIONS, PlantedEquation
from releo.data.simulate.grid import SiteGrid
from releo.data.simulate.meteo import simulate_meteorology, soil_moisture_drydown
from releo.data.simulate.parcels import WATER, Parcels, make_parcels
from releo.data.simulate.phenology import lai_and_senescence
from releo.data.simulate.random_fields import round_mantissa
from releo.data.simulate.traits import FieldTraits, field_traits


@dataclass(frozen=True)
class Scene:
    """True state of the site from ``config.spinup_start`` to ``last_day``."""

    config: SimulationConfig
    grid: SiteGrid
    parcels: Parcels
    traits: FieldTraits
    meteo: pd.DataFrame  # daily, spin-up included
    soil_moisture: np.ndarray  # (n_days, n_parcels), m³/m³ at the end of each day
    effect_states: dict[str, np.ndarray]  # equation name → (n_days,) state at the end of each day
    effect_weights: dict[str, np.ndarray]  # equation name → (n_parcels,) susceptibility

    @classmethod
    def build(cls, config: SimulationConfig, last_day: date) -> Scene:
        """The scene of ``config`` up to ``last_day``."""
        grid = SiteGrid.from_config(config)
        parcels = make_parcels(config)
        traits = field_traits(parcels, config.seed)
        meteo = simulate_meteorology(
            config.seed,
            np.datetime64(config.spinup_start),
            np.datetime64(last_day),
            config.annual_rainfall_mm,
            config.mean_temperature_c,
        )
        rain = meteo["rainfall_mm"].to_numpy()
        tplus = meteo["temperature_excess_c"].to_numpy()
        theta = soil_moisture_drydown(
            rain,
            tplus,
            traits.theta_r,
            traits.theta_s,
            traits.tau_days,
            traits.depth_mm,
            traits.et_sensitivity,
        )
        # Open water has no soil: it is reported saturated, consistent with its wet "soil".
        water = parcels.classes == WATER
        theta[:, water] = traits.theta_s[water]
        drivers = {symbol: meteo[column].to_numpy() for symbol, column in DRIVER_COLUMNS.items()}
        states = {eq.name: round_mantissa(eq.integrate(drivers)) for eq in PLANTED_EQUATIONS}
        weights = {
            "optical_browning": traits.optical_susceptibility,
            "sar_wetness_structure": traits.sar_susceptibility,
        }
        return cls(config, grid, parcels, traits, meteo, round_mantissa(theta), states, weights)

    @property
    def days(self) -> np.ndarray:
        """datetime64[D] of every simulated day (spin-up included)."""
        return self.meteo["date"].to_numpy().astype("datetime64[D]")

    def day_index(self, dates: np.ndarray) -> np.ndarray:
        """Positions of ``dates`` in :attr:`days` (they must be simulated days)."""
        dates = np.asarray(dates, dtype="datetime64[D]")
        index = (dates - self.days[0]).astype(int)
        if index.min() < 0 or index.max() >= self.days.size:
            raise ValueError(f"dates outside the simulated period {self.days[0]}..{self.days[-1]}")
        return index

    def soil_moisture_zones(self, dates: np.ndarray) -> np.ndarray:
        """Soil moisture of every zone at ``dates``, (n_dates, n_zones)."""
        return self.soil_moisture[self.day_index(dates)][:, self.parcels.zone_parcel]

    def canopy(self, dates: np.ndarray) -> dict[str, np.ndarray]:
        """All PROSAIL inputs of every zone at ``dates``.

        Dynamic inputs are (n_dates, n_zones), static ones (n_zones,).
        """
        lai, senescence = lai_and_senescence(self.parcels, self.config.seed, dates)
        theta = self.soil_moisture[self.day_index(dates)]
        variables = dynamic_variables(self.parcels, self.traits, lai, senescence, theta)
        variables.update(static_variables(self.parcels, self.traits))
        return variables

    def effect(self, equation: PlantedEquation, dates: np.ndarray) -> np.ndarray:
        """Per-parcel effect (susceptibility × state) at ``dates``, (n_dates, n_parcels)."""
        state = self.effect_states[equation.name][self.day_index(dates)]
        return round_mantissa(state[:, None] * self.effect_weights[equation.name][None, :])
