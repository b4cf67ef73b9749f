"""Sentinel-2 L2A acquisitions: PROSAIL reflectance + exclusive effect + clouds + noise.

Per date, PROSAIL (PROSPECT-D + 4SAIL integrated over the platform's spectral responses) runs
once per management zone at that date's sun/view geometry; the optical exclusive effect is
added; clouds replace and shadows darken the surface signal; then L2A-level noise is added:
Gaussian with σ = σ_abs + σ_rel·ρ (defaults 0.005 + 2 %, the order of the residual
atmospheric-correction error of Sen2Cor/MAJA over land, e.g. Doxani et al. 2018, Remote Sens.
10, 352). Cloudy pixels keep a bright, nearly flat cloud reflectance (not NaN), as in real L2A
products: the mask says which pixels are usable. Reflectances are clipped to [0, 1] and put on
the uint16 L2A grid (1e-4) that the cube stores, so the in-memory cube is the stored one.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr
from tqdm.auto import tqdm

from releo.data.contracts import MASK_CLOUD, MASK_SHADOW, PLATFORM, S2_BANDS, S2_MASK
from releo.data.io import REFLECTANCE_OFFSET, REFLECTANCE_SCALE
from releo.data.simulate.clouds import cloud_cover, cloud_scene
from releo.data.simulate.effects import OPTICAL_BROWNING, OPTICAL_SPECTRUM
from releo.data.simulate.meteo import RainClimate
from releo.data.simulate.random_fields import day_key, keyed_rng
from releo.data.simulate.scene import Scene
from releo.data.spill import Data, Scratch, row_blocks
from releo.physics import prosail_s2_bands

PROSAIL_ARGUMENTS: tuple[str, ...] = (
    *("N", "cab", "car", "cant", "cbrown", "cw", "cm", "lai", "lidfa", "hspot"),
    *("tts", "tto", "psi", "psoil", "rsoil"),
)
"""Positional order of ``prosail_s2_bands``."""


def zone_reflectance(
    canopy: dict[str, np.ndarray],
    date_index: int,
    zones: np.ndarray,
    angles: tuple[float, float, float],
    platform: str,
    batch_size: int,
) -> np.ndarray:
    """PROSAIL S2 bands (n_zones_selected, 10) of ``zones`` at one date and geometry, float32.

    The geometry is the sun zenith, view zenith and relative azimuth, in degrees.

    The inputs are the float32 values the truth and the cube record; PROSAIL runs in float64
    and only its result is rounded to float32. In float32, torch's per-CPU vectorised kernels
    (exp, pow, expint, matmul blocking) and the batch boundaries change the last bits, which
    the uint16 L2A quantisation then turns into different bytes on another machine; float64
    differences of an ulp or two almost never survive the rounding to float32.
    """
    geometry = dict(zip(("tts", "tto", "psi"), angles, strict=True))
    out = np.empty((zones.size, len(S2_BANDS)), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, zones.size, batch_size):
            batch = zones[start : start + batch_size]
            args = []
            for name in PROSAIL_ARGUMENTS:
                values: np.ndarray | np.float32
                if name in geometry:
                    values = np.float32(geometry[name])
                else:
                    layer = canopy[name]  # (n_dates, n_zones) or static (n_zones,)
                    values = layer[date_index, batch] if layer.ndim == 2 else layer[batch]
                values = np.asarray(values, dtype=np.float32).astype(np.float64)
                args.append(torch.as_tensor(values))
            bands = prosail_s2_bands(*args, platform=platform).numpy()
            out[start : start + batch.size] = bands.astype(np.float32)
    return out


def quantise_l2a(reflectance: np.ndarray) -> np.ndarray:
    """float32 reflectance on the uint16 L2A grid, as ``write_cube`` stores it (NaN kept).

    ``open_cube`` reads back exactly these values, so the reference product and any other consumer
    of the in-memory cube see the stored values, not the last bits before quantisation.
    """
    values = np.asarray(reflectance, dtype=np.float64)
    digital = np.round((values - REFLECTANCE_OFFSET) / REFLECTANCE_SCALE)
    # Decoded the way xarray decodes CF packing: dn * scale_factor + add_offset, in float64.
    return (digital * REFLECTANCE_SCALE + REFLECTANCE_OFFSET).astype(np.float32)


def noise_sigma(reflectance: np.ndarray, absolute: float, relative: float) -> np.ndarray:
    """Standard deviation of the L2A noise for a noise-free reflectance."""
    return absolute + relative * np.abs(reflectance)


def simulate_s2(
    scene: Scene, acquisitions: pd.DataFrame, progress: bool = True, scratch: Scratch | None = None
) -> tuple[xr.Dataset, pd.DataFrame]:
    """S2 L2A contract cube for ``acquisitions`` (from ``geometry.s2_acquisitions``).

    Also returns the acquisition table completed with the cloud and shadow cover of each date.
    Each date is made one band at a time, into arrays of ``scratch`` (memory by default).
    """
    config, parcels = scene.config, scene.parcels
    scratch = scratch or Scratch()
    dates = acquisitions["date"].to_numpy().astype("datetime64[D]")
    ny, nx = config.shape
    n = dates.size
    reflectance = [scratch.zeros((n, ny, nx), np.float32) for _ in S2_BANDS]
    masks = scratch.zeros((n, ny, nx), np.uint8)
    covers = np.zeros((n, 2))
    if n:
        canopy = scene.canopy(dates)
        effect = scene.effect(OPTICAL_BROWNING, dates)
        rain = scene.meteo["rainfall_mm"].to_numpy()[scene.day_index(dates)]
    climate = RainClimate.toulouse(config.annual_rainfall_mm)
    amplitude = OPTICAL_SPECTRUM
    parcel_index = parcels.parcel_id - 1
    rows = tqdm(
        list(acquisitions.itertuples(index=False)), desc="S2 L2A", unit="date", disable=not progress
    )
    for i, acq in enumerate(rows):
        day = dates[i]
        cover = cloud_cover(config.seed, day, float(rain[i]), config.cloudiness, climate)
        clouds = cloud_scene(
            config.seed, day, cover, (ny, nx), config.pixel_size_m, acq.sun_zenith, acq.sun_azimuth
        )
        masks[i] = clouds.mask
        covers[i] = (clouds.mask == MASK_CLOUD).mean(), (clouds.mask == MASK_SHADOW).mean()
        lookup = np.zeros((parcels.n_zones, len(S2_BANDS)))
        visible_zones = np.unique(parcels.zone[clouds.mask != MASK_CLOUD])
        if visible_zones.size:  # an overcast date needs no radiative transfer
            angles = (acq.sun_zenith, acq.view_zenith, acq.relative_azimuth)
            lookup[visible_zones] = zone_reflectance(
                canopy, i, visible_zones, angles, acq.platform, config.batch_size
            )
            shift = effect[i][parcel_index]
        # band by band, by bands of rows: the noise is drawn in the order of one draw of the
        # whole (band, y, x) array, which it equals
        rng = keyed_rng(config.seed, "s2_noise", day_key(day))
        for b in range(len(S2_BANDS)):
            for part in row_blocks((ny, nx)):
                surface = np.zeros(parcels.zone[part].shape)
                if visible_zones.size:
                    surface = lookup[parcels.zone[part], b] + amplitude[b] * shift[part]
                observed = clouds.darken(surface, b, part)
                sigma = noise_sigma(observed, config.s2_noise_absolute, config.s2_noise_relative)
                observed = observed + sigma * rng.standard_normal(observed.shape)
                reflectance[b][i, part] = quantise_l2a(np.clip(observed, 0.0, 1.0))

    table = acquisitions.copy()
    table["cloud_cover"] = covers[:, 0]
    table["shadow_cover"] = covers[:, 1]
    data: dict[str, tuple[str | tuple[str, ...], Data]] = {
        band: (("time", "y", "x"), Scratch.data(reflectance[b])) for b, band in enumerate(S2_BANDS)
    }
    data[S2_MASK] = (("time", "y", "x"), Scratch.data(masks))
    for angle in ("sun_zenith", "view_zenith", "relative_azimuth"):
        data[angle] = ("time", acquisitions[angle].to_numpy(dtype=np.float32))
    ds = xr.Dataset(
        data,
        coords={
            "time": acquisitions["date"].to_numpy().astype("datetime64[ns]"),
            "y": scene.grid.y,
            "x": scene.grid.x,
            PLATFORM: ("time", acquisitions["platform"].to_numpy().astype(str)),
        },
    )
    for band in S2_BANDS:
        ds[band].attrs.update(units="1", long_name=f"{band} bottom-of-atmosphere reflectance")
    ds[S2_MASK].attrs.update(
        long_name="cloud/shadow mask",
        flag_values=[0, 1, 2, 3],
        flag_meanings="clear cloud shadow no_data",
    )
    for angle in ("sun_zenith", "view_zenith", "relative_azimuth"):
        ds[angle].attrs.update(units="degree")
    ds.attrs.update(
        title="Simulated Sentinel-2 L2A (releo scene simulator)",
        noise=f"gaussian sigma = {config.s2_noise_absolute} + {config.s2_noise_relative} * rho",
    )
    return ds.rio.write_crs(config.crs), table
