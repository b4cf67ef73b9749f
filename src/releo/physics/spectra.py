"""Spectral constants of PROSAIL: PROSPECT-D absorption coefficients and soil spectra.

Data: PROSPECT-D ``dataSpec_PDB`` (Féret, Gitelson, Noble & Jacquemoud 2017, Remote Sensing of
Environment 193, 204–215) and the dry/wet soil spectra distributed with PROSAIL (Jacquemoud et
al. 2009), 400–2500 nm at 1 nm, shipped in ``releo/physics/data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

import numpy as np
import torch

WAVELENGTHS_NM = np.arange(400, 2501, dtype=np.int64)
"""The 2101 wavelengths (nm) of every full spectrum in releo."""


@dataclass(frozen=True)
class LeafSpectra:
    """PROSPECT-D constants per wavelength (numpy, float64)."""

    refractive_index: np.ndarray
    k_cab: np.ndarray  # cm²/µg
    k_car: np.ndarray  # cm²/µg
    k_ant: np.ndarray  # cm²/µg
    k_brown: np.ndarray  # arbitrary units
    k_cw: np.ndarray  # 1/cm
    k_cm: np.ndarray  # cm²/g
    tav_40: np.ndarray  # interface transmissivity, incidence cone 0–40°
    tav_90: np.ndarray  # interface transmissivity, incidence cone 0–90°


def _data_path(name: str):
    return resources.files("releo.physics") / "data" / name


def interface_transmissivity(alpha_deg: float, n: np.ndarray, nodes: int = 256) -> np.ndarray:
    """Mean Fresnel transmissivity of an air/leaf interface over incidences 0..``alpha_deg``.

    Allen (1973): tav(α, n) = ∫₀^α T(θ, n) sin 2θ dθ / sin²α for unpolarised light entering a
    medium of refractive index ``n``; evaluated by Gauss–Legendre quadrature (exact to ~1e-13),
    so it equals Stern's (1964) closed form without transcribing it.
    """
    alpha = np.deg2rad(alpha_deg)
    x, w = np.polynomial.legendre.leggauss(nodes)
    theta = 0.5 * alpha * (x + 1.0)
    weight = 0.5 * alpha * w * np.sin(2.0 * theta)
    cos_i = np.cos(theta)[:, None]
    n = np.asarray(n, dtype=np.float64)[None, :]
    cos_t = np.sqrt(1.0 - (np.sin(theta)[:, None] / n) ** 2)
    r_s = ((cos_i - n * cos_t) / (cos_i + n * cos_t)) ** 2
    r_p = ((n * cos_i - cos_t) / (n * cos_i + cos_t)) ** 2
    transmittance = 1.0 - 0.5 * (r_s + r_p)
    return (weight[:, None] * transmittance).sum(axis=0) / np.sin(alpha) ** 2


@cache
def leaf_spectra() -> LeafSpectra:
    """Load the PROSPECT-D constants once and hoist the interface transmissivities."""
    with _data_path("prospect_d_spectra.txt").open() as f:
        table = np.loadtxt(f, comments="#")
    if not np.array_equal(table[:, 0].astype(np.int64), WAVELENGTHS_NM):
        raise ValueError("prospect_d_spectra.txt: wavelengths are not 400..2500 nm at 1 nm")
    _, n, cab, car, ant, brown, cw, cm = table.T
    return LeafSpectra(
        refractive_index=n,
        k_cab=cab,
        k_car=car,
        k_ant=ant,
        k_brown=brown,
        k_cw=cw,
        k_cm=cm,
        tav_40=interface_transmissivity(40.0, n),
        tav_90=interface_transmissivity(90.0, n),
    )


@cache
def soil_spectra() -> tuple[np.ndarray, np.ndarray]:
    """Dry and wet reference soil reflectance spectra (numpy, float64, 2101 values each)."""
    with _data_path("soil_reflectance.txt").open() as f:
        table = np.loadtxt(f)
    return table[:, 0], table[:, 1]


@cache
def _spectral_tensors(index: tuple[int, ...] | None, dtype: torch.dtype, device: str):
    leaf = leaf_spectra()
    dry, wet = soil_spectra()
    sel = slice(None) if index is None else np.asarray(index)
    absorption = np.stack(
        [leaf.k_cab, leaf.k_car, leaf.k_ant, leaf.k_brown, leaf.k_cw, leaf.k_cm], axis=0
    )[:, sel]
    t_alpha, t12 = leaf.tav_40[sel], leaf.tav_90[sel]
    t21 = t12 / leaf.refractive_index[sel] ** 2
    columns = {
        "absorption": absorption,  # (6, L), rows in the order cab car cant cbrown cw cm
        "n": leaf.refractive_index[sel],
        "tav_40": t_alpha,
        "tav_90": t12,
        # Interface terms of the plate model, hoisted out of the per-leaf computation:
        # air→leaf transmissivities t_α (40° cone) and t12 (isotropic), leaf→air t21 = t12/n².
        "t_alpha_t21": t_alpha * t21,
        "t12_t21": t12 * t21,
        "r_alpha": 1.0 - t_alpha,
        "r12": 1.0 - t12,
        "r21": 1.0 - t21,
        "soil_dry": dry[sel],
        "soil_wet": wet[sel],
    }
    return {k: torch.as_tensor(v, dtype=dtype, device=device) for k, v in columns.items()}


def spectral_tensors(
    dtype: torch.dtype, device: torch.device | str, index: tuple[int, ...] | None = None
) -> dict[str, torch.Tensor]:
    """The constants as tensors on ``device`` in ``dtype``, optionally at wavelength ``index``.

    Cached per (index, dtype, device) so repeated calls cost nothing.
    """
    return _spectral_tensors(index, dtype, str(torch.device(device)))
