"""Spatially coherent clouds and their shadows for each Sentinel-2 acquisition.

Cover fraction per date: a mixture of clear dates (probability (1 − c)²), overcast dates (c²)
and partly cloudy dates (uniform cover), whose mean is exactly the configured cloudiness c.
It is tied to the day's rainfall through a Gaussian copula (rainy days are cloudier) without
changing that distribution. The cloud field is a smooth Gaussian random field (cumulus-like
cells a few hundred metres across) thresholded at the quantile giving the day's cover on the
site. Shadows are the clouds projected on the ground away from the sun: a pixel is shadowed
when the point ``h·tan(θs)`` towards the sun azimuth is cloudy (cloud-base height ``h``), so
clouds just outside the site can shade it. View parallax is neglected (near-nadir views).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from releo.data.contracts import MASK_CLEAR, MASK_CLOUD, MASK_SHADOW, S2_BANDS
from releo.data.simulate.meteo import RainClimate
from releo.data.simulate.random_fields import day_key, gaussian_random_field, keyed_rng

RAIN_CLOUD_CORRELATION = 0.6
"""Gaussian-copula correlation between daily rain and cloud cover."""
CLOUD_CELL_M = (150.0, 400.0)
CLOUD_BASE_M = (800.0, 2500.0)
CLOUD_SPECTRAL_SHAPE = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.99, 0.98, 0.98, 0.8, 0.6])
"""Thick water clouds are white in the VNIR and darker in the SWIR (droplet absorption)."""
SHADOW_TRANSMISSION = np.array([0.55, 0.45, 0.40, 0.37, 0.35, 0.34, 0.33, 0.33, 0.30, 0.30])
"""Fraction of reflected light left in a full shadow (diffuse sky light only, bluer)."""
assert CLOUD_SPECTRAL_SHAPE.size == SHADOW_TRANSMISSION.size == len(S2_BANDS)


def cover_quantile(u: np.ndarray | float, cloudiness: float) -> np.ndarray:
    """Inverse CDF of the per-date cover mixture (clear, partial uniform, overcast)."""
    u = np.asarray(u, dtype=float)
    p_clear, p_overcast = (1 - cloudiness) ** 2, cloudiness**2
    partial = 1 - p_clear - p_overcast
    cover = np.where(u >= 1 - p_overcast, 1.0, 0.0)
    if partial > 0:
        inside = (u > p_clear) & (u < 1 - p_overcast)
        cover = np.where(inside, (u - p_clear) / partial, cover)
    return cover


def cloud_cover(
    seed: int, day: np.datetime64, rainfall_mm: float, cloudiness: float, climate: RainClimate
) -> float:
    """Cloud cover fraction of the site on ``day`` (0 clear … 1 overcast)."""
    rng = keyed_rng(seed, "cloud_cover", day_key(day))
    month = int(np.datetime64(day, "M").astype(int) % 12 + 1)  # type: ignore[call-overload]
    lower, upper = climate.cdf(np.array([rainfall_mm]), np.array([month]))
    u_rain = lower[0] + (upper[0] - lower[0]) * rng.random()
    z_rain = stats.norm.ppf(np.clip(u_rain, 1e-9, 1 - 1e-9))
    z = RAIN_CLOUD_CORRELATION * z_rain + np.sqrt(1 - RAIN_CLOUD_CORRELATION**2) * rng.normal()
    return float(cover_quantile(stats.norm.cdf(z), cloudiness))


@dataclass(frozen=True)
class CloudScene:
    """Mask (0 clear, 1 cloud, 2 shadow) and radiometry of one acquisition's clouds."""

    mask: np.ndarray  # (ny, nx) uint8
    cloud_reflectance: np.ndarray  # (ny, nx) brightness of cloudy pixels (0 elsewhere)
    shadow_strength: float  # 1 = only diffuse light left in shadows

    def darken(self, reflectance: np.ndarray, band: int, rows: slice = slice(None)) -> np.ndarray:
        """Cloud brightness and shadow darkening applied to one band's surface reflectance.

        ``reflectance`` is that of S2 band number ``band`` at the image's ``rows``.
        """
        mask = self.mask[rows]
        factor = 1 - self.shadow_strength * (1 - SHADOW_TRANSMISSION[band])
        out = np.where(mask == MASK_SHADOW, reflectance * factor, reflectance)
        clouds = self.cloud_reflectance[rows] * CLOUD_SPECTRAL_SHAPE[band]
        return np.where(mask == MASK_CLOUD, clouds, out)


def cloud_scene(
    seed: int,
    day: np.datetime64,
    cover: float,
    shape: tuple[int, int],
    pixel_size_m: float,
    sun_zenith_deg: float,
    sun_azimuth_deg: float,
) -> CloudScene:
    """Clouds and shadows over the site for one date (deterministic for (seed, day))."""
    rng = keyed_rng(seed, "clouds", day_key(day))
    cell_px = rng.uniform(*CLOUD_CELL_M) / pixel_size_m
    base_height = rng.uniform(*CLOUD_BASE_M)
    shadow_strength = rng.uniform(0.75, 0.95)
    # Offset (rows, cols) from a ground pixel to the cloud that shades it: towards the sun.
    reach = base_height * np.tan(np.deg2rad(sun_zenith_deg)) / pixel_size_m
    d_col = round(reach * np.sin(np.deg2rad(sun_azimuth_deg)))
    d_row = round(-reach * np.cos(np.deg2rad(sun_azimuth_deg)))  # north = up = −row
    ny, nx = shape
    field = gaussian_random_field(rng, (ny + abs(d_row), nx + abs(d_col)), cell_px)
    r0, c0 = max(0, -d_row), max(0, -d_col)  # the site's corner inside the extended field
    site = field[r0 : r0 + ny, c0 : c0 + nx]
    shading = field[r0 + d_row : r0 + d_row + ny, c0 + d_col : c0 + d_col + nx]
    if cover <= 0:
        threshold = np.inf
    elif cover >= 1:
        threshold = -np.inf
    else:
        threshold = float(np.quantile(site, 1 - cover))
    cloud = site > threshold
    shadow = (shading > threshold) & ~cloud
    mask = np.full(shape, MASK_CLEAR, dtype=np.uint8)
    mask[shadow] = MASK_SHADOW
    mask[cloud] = MASK_CLOUD
    # Brightness grows with the optical thickness, i.e. with depth above the threshold.
    depth = site - (threshold if np.isfinite(threshold) else site.min() - 1.0)
    brightness = np.where(cloud, 0.3 + 0.5 * (1 - np.exp(-1.2 * np.maximum(depth, 0))), 0.0)
    return CloudScene(mask, brightness, float(shadow_strength))
