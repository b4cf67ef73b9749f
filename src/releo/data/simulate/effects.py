"""Exclusive effects: what the S2 and S1 signals contain that PROSAIL and the WCM do not.

Each effect is a scalar state driven by the daily meteorology through a known ODE, polynomial
in the state and the drivers with three terms, so sparse regression (SINDy; Brunton, Proctor &
Kutz 2016, PNAS 113, 3932–3937) with a degree-2 library on (state, P, T⁺) can recover it:

* optical browning/dust index ``b`` (dimensionless): builds up with warmth (heat/dry-matter
  browning, dust and residue deposition), relaxes, and is washed off by rain,
  db/dt = a·T⁺ − k·b − w·P·b; it adds ``susceptibility · b · amplitude(band)`` to the L2A
  reflectance, a brown spectrum rising from blue to SWIR that PROSAIL's leaf pigments cannot
  mimic on a green canopy;
* SAR wetness/structure term ``r`` (dB): rain wets the litter and the soil surface and slakes
  its aggregates, the effect relaxes over about two weeks, faster when warm (evaporation),
  dr/dt = c·P − k₂·r − e·T⁺·r; it adds ``susceptibility · r`` dB to σ0 (both polarisations),
  independently of the WCM's soil-moisture term.

The drivers are the ``meteo.csv`` columns ``rainfall_mm`` (P, mm/day) and
``temperature_excess_c`` (T⁺, °C); time is in days. Both ODEs are linear in their state with
drivers held constant over each day, so they are integrated exactly:
x(d) = x* + (x(d−1) − x*)·exp(−λ), with dx/dt = s − λ·x over day d and x* = s/λ; the stored
value of day d is the state at the end of that day.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from releo.data.contracts import S2_BANDS

DRIVER_COLUMNS: dict[str, str] = {"P": "rainfall_mm", "Tplus": "temperature_excess_c"}
"""ODE driver symbols → meteo.csv columns."""


@dataclass(frozen=True)
class Term:
    """One monomial of an ODE right-hand side: ``coefficient · Π symbol**power``."""

    coefficient: float
    factors: Mapping[str, int]

    @property
    def label(self) -> str:
        """The term as text, e.g. ``T^2*b``."""
        parts = [s if p == 1 else f"{s}^{p}" for s, p in sorted(self.factors.items())]
        return "*".join(parts) if parts else "1"


@dataclass(frozen=True)
class PlantedEquation:
    """A known ODE dx/dt = Σ terms, linear in the state ``x``, driven by daily meteorology."""

    name: str
    modality: str
    state: str
    units: str
    description: str
    terms: tuple[Term, ...]
    state_variable: str  # truth-cube variable (dim time) holding the daily state
    pixel_variable: str  # truth-cube variable (time, y, x): susceptibility × state
    drivers: Mapping[str, str] = field(default_factory=lambda: dict(DRIVER_COLUMNS))

    def __post_init__(self) -> None:
        for term in self.terms:
            unknown = set(term.factors) - {self.state, *self.drivers}
            if unknown or term.factors.get(self.state, 0) > 1:
                raise ValueError(f"{self.name}: term {term.label} is not linear in the state")

    def source_and_rate(self, drivers: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """dx/dt = source − rate·x for each day, from driver arrays keyed by symbol."""
        n = len(next(iter(drivers.values())))
        source, rate = np.zeros(n), np.zeros(n)
        for term in self.terms:
            value = np.full(n, term.coefficient)
            for symbol, power in term.factors.items():
                if symbol != self.state:
                    value = value * np.asarray(drivers[symbol], dtype=float) ** power
            if self.state in term.factors:
                rate -= value
            else:
                source += value
        return source, rate

    def rhs(self, state: np.ndarray, drivers: Mapping[str, np.ndarray]) -> np.ndarray:
        """dx/dt evaluated term by term (for checks and for SINDy comparisons)."""
        total = np.zeros(np.broadcast(state, *drivers.values()).shape)
        values = {self.state: state, **drivers}
        for term in self.terms:
            product = np.full(total.shape, term.coefficient)
            for symbol, power in term.factors.items():
                product = product * np.asarray(values[symbol], dtype=float) ** power
            total += product
        return total

    def integrate(self, drivers: Mapping[str, np.ndarray], initial: float = 0.0) -> np.ndarray:
        """Exact daily integration; element d is the state at the end of day d."""
        source, rate = self.source_and_rate(drivers)
        if np.any(rate <= 0):
            raise ValueError(f"{self.name}: the relaxation rate must stay positive")
        equilibrium = source / rate
        decay = np.exp(-rate)
        out = np.empty(source.size)
        state = float(initial)
        for day in range(source.size):
            state = equilibrium[day] + (state - equilibrium[day]) * decay[day]
            out[day] = state
        return out

    def equation(self) -> str:
        """Human-readable form, e.g. ``db/dt = 0.003*Tplus - 0.06*b - 0.03*P*b``."""
        pieces: list[str] = []
        for term in self.terms:
            magnitude = f"{abs(term.coefficient):g}*{term.label}"
            if pieces:
                pieces.append(f"{'-' if term.coefficient < 0 else '+'} {magnitude}")
            else:
                pieces.append(f"{'-' if term.coefficient < 0 else ''}{magnitude}")
        return f"d{self.state}/dt = {' '.join(pieces)}"

    def as_dict(self) -> dict:
        """Machine-readable record for site.json."""
        return {
            "name": self.name,
            "modality": self.modality,
            "state": self.state,
            "units": self.units,
            "description": self.description,
            "equation": self.equation(),
            "time_unit": "day",
            "drivers": dict(self.drivers),
            "terms": [
                {"term": t.label, "coefficient": t.coefficient, "factors": dict(t.factors)}
                for t in self.terms
            ],
            "state_variable": self.state_variable,
            "pixel_variable": self.pixel_variable,
            "integration": (
                "exact exponential integrator with drivers constant over each day; the value "
                "stored for day d is the state at the end of day d, i.e. "
                "x[d] = x*[d] + (x[d-1] - x*[d]) * exp(-rate[d]) with dx/dt = source - rate*x"
            ),
        }


OPTICAL_BROWNING = PlantedEquation(
    name="optical_browning",
    modality="S2",
    state="b",
    units="1",
    description="browning/dust/residue index, added to S2 reflectance as "
    "susceptibility * b * OPTICAL_BAND_AMPLITUDE[band]",
    terms=(
        Term(0.004, {"Tplus": 1}),
        Term(-0.06, {"b": 1}),
        Term(-0.03, {"P": 1, "b": 1}),
    ),
    state_variable="optical_effect_state",
    pixel_variable="optical_effect",
)

SAR_WETNESS = PlantedEquation(
    name="sar_wetness_structure",
    modality="S1",
    state="r",
    units="dB",
    description="surface wetness/structure backscatter term, added in dB to VV and VH as "
    "susceptibility * r",
    terms=(
        Term(0.04, {"P": 1}),
        Term(-0.08, {"r": 1}),
        Term(-0.004, {"Tplus": 1, "r": 1}),
    ),
    state_variable="sar_effect_state",
    pixel_variable="sar_effect_db",
)

PLANTED_EQUATIONS: tuple[PlantedEquation, ...] = (OPTICAL_BROWNING, SAR_WETNESS)

OPTICAL_BAND_AMPLITUDE: dict[str, float] = dict(
    zip(
        S2_BANDS,
        (0.018, 0.028, 0.038, 0.043, 0.045, 0.046, 0.047, 0.047, 0.050, 0.043),
        strict=True,
    )
)
"""Reflectance added per unit of susceptibility·b: a dry-brown spectrum (dust, straw, dead
leaves) rising from blue to SWIR."""
OPTICAL_SPECTRUM: np.ndarray = np.array([OPTICAL_BAND_AMPLITUDE[b] for b in S2_BANDS])
"""The same spectrum as an array in the order of ``S2_BANDS``."""
