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

    @property
    def pixel_vars(self) -> tuple[str, ...]:
        return tuple(self.pixel_ranges)

    @property
    def time_vars(self) -> tuple[str, ...]:
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
