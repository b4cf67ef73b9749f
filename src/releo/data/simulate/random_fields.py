"""Keyed random streams and smooth Gaussian random fields.

Each random quantity of the simulator draws from its own stream, keyed by the master seed, a
stream name and integers such as a date ordinal or a field id. A draw therefore never depends
on how many other draws were made before it: extending the period adds dates without changing
the existing ones, which is what makes data drops seamless.
"""

from __future__ import annotations

import zlib

import numpy as np


def keyed_rng(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """Independent generator for ``(seed, stream, *keys)`` (keys are non-negative integers)."""
    if any(k < 0 for k in keys):
        raise ValueError(f"random-stream keys must be non-negative, got {keys}")
    entropy = [int(seed), zlib.crc32(stream.encode("utf-8")), *map(int, keys)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


DAY_KEY_OFFSET = 1_000_000
"""Added to days since 1970 so that date keys stay non-negative for any plausible date."""


def day_key(day: np.datetime64) -> int:
    """Non-negative integer key of a calendar day, for per-date random streams."""
    days = np.datetime64(day, "D").astype(np.int64)  # type: ignore[call-overload]
    return int(days) + DAY_KEY_OFFSET


def gaussian_random_field(
    rng: np.random.Generator, shape: tuple[int, int], correlation_px: float
) -> np.ndarray:
    """Stationary zero-mean, unit-variance random field with a Gaussian covariance.

    The covariance has scale ``correlation_px`` (pixels); the field is made by spectral filtering of
    white noise.

    The field is generated on a domain padded by three correlation lengths and cropped, so the
    periodic wrap-around of the FFT does not correlate opposite edges.
    """
    pad = int(np.ceil(3 * correlation_px))
    full = (shape[0] + 2 * pad, shape[1] + 2 * pad)
    noise = rng.standard_normal(full)
    ky = np.fft.fftfreq(full[0])[:, None]
    kx = np.fft.rfftfreq(full[1])[None, :]
    # Fourier transform of a Gaussian kernel of standard deviation `correlation_px`.
    kernel = np.exp(-2.0 * np.pi**2 * correlation_px**2 * (kx**2 + ky**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * kernel, s=full)[
        pad : pad + shape[0], pad : pad + shape[1]
    ]
    std = field.std()
    return (field - field.mean()) / (std if std > 0 else 1.0)


def round_mantissa(values: np.ndarray, keep_bits: int = 14) -> np.ndarray:
    """float32 copy of ``values`` rounded to ``keep_bits`` mantissa bits.

    The relative precision is 2^-keep_bits; the zeroed low bits let zstd compress smooth truth
    fields several-fold.

    The simulator uses the rounded values themselves, so what is stored is exactly what
    generated the observations.
    """
    as_float = np.ascontiguousarray(values, dtype=np.float32)
    bits = as_float.view(np.uint32)
    drop = 23 - keep_bits
    half = np.uint32(1 << (drop - 1))
    mask = np.uint32((0xFFFFFFFF >> drop) << drop)
    rounded = ((bits + half) & mask).view(np.float32)
    # NaN/inf patterns must not be altered by the carry of the rounding.
    return np.where(np.isfinite(as_float), rounded, as_float)
