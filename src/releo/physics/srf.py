"""Sentinel-2 spectral response functions and band integration.

The official SRFs (ESA COPE-GSEG-EOPG-TN-15-0007 v3.0, 1 nm) ship in ``releo/physics/data``.
A band value is the SRF-weighted mean of the spectrum over 400–2500 nm.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Any, overload

import numpy as np
import pandas as pd
import torch
from numpy.typing import NDArray

from releo.data.contracts import S2_BANDS
from releo.physics.spectra import WAVELENGTHS_NM

PLATFORMS = ("S2A", "S2B")
_SRF_FILE = "S2-SRF_COPE-GSEG-EOPG-TN-15-0007_3.0_{platform}.csv"


def platform_code(name: str) -> int:
    """Index of an S2 platform's spectral responses; platforms without SRF tables use S2A's."""
    return PLATFORMS.index(name) if name in PLATFORMS else 0


def _check_platform(platform: str) -> None:
    if platform not in PLATFORMS:
        raise ValueError(f"platform={platform!r} is not one of {PLATFORMS}")


@cache
def spectral_response(platform: str = "S2A") -> np.ndarray:
    """SRF weights of the 10 releo bands on the 400–2500 nm grid, shape (2101, 10).

    Each column is normalised to sum to 1, so a band value is ``spectrum @ weights``.
    """
    _check_platform(platform)
    path = resources.files("releo.physics") / "data" / _SRF_FILE.format(platform=platform)
    with path.open() as f:
        table = pd.read_csv(f).set_index("SR_WL")
    columns = [f"{platform}_SR_AV_B{b[1:].lstrip('0')}" for b in S2_BANDS]
    srf = table.reindex(WAVELENGTHS_NM)[columns].fillna(0.0).to_numpy(dtype=np.float64)
    return srf / srf.sum(axis=0, keepdims=True)


def band_centres_nm(platform: str = "S2A") -> np.ndarray:
    """SRF-weighted mean wavelength (nm) of each of the 10 releo bands, shape (10,)."""
    return WAVELENGTHS_NM @ spectral_response(platform)


@cache
def reduced_sampling(platform: str = "S2A", step_nm: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Coarse wavelength grid and band weights for the fast band-level path.

    The spectrum is assumed piecewise linear between nodes ``step_nm`` apart inside each band's
    support (plus the support's ends), and that interpolant is integrated exactly against the
    1 nm SRF. Returns (indices into the 2101-nm grid, weights of shape (nodes, 10)).
    """
    full = spectral_response(platform)
    support = full.sum(axis=1) > 0
    nodes: set[int] = set()
    for band in range(full.shape[1]):
        idx = np.flatnonzero(full[:, band] > 0)
        lo, hi = int(idx[0]), int(idx[-1])
        nodes.update(range(lo, hi + 1, step_nm))
        nodes.update((lo, hi))
    index = np.array(sorted(nodes))
    # Hat-function interpolation matrix (2101, nodes), restricted to the SRF support.
    interp = np.zeros((full.shape[0], index.size))
    for j in range(index.size - 1):
        a, b = index[j], index[j + 1]
        if not support[a : b + 1].any():
            continue
        span = np.arange(a, b + 1)
        frac = (span - a) / (b - a)
        interp[span, j] = np.maximum(interp[span, j], 1.0 - frac)
        interp[span, j + 1] = np.maximum(interp[span, j + 1], frac)
    interp[index, :] = np.eye(index.size)
    return index, interp.T @ full


@cache
def _weights(platform: str, dtype: torch.dtype, device: str, step_nm: int | None) -> torch.Tensor:
    w = spectral_response(platform) if step_nm is None else reduced_sampling(platform, step_nm)[1]
    return torch.as_tensor(w, dtype=dtype, device=device)


def band_weights(
    platform: str, dtype: torch.dtype, device: torch.device | str, step_nm: int | None = None
) -> torch.Tensor:
    """Cached SRF weights as a tensor: full (2101, 10) or reduced (nodes, 10)."""
    _check_platform(platform)
    return _weights(platform, dtype, str(torch.device(device)), step_nm)


@overload
def s2_bands(spectrum: torch.Tensor, platform: str = ...) -> torch.Tensor: ...
@overload
def s2_bands(spectrum: NDArray[Any], platform: str = ...) -> NDArray[Any]: ...
def s2_bands(
    spectrum: torch.Tensor | NDArray[Any], platform: str = "S2A"
) -> torch.Tensor | NDArray[Any]:
    """Integrate spectra (..., 2101) at 400–2500 nm/1 nm into the 10 S2 bands (..., 10).

    Bands in the order of :data:`releo.data.contracts.S2_BANDS`. Accepts torch or numpy input
    and returns the same kind.
    """
    as_numpy = isinstance(spectrum, np.ndarray)
    x = torch.as_tensor(spectrum)
    if x.shape[-1] != WAVELENGTHS_NM.size:
        raise ValueError(
            f"spectrum has {x.shape[-1]} samples on its last axis; expected "
            f"{WAVELENGTHS_NM.size} (400–2500 nm at 1 nm)"
        )
    if not x.is_floating_point():
        x = x.to(torch.get_default_dtype())
    bands = x @ band_weights(platform, x.dtype, x.device)
    return bands.numpy() if as_numpy else bands
