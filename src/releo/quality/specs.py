"""What each quality gate checks: every threshold, derived from the data contracts, in one place.

``summaries`` turns data into tables using these specs and ``suites`` turns the specs into
Great Expectations suites, so a range changed here changes both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from releo.data import contracts as c

RESOLUTION_TOLERANCE_M = 0.01
"""Pixel spacing may differ from ``PIXEL_SIZE_M`` by float rounding only, not by a grid."""
MAX_NAN_CLEAR_FRACTION = 0.0
"""Fraction of clear (mask == 0) pixels allowed to be NaN: reflectance is NaN only under mask."""
CLEAR_OUTLIER_SHARE = 0.001
"""Share of clear pixels per date and band left out at each end of the min/max a range is
judged on: real L2A marks a few bright or dark pixels clear (Sen2Cor misses a cloud edge or a
glint; 1–3 of ~4,000 clear pixels on some real Belgian dates), which is not a broken cube."""
SAMPLE_SIZE = 4000
"""Pixels drawn (without replacement) from a cube for the pixel-level suite."""
SAMPLE_SEED = 0
"""Fixed seed: the same cube always gives the same sample, so reruns are comparable."""
PARTIAL_UNEXPECTED_COUNT = 5
"""Offending values quoted per failed expectation."""

# Plausibility: wrong data inside the ranges (unit mix-ups, exchanged bands, unmasked clouds).
# Judged per date on a strided subset of each date's pixels, taken from the blocks the band
# statistics already read (no extra pass over the cube).
PLAUSIBILITY_PIXELS = 4096
"""Pixels per date (a regular stride over the image) the distribution and spectra checks use."""
MIN_JUDGED_PIXELS = 100
"""A date with fewer clear (S2) or finite (S1) subset pixels gets no share/median (NaN, which
the expectations skip): 16 clear pixels on a cloudy real date are one cloud edge, not a rate."""
S1_MIN_SPREAD_DB = 1.0
"""Per-date p90 - p10 of σ0 (dB) must reach this: real land spreads 4.7-20 dB (speckle, fields,
water); linear power read as dB spreads < 0.6 (real Belgian and simulated series)."""
MAX_ZERO_SPECTRUM_SHARE = 0.01
"""Share of clear pixels per date whose ten bands are all exactly 0 (nodata written as 0 with a
clear mask); none on any valid site."""
NDVI_EXCHANGE_THRESHOLD = -0.2
"""NDVI (B08 - B04)/(B08 + B04) below this on a clear land pixel is red above NIR: soils are
above 0, vegetation far above; only water (and swapped B04/B08) go below."""
WATER_SWIR_MAX = 0.05
"""B11 and B12 both below this: a water-like spectrum, whose negative NDVI is real."""
MAX_NEGATIVE_NDVI_SHARE = 0.03
"""Share of clear non-water pixels per date with NDVI < ``NDVI_EXCHANGE_THRESHOLD``: valid
sites reach 0.0056 (simulated) and 0.001 (real Belgian); B04/B08 swapped gives 0.05-0.54."""
HAZE_BLUE_MIN = 0.2
"""B02 above this on a flat visible spectrum is a cloud or thick haze, not land."""
HAZE_FLATNESS = 0.02
""""Blue highest" allows this much: B02 >= B03 - 0.02 and B03 >= B04 - 0.02 (clouds are flat)."""
SNOW_NDSI_MIN = 0.4
"""(B03 - B11)/(B03 + B11) above this is snow (bright and flat too, but dark in SWIR): real L2A
may mark it clear, and it is not a cloud."""
MAX_HAZE_SHARE = 0.5
"""Share of clear pixels per date with a cloud/haze spectrum: real Belgian dates reach 0.36 (an
87 %-cloudy date whose 13 % "clear" are cloud edges Sen2Cor missed); a cloud cover marked clear
gives about its cover."""
MAX_MEAN_HAZE_SHARE = 0.1
"""Mean of that share over the dates judged: 0.024 and 0.014 on the real Belgian series."""
SATURATED_REFLECTANCE = 0.999
"""A clear band at or above this is saturated (clipped at 1): clear land never gets there."""
MAX_SATURATED_SHARE = 0.01
"""Share of clear pixels per date with any band saturated: real dates reach 0.0008 (snow)."""
SUN_ZENITH_TOLERANCE_DEG = 5.0
"""Allowed distance (degrees) of sun_zenith outside the zenith range the sun can have at the
site's centre on that day in the overpass window: radians (0.3-1.4) miss it by 20° or more
outside the tropics."""
OVERPASS_HOUR_ANGLE_DEG = 45.0
"""The overpass window: within 3 h of local solar noon (S2 crosses at 10:30; swath edges and
high latitudes shift it by less than an hour)."""

FLOAT_DTYPES: tuple[str, ...] = ("float32", "float64")
INTEGER_DTYPES: tuple[str, ...] = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")
NUMERIC_DTYPES: tuple[str, ...] = FLOAT_DTYPES + INTEGER_DTYPES


@dataclass(frozen=True)
class Range:
    """An admissible interval, inclusive unless said otherwise."""

    lo: float
    hi: float
    strict_min: bool = False
    strict_max: bool = False

    def __str__(self) -> str:
        left = "(" if self.strict_min else "["
        right = ")" if self.strict_max else "]"
        return f"{left}{self.lo:g}, {self.hi:g}{right}"


REFLECTANCE = Range(*c.REFLECTANCE_RANGE)
BACKSCATTER_DB = Range(*c.BACKSCATTER_DB_RANGE)
INCIDENCE = Range(*c.INCIDENCE_RANGE)
SUN_ZENITH = Range(*c.SUN_ZENITH_RANGE, strict_max=True)  # the sun is above the horizon
VIEW_ZENITH = Range(*c.VIEW_ZENITH_RANGE)
RELATIVE_AZIMUTH = Range(*c.RELATIVE_AZIMUTH_RANGE)
LAI = Range(*c.LAI_RANGE)
LAI_STD = Range(0.0, c.LAI_RANGE[1], strict_min=True)  # an uncertainty of 0 is not a measurement
# a real orbit number, or a negative "unknown orbit" slot code (0 is neither)
S1_ORBIT_CODE = Range(c.S1_UNKNOWN_ORBIT_SLOTS[0], c.S1_RELATIVE_ORBIT_RANGE[1])
S2_MASK_RANGE = Range(min(c.S2_MASK_VALUES), max(c.S2_MASK_VALUES))
RESOLUTION = Range(c.PIXEL_SIZE_M - RESOLUTION_TOLERANCE_M, c.PIXEL_SIZE_M + RESOLUTION_TOLERANCE_M)
S1_MEDIAN_DB = {"VV": Range(-30.0, -2.0), "VH": Range(-35.0, -5.0)}
"""Per-date median σ0 (dB) over finite pixels: real land is VV -6…-16, VH -14…-24 (water and
wet snow lower, towns higher); linear power read as dB gives 0.02-0.2."""


@dataclass(frozen=True)
class CubeSpec:
    """The contract of a (time, y, x) cube as the gates see it."""

    contract: str
    pixel_ranges: Mapping[str, Range]
    """(time, y, x) variables and their admissible range, on usable observations only."""
    pixel_dtypes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    mask: str | None = None
    mask_values: Mapping[int, str] = field(default_factory=dict)
    """Mask value -> class name (the acquisitions table has a ``<name>_fraction`` per class)."""
    judged_where_clear: tuple[str, ...] = ()
    """Variables judged only where the mask is clear (range, and NaN is an error there); under
    the mask (cloud, shadow, no data) they may hold anything: real L2A exceeds 1 under clouds
    and snow, and no data is 0 or -10000. Other float variables are judged where finite."""
    time_ranges: Mapping[str, Range] = field(default_factory=dict)
    """Per-acquisition (time,) numeric variables or coordinates and their range."""
    time_sets: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Per-acquisition (time,) categorical variables or coordinates and their values."""
    time_integer: tuple[str, ...] = ()
    check_resolution: bool = True
    median_ranges: Mapping[str, Range] = field(default_factory=dict)
    """Per-date median (and ``S1_MIN_SPREAD_DB`` spread) of these variables: units, not range."""
    clear_spectra: bool = False
    """Judge the clear spectra per date: all-zero, red above NIR, cloud/haze, saturated."""
    sun_zenith: str | None = None
    """Per-date sun zenith judged against the date and the site's latitude."""

    @property
    def plausibility(self) -> bool:
        """Whether the contract has plausibility checks."""
        return bool(self.median_ranges) or self.clear_spectra or self.sun_zenith is not None

    @property
    def pixel_vars(self) -> tuple[str, ...]:
        """Variables with per-pixel ranges."""
        return tuple(self.pixel_ranges)

    @property
    def time_vars(self) -> tuple[str, ...]:
        """Per-acquisition variables."""
        return (*self.time_ranges, *self.time_sets)


S2_CUBE = CubeSpec(
    contract="s2_cube",
    pixel_ranges={**dict.fromkeys(c.S2_BANDS, REFLECTANCE), c.S2_MASK: S2_MASK_RANGE},
    pixel_dtypes={**dict.fromkeys(c.S2_BANDS, ("float32",)), c.S2_MASK: ("uint8",)},
    mask=c.S2_MASK,
    mask_values=dict(zip(c.S2_MASK_VALUES, ("clear", "cloud", "shadow", "nodata"), strict=True)),
    judged_where_clear=c.S2_BANDS,
    time_ranges={
        "sun_zenith": SUN_ZENITH,
        "view_zenith": VIEW_ZENITH,
        "relative_azimuth": RELATIVE_AZIMUTH,
    },
    time_sets={c.PLATFORM: c.S2_PLATFORMS},
    clear_spectra=True,
    sun_zenith="sun_zenith",
)

S1_CUBE = CubeSpec(
    contract="s1_cube",
    pixel_ranges={**dict.fromkeys(c.S1_POLARISATIONS, BACKSCATTER_DB), c.S1_INCIDENCE: INCIDENCE},
    # Any float: an integer σ0 is a scaled product, not dB.
    pixel_dtypes=dict.fromkeys((*c.S1_POLARISATIONS, c.S1_INCIDENCE), FLOAT_DTYPES),
    time_ranges={c.S1_RELATIVE_ORBIT: S1_ORBIT_CODE},
    time_sets={
        c.S1_ORBIT_DIRECTION: c.S1_ORBIT_DIRECTIONS,
        c.PLATFORM: (*c.S1_PLATFORMS, c.UNKNOWN_PLATFORM),
    },
    time_integer=(c.S1_RELATIVE_ORBIT,),
    median_ranges=S1_MEDIAN_DB,
)

REFERENCE_PRODUCT = CubeSpec(
    contract="reference_product",
    pixel_ranges={c.REFERENCE_LAI: LAI},  # NaN (gaps under clouds) is allowed
    pixel_dtypes={c.REFERENCE_LAI: FLOAT_DTYPES},
    # Operational products come at their own resolution (SNAP: 20 m); only the CRS is contractual.
    check_resolution=False,
)

SURVEY_NUMERIC = ("x", "y", "lai", "lai_std")
SURVEY_TEXT = ("crs", "land_cover", "method", "campaign")

PIXEL_TABLE_OPTIONAL_RANGES: Mapping[str, Range] = {
    **dict.fromkeys(c.S1_POLARISATIONS, BACKSCATTER_DB),
    c.S1_INCIDENCE: INCIDENCE,
}
"""Optional SAR columns of a pixel table, checked when present."""
PIXEL_TABLE_ANGLES: Mapping[str, Range] = {
    "sun_zenith": SUN_ZENITH,
    "view_zenith": VIEW_ZENITH,
    "relative_azimuth": RELATIVE_AZIMUTH,
}
