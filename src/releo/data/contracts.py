"""The data contracts of releo: variable names, units and physical ranges.

Every reader, the simulator and the quality gates speak these names, so a real cube and a
simulated one are interchangeable downstream.
"""

from __future__ import annotations

S2_BANDS: tuple[str, ...] = ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12")
"""Bottom-of-atmosphere reflectance bands of an S2 L2A cube, in this order everywhere."""

S2_ANGLES: tuple[str, ...] = ("sun_zenith", "view_zenith", "relative_azimuth")
"""Per-acquisition geometry of an S2 cube (dim ``time``), degrees."""

S2_MASK = "mask"
"""Cloud/shadow mask of an S2 cube (time, y, x), uint8: 0 clear, 1 cloud, 2 shadow, 3 no data."""
MASK_CLEAR, MASK_CLOUD, MASK_SHADOW, MASK_NODATA = 0, 1, 2, 3

S1_POLARISATIONS: tuple[str, ...] = ("VV", "VH")
"""Backscatter σ0 of an S1 cube (time, y, x), dB."""
S1_INCIDENCE = "incidence_angle"
"""Local incidence angle of an S1 cube (time, y, x), degrees."""
S1_ORBIT_DIRECTION = "orbit_direction"
"""Per-acquisition orbit direction (dim ``time``): "ascending" or "descending"."""
S1_RELATIVE_ORBIT = "relative_orbit"
"""Per-acquisition relative orbit number (dim ``time``), 1..175."""

PLATFORM = "platform"
"""Per-acquisition platform coordinate (dim ``time``): "S2A"/"S2B" or "S1A"/"S1C"."""

SURVEY_COLUMNS: tuple[str, ...] = (
    "point_id",
    "date",
    "x",
    "y",
    "crs",
    "land_cover",
    "lai",
    "lai_std",
    "method",
    "campaign",
)
"""Columns of a field-survey table: one row per LAI measurement."""

PIXEL_TABLE_COLUMNS: tuple[str, ...] = ("point_id", "date", *S2_BANDS, *S2_ANGLES, "cloud_mask")
"""Required columns of a pixel time-series table (optional: x, y, crs, VV, VH, incidence_angle)."""

LAND_COVER_CLASSES: tuple[str, ...] = (
    "winter_wheat",
    "maize",
    "sunflower",
    "grassland",
    "broadleaf_forest",
    "bare_soil",
    "water",
)
"""Land-cover classes, indexed by their position (the ``land_cover`` raster stores the index)."""

# Physically admissible ranges (inclusive). Gates reject values outside them.
REFLECTANCE_RANGE = (0.0, 1.0)
BACKSCATTER_DB_RANGE = (-50.0, 30.0)
"""σ0 a real product may hold: below the noise floor after speckle, up to the double bounce of
buildings and corner reflectors (+11 dB VV on real Belgian farmland with a village)."""
SUN_ZENITH_RANGE = (0.0, 90.0)
VIEW_ZENITH_RANGE = (0.0, 15.0)
RELATIVE_AZIMUTH_RANGE = (0.0, 360.0)
INCIDENCE_RANGE = (20.0, 50.0)
LAI_RANGE = (0.0, 15.0)
PIXEL_SIZE_M = 10.0

# Per-acquisition vocabularies (added for the quality gates; real data may carry any of these).
S2_PLATFORMS: tuple[str, ...] = ("S2A", "S2B", "S2C")
S1_PLATFORMS: tuple[str, ...] = ("S1A", "S1B", "S1C")
S1_ORBIT_DIRECTIONS: tuple[str, ...] = ("ascending", "descending")
S1_RELATIVE_ORBIT_RANGE = (1, 175)
S1_UNKNOWN_ORBIT_SLOTS = (-175, -1)
"""``relative_orbit`` = −k: orbit number not in the product, k-th (direction, UTC time-of-day)
acquisition slot of the site (see :mod:`releo.data.sources.s1`); nothing downstream needs the
number, only that passes of one orbit share a code."""
UNKNOWN_PLATFORM = "unknown"
"""``platform`` of S1 acquisitions whose product does not name it (S2 products must: SNAP and
PROSAIL use each platform's spectral responses)."""
REFERENCE_LAI = "lai"
"""LAI variable of a reference-product cube (time, y, x), m²/m², NaN under clouds."""
S2_MASK_VALUES: tuple[int, ...] = (MASK_CLEAR, MASK_CLOUD, MASK_SHADOW, MASK_NODATA)
PIXEL_CLOUD_MASK_VALUES: tuple[int, ...] = (0, 1)
"""``cloud_mask`` of a pixel time-series table: 0 clear, 1 cloudy (or shadow, or no data)."""
DATE_FORMAT_KEY = "date_format"
"""Column-map key naming how a table writes its dates (``strftime`` codes, e.g. ``%d/%m/%Y``):
required when they are day/month-first text (``06/01/2025``), which is never guessed."""
