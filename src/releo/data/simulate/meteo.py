"""Daily meteorology near Toulouse and the surface soil moisture it drives.

Rainfall: a two-state (wet/dry) first-order Markov chain for occurrence with gamma-distributed
wet-day amounts (Richardson 1981, WGEN), monthly occurrence and totals set to Toulouse-Blagnac
normals and rescaled to the configured annual total. Temperature: an annual cosine plus an
AR(1) anomaly, cooler on wet days. Soil moisture of the surface layer follows the loss-function
drydown (McColl et al. 2017, "The global distribution and dynamics of surface soil moisture",
Nat. Geosci. 10, 100–104), exponential towards a residual content, with rain as a source:

    dθ/dt = −(1 + β·T⁺)·(θ − θr)/τ + P/Z,   θr ≤ θ ≤ θs,

integrated exactly day by day with rain and temperature constant over each day; water above
saturation runs off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from releo.data.meteo import temperature_excess
from releo.data.simulate.random_fields import keyed_rng

MONTHLY_RAINFALL_MM = np.array([50, 40, 47, 65, 72, 60, 38, 45, 50, 55, 52, 50], dtype=float)
"""Climatological monthly rainfall at Toulouse-Blagnac (1991–2020 normals, rounded), mm."""
MONTHLY_WET_DAYS = np.array([9.4, 8.5, 8.8, 10.2, 10.6, 7.9, 5.4, 6.4, 7.0, 8.9, 9.3, 9.4])
"""Mean number of days with rain >= 1 mm per month (same normals)."""
DAYS_PER_MONTH = np.array([31, 28.25, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])
WET_AFTER_WET = 0.55
"""Persistence of wet spells: P(wet today | wet yesterday)."""
WET_DAY_MINIMUM_MM = 1.0
GAMMA_SHAPE = 0.75
"""Shape of wet-day rainfall excess above 1 mm (typical 0.6–0.9 for daily rain)."""

TEMPERATURE_AMPLITUDE_C = 8.3
TEMPERATURE_COLDEST_DOY = 20
TEMPERATURE_ANOMALY_SD_C = 2.2
TEMPERATURE_ANOMALY_AR1 = 0.75
WET_DAY_COOLING_C = 0.8


@dataclass(frozen=True)
class RainClimate:
    """Monthly parameters of the rainfall generator (arrays of 12)."""

    wet_probability: np.ndarray  # stationary P(wet)
    wet_after_dry: np.ndarray
    mean_excess_mm: np.ndarray  # mean wet-day rain above WET_DAY_MINIMUM_MM

    @classmethod
    def toulouse(cls, annual_rainfall_mm: float) -> RainClimate:
        """Toulouse's monthly rainfall pattern scaled to ``annual_rainfall_mm``."""
        totals = MONTHLY_RAINFALL_MM * annual_rainfall_mm / MONTHLY_RAINFALL_MM.sum()
        wet = MONTHLY_WET_DAYS / DAYS_PER_MONTH
        # Stationary probability of a two-state chain: π = p01 / (1 − p11 + p01).
        wet_after_dry = wet * (1 - WET_AFTER_WET) / (1 - wet)
        mean_excess = totals / MONTHLY_WET_DAYS - WET_DAY_MINIMUM_MM
        return cls(wet, wet_after_dry, mean_excess)

    def cdf(self, rainfall_mm: np.ndarray, month: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper cumulative probability of the daily rain ``rainfall_mm`` in ``month``.

        The point mass at 0 mm gives an interval: a randomised probability-integral transform draws
        uniformly in between.
        """
        m = month - 1
        dry = 1 - self.wet_probability[m]
        wet = rainfall_mm > 0
        excess = np.maximum(rainfall_mm - WET_DAY_MINIMUM_MM, 0)
        scale = self.mean_excess_mm[m] / GAMMA_SHAPE
        upper = np.where(
            wet, dry + (1 - dry) * stats.gamma.cdf(excess, GAMMA_SHAPE, scale=scale), dry
        )
        lower = np.where(wet, upper, 0.0)
        return lower, upper


def daily_dates(first: np.datetime64, last: np.datetime64) -> np.ndarray:
    """Every day from ``first`` to ``last`` inclusive, as datetime64[D]."""
    return np.arange(
        np.datetime64(first, "D"),  # type: ignore[call-overload]
        np.datetime64(last, "D") + 1,  # type: ignore[call-overload]
    )


def _one_year(
    seed: int, year: int, climate: RainClimate, mean_temperature_c: float
) -> pd.DataFrame:
    """Weather of one calendar year, from its own random stream (so years never shift)."""
    rng = keyed_rng(seed, "meteo", year)
    days = daily_dates(np.datetime64(f"{year}-01-01"), np.datetime64(f"{year}-12-31"))
    months = days.astype("datetime64[M]").astype(int) % 12
    n = days.size
    uniform = rng.random(n)
    wet = np.empty(n, dtype=bool)
    wet[0] = uniform[0] < climate.wet_probability[months[0]]
    for i in range(1, n):
        p = WET_AFTER_WET if wet[i - 1] else climate.wet_after_dry[months[i]]
        wet[i] = uniform[i] < p
    scale = climate.mean_excess_mm[months] / GAMMA_SHAPE
    amounts = WET_DAY_MINIMUM_MM + rng.gamma(GAMMA_SHAPE, 1.0, n) * scale
    rain = np.where(wet, amounts, 0.0)

    doy = np.arange(n)
    seasonal = mean_temperature_c - TEMPERATURE_AMPLITUDE_C * np.cos(
        2 * np.pi * (doy - TEMPERATURE_COLDEST_DOY) / 365.25
    )
    innovations = rng.standard_normal(n) * TEMPERATURE_ANOMALY_SD_C
    innovations[1:] *= np.sqrt(1 - TEMPERATURE_ANOMALY_AR1**2)
    anomaly = np.empty(n)
    anomaly[0] = innovations[0]
    for i in range(1, n):
        anomaly[i] = TEMPERATURE_ANOMALY_AR1 * anomaly[i - 1] + innovations[i]
    temperature = seasonal + anomaly - WET_DAY_COOLING_C * wet
    return pd.DataFrame(
        {"date": days.astype("datetime64[ns]"), "rainfall_mm": rain, "temperature_c": temperature}
    )


def simulate_meteorology(
    seed: int,
    first: np.datetime64,
    last: np.datetime64,
    annual_rainfall_mm: float = 650.0,
    mean_temperature_c: float = 14.2,
) -> pd.DataFrame:
    """Daily rainfall (mm), air temperature (°C) and temperature excess T⁺ (°C).

    Every day from ``first`` to ``last`` inclusive; values are rounded to 0.1 (as published by
    weather services).
    """
    climate = RainClimate.toulouse(annual_rainfall_mm)
    first_year = int(str(np.datetime64(first, "Y")))  # type: ignore[call-overload]
    last_year = int(str(np.datetime64(last, "Y")))  # type: ignore[call-overload]
    years = [
        _one_year(seed, y, climate, mean_temperature_c) for y in range(first_year, last_year + 1)
    ]
    table = pd.concat(years, ignore_index=True)
    keep = (table["date"] >= pd.Timestamp(first)) & (table["date"] <= pd.Timestamp(last))
    table = table.loc[keep].reset_index(drop=True)
    table["rainfall_mm"] = table["rainfall_mm"].round(1)
    table["temperature_c"] = table["temperature_c"].round(1)
    table["temperature_excess_c"] = temperature_excess(table["temperature_c"])
    return table


def soil_moisture_drydown(
    rainfall_mm: np.ndarray,
    temperature_excess_c: np.ndarray,
    theta_r: np.ndarray,
    theta_s: np.ndarray,
    tau_days: np.ndarray,
    depth_mm: np.ndarray,
    et_sensitivity: np.ndarray,
) -> np.ndarray:
    """Daily surface soil moisture (m³/m³) at the end of each day, shape (n_days, n_parcels).

    Exact solution of the drydown ODE for drivers constant over each day:
    θ(t+1) = θ* + (θ(t) − θ*)·exp(−λ), λ = (1 + β·T⁺)/τ, θ* = θr + P/(Z·λ), then capped at
    θs (saturation excess runs off). The first day starts from the middle of [θr, θs].
    """
    rain = np.asarray(rainfall_mm, dtype=float)[:, None]
    tplus = np.asarray(temperature_excess_c, dtype=float)[:, None]
    loss_rate = (1 + et_sensitivity[None, :] * tplus) / tau_days[None, :]
    equilibrium = theta_r[None, :] + rain / (depth_mm[None, :] * loss_rate)
    decay = np.exp(-loss_rate)
    theta = np.empty((rain.shape[0], theta_r.size))
    state = (theta_r + theta_s) / 2
    for day in range(rain.shape[0]):
        state = equilibrium[day] + (state - equilibrium[day]) * decay[day]
        state = np.minimum(state, theta_s)
        theta[day] = state
    return theta
