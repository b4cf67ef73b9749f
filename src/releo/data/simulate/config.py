"""Parameters of a simulated site: extent, period, revisits, cloudiness, noise and seed.

Every stochastic element of the simulator is keyed by ``seed`` (and by date, field or year),
so the same configuration always yields the same site, and a longer period only adds dates.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from releo.data.contracts import LAND_COVER_CLASSES, PIXEL_SIZE_M

DEFAULT_CLASS_WEIGHTS: dict[str, float] = {
    "winter_wheat": 0.24,
    "maize": 0.17,
    "sunflower": 0.15,
    "grassland": 0.18,
    "broadleaf_forest": 0.12,
    "bare_soil": 0.08,
    "water": 0.06,
}
"""Share of fields per land-cover class: a Lauragais-like mix of cereals, summer crops,
meadows, woods, bare/built plots and gravel-pit lakes near Toulouse."""


class SimulationConfig(BaseModel):
    """Everything that defines a simulated site (defaults: 2 km × 2 km near Toulouse, 2025)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = Field(42, ge=0, description="master seed of every random draw")
    crs: str = Field("EPSG:32631", description="projected CRS of the grid (UTM 31N)")
    origin_x: float = Field(360_000.0, description="west edge of the site, m (CRS units)")
    origin_y: float = Field(4_830_000.0, description="north edge of the site, m (CRS units)")
    width_m: float = Field(2_000.0, gt=0, description="east-west extent, m")
    height_m: float = Field(2_000.0, gt=0, description="north-south extent, m")
    pixel_size_m: float = Field(PIXEL_SIZE_M, gt=0, description="pixel size, m")
    start_date: date = Field(date(2025, 1, 1), description="first day of the period")
    end_date: date = Field(date(2025, 12, 31), description="last day of the period (inclusive)")
    spinup_days: int = Field(
        365, ge=30, description="days of meteorology run before start_date to spin up the ODEs"
    )

    s2_revisit_days: int = Field(5, ge=1, description="S2A+S2B combined revisit, days")
    s1_revisit_days: int = Field(6, ge=1, description="S1 revisit (alternating passes), days")
    cloudiness: float = Field(0.35, ge=0.0, le=1.0, description="mean S2 cloud cover fraction")

    mean_field_area_ha: float = Field(3.0, gt=0.05, description="mean parcel area, ha")
    class_weights: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_CLASS_WEIGHTS),
        description="relative frequency of each land-cover class among parcels",
    )
    within_field_levels: int = Field(
        24, ge=1, le=255, description="quantisation levels of the within-field vigour index"
    )

    annual_rainfall_mm: float = Field(650.0, gt=0, description="climatological rainfall, mm/yr")
    mean_temperature_c: float = Field(14.2, description="climatological mean air temperature")

    s2_noise_absolute: float = Field(0.005, ge=0, description="L2A noise σ, reflectance units")
    s2_noise_relative: float = Field(0.02, ge=0, description="L2A noise σ, fraction of signal")
    s1_enl: float = Field(4.4, gt=0, description="equivalent number of looks of the GRD speckle")

    survey_campaigns: int = Field(4, ge=0, description="field campaigns per growing season")
    survey_points: int = Field(40, ge=1, description="LAI measurements per campaign")
    drop_days: int = Field(60, ge=1, description="days added by each data drop")
    batch_size: int = Field(1024, ge=1, description="PROSAIL evaluations per batch")

    @field_validator("class_weights")
    @classmethod
    def _known_classes(cls, weights: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(weights) - set(LAND_COVER_CLASSES))
        if unknown:
            raise ValueError(f"unknown land-cover classes {unknown}; known: {LAND_COVER_CLASSES}")
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError("class weights must be >= 0 with a positive sum")
        return weights

    @model_validator(mode="after")
    def _consistent(self) -> SimulationConfig:
        if self.end_date < self.start_date:
            raise ValueError(f"end_date {self.end_date} is before start_date {self.start_date}")
        for name, extent in (("width_m", self.width_m), ("height_m", self.height_m)):
            n = extent / self.pixel_size_m
            if abs(n - round(n)) > 1e-9 or round(n) < 2:
                raise ValueError(f"{name}={extent} is not a multiple (>= 2) of the pixel size")
        return self

    @property
    def shape(self) -> tuple[int, int]:
        """Grid shape (rows, columns)."""
        return round(self.height_m / self.pixel_size_m), round(self.width_m / self.pixel_size_m)

    @property
    def spinup_start(self) -> date:
        """First day integrated by the soil-moisture and exclusive-effect ODEs."""
        return self.start_date - timedelta(days=self.spinup_days)

    def drop_period(self, drop: int) -> tuple[date, date]:
        """First and last day added by data drop ``drop`` (1, 2, ...)."""
        if drop < 1:
            raise ValueError(f"drop numbers start at 1, got {drop}")
        first = self.end_date + timedelta(days=(drop - 1) * self.drop_days + 1)
        return first, first + timedelta(days=self.drop_days - 1)
