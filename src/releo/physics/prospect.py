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
    """Diffuse transmissivity τ(k) = (1 − k)e^{−k} + k²E₁(k) of an elementary layer (k > 0).

    E₁ is expanded in place (same approximations as :func:`exp1`) so that e^{−k} is shared and
    the large-k branch costs one division: τ = e^{−k}[(1 − k) + k·P(k)/Q(k)].
    """
    e = torch.exp(-k)
    small = (1.0 - k) * e + k * k * (_horner(_E1_SERIES[::-1], k) - torch.log(k))
    large = e * ((1.0 - k) + k * _horner(_E1_NUM, k) / _horner(_E1_DEN, k))
    return torch.where(k <= 1.0, small, large)


def absorption_coefficient(
    N: torch.Tensor, contents: torch.Tensor, absorption: torch.Tensor
) -> torch.Tensor:
    """k = Σᵢ cᵢ kᵢ(λ) / N, shape (M, L), from (M, 1) N, (M, 6) contents, (6, L) coefficients."""
    per_layer = contents / N
    if torch.compiler.is_compiling():
        # Six broadcast multiply-adds fuse into the compiled kernel's single loop, where a
        # matmul would be an extern call writing a (M, L) intermediate to memory.
        k = per_layer[:, :1] * absorption[0]
        for i in range(1, absorption.shape[0]):
            k = k + per_layer[:, i : i + 1] * absorption[i]
        return k
    return per_layer @ absorption


def prospect_d(
    N: torch.Tensor,
    contents: torch.Tensor,
    spectral: dict[str, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Leaf hemispherical reflectance and transmittance.

    ``N``: (M, 1) structure parameter; ``contents``: (M, 6) cab, car, cant, cbrown, cw, cm
    (µg/cm², µg/cm², µg/cm², a.u., cm, g/cm²); ``spectral``: tensors from
    :func:`releo.physics.spectra.spectral_tensors` (interface terms precomputed per
    wavelength). Returns two (M, L) tensors.
    """
    k = absorption_coefficient(N, contents, spectral["absorption"])
    tau = plate_transmissivity(k.clamp_min(1e-12))

    # Top layer (lit by the 40° incidence cone) and an inner layer (lit isotropically) share
    # the multiple reflections inside the plate: 1 / (1 − (r21 τ)²).
    r21_tau = spectral["r21"] * tau
    tau_multiple = tau / (1.0 - r21_tau * r21_tau)
    top_t = spectral["t_alpha_t21"] * tau_multiple
    top_r = spectral["r_alpha"] + r21_tau * top_t
    layer_t = spectral["t12_t21"] * tau_multiple
    layer_r = spectral["r12"] + r21_tau * layer_t

    # Stokes' solution for N - 1 inner layers, written with β = b^{-(N-1)} ≤ 1 (no overflow):
    # R = a(1 − β²)/(a² − β²), T = β(a² − 1)/(a² − β²).
    r, t = layer_r, layer_t
    r2, t2 = r * r, t * t
    d = torch.sqrt(
        ((1 + r + t) * (1 + r - t) * (1 - r + t)).clamp_min(0) * (1 - r - t).clamp_min(1e-30)
    )
    half_over_rt = 0.5 / (r * t)
    a = (1 + r2 - t2 + d) * t * half_over_rt
    b = (1 - r2 + t2 + d) * r * half_over_rt
    beta = torch.exp((1.0 - N) * torch.log(b))
    beta2, a2 = beta * beta, a * a
    over_sub = 1.0 / (a2 - beta2)
    sub_r = a * (1.0 - beta2) * over_sub
    sub_t = beta * (a2 - 1.0) * over_sub

    # Top layer over the inner pile.
    top_t_over_coupling = top_t / (1.0 - sub_r * r)
    transmittance = top_t_over_coupling * sub_t
    reflectance = top_r + top_t_over_coupling * sub_r * t
    return reflectance, transmittance
