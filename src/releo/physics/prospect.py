"""PROSPECT-D leaf optical properties model (Féret et al. 2017), batched and differentiable.

The leaf is a pile of ``N`` absorbing plates (Allen et al. 1969; Jacquemoud & Baret 1990): the
elementary layer transmits τ(k) = (1 − k)e^{−k} + k²E₁(k) of diffuse light, with k the sum of
specific absorption coefficients times contents per layer; the top interface sees an incidence
cone of 40°; the N − 1 inner layers are combined with Stokes' (1862) formulas.
"""

from __future__ import annotations

import torch

# Abramowitz & Stegun (1964) 5.1.53 (0 < x ≤ 1, |ε| < 2e-7) and 5.1.56 (x ≥ 1, |ε| < 2e-8).
_E1_SERIES = (-0.57721566, 0.99999193, -0.24991055, 0.05519968, -0.00976004, 0.00107857)
_E1_NUM = (1.0, 8.5733287401, 18.0590169730, 8.6347608925, 0.2677737343)
_E1_DEN = (1.0, 9.5733223454, 25.6329561486, 21.0996530827, 3.9584969228)


def _horner(coeffs: tuple[float, ...], x: torch.Tensor) -> torch.Tensor:
    result = torch.full_like(x, coeffs[0])
    for c in coeffs[1:]:
        result = result * x + c
    return result


def exp1(x: torch.Tensor) -> torch.Tensor:
    """Exponential integral E₁(x) for x > 0 (absolute error < 2e-7), differentiable.

    Both branches are finite everywhere on x > 0, so ``torch.where`` keeps gradients finite.
    """
    small = -torch.log(x) + _horner(_E1_SERIES[::-1], x)
    large = torch.exp(-x) / x * _horner(_E1_NUM, x) / _horner(_E1_DEN, x)
    return torch.where(x <= 1.0, small, large)


def plate_transmissivity(k: torch.Tensor) -> torch.Tensor:
    """Diffuse transmissivity τ(k) of an elementary absorbing layer (k > 0)."""
    return (1.0 - k) * torch.exp(-k) + k * k * exp1(k)


def prospect_d(
    N: torch.Tensor,
    contents: torch.Tensor,
    spectral: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaf hemispherical reflectance and transmittance.

    ``N``: (M, 1) structure parameter; ``contents``: (M, 6) cab, car, cant, cbrown, cw, cm
    (µg/cm², µg/cm², µg/cm², a.u., cm, g/cm²); ``spectral``: tensors from
    :func:`releo.physics.spectra.spectral_tensors`. Returns two (M, L) tensors.
    """
    k = (contents @ spectral["absorption"]) / N
    tau = plate_transmissivity(k.clamp_min(1e-12))
    n2 = spectral["n"] ** 2
    t_alpha = spectral["tav_40"]
    t12 = spectral["tav_90"]
    t21 = t12 / n2
    r12 = 1.0 - t12
    r21 = 1.0 - t21

    # Top layer, lit by the 40° incidence cone.
    denom = 1.0 - (r21 * tau) ** 2
    top_t = t_alpha * tau * t21 / denom
    top_r = (1.0 - t_alpha) + r21 * tau * top_t
    # An inner layer, lit isotropically.
    layer_t = t12 * tau * t21 / denom
    layer_r = r12 + r21 * tau * layer_t

    # Stokes' solution for N - 1 inner layers.
    r2, t2 = layer_r**2, layer_t**2
    d = torch.sqrt(
        ((1 + layer_r + layer_t) * (1 + layer_r - layer_t) * (1 - layer_r + layer_t)).clamp_min(0)
        * (1 - layer_r - layer_t).clamp_min(1e-30)
    )
    a = (1 + r2 - t2 + d) / (2 * layer_r)
    b = (1 - r2 + t2 + d) / (2 * layer_t)
    b_pow = b ** (N - 1.0)
    b_pow2 = b_pow**2
    sub_denom = a * a * b_pow2 - 1.0
    sub_r = a * (b_pow2 - 1.0) / sub_denom
    sub_t = b_pow * (a * a - 1.0) / sub_denom

    # Top layer over the inner pile.
    coupling = 1.0 - sub_r * layer_r
    transmittance = top_t * sub_t / coupling
    reflectance = top_r + top_t * sub_r * layer_t / coupling
    return reflectance, transmittance
