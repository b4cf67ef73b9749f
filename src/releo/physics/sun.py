"""The sun's declination over the year: what the simulator's geometry and the gates share."""

from __future__ import annotations

import numpy as np


def solar_declination(day_of_year: float | np.ndarray) -> float | np.ndarray:
    """Solar declination (radians) on ``day_of_year`` (1 = 1 January).

    Spencer's (1971) Fourier series, within ±0.05° of the ephemeris.
    """
    gamma = 2 * np.pi * (np.asarray(day_of_year) - 1) / 365.0
    return (
        0.006918
        - 0.399912 * np.cos(gamma)
        + 0.070257 * np.sin(gamma)
        - 0.006758 * np.cos(2 * gamma)
        + 0.000907 * np.sin(2 * gamma)
        - 0.002697 * np.cos(3 * gamma)
        + 0.00148 * np.sin(3 * gamma)
    )
