"""Physical decoders: decoded variables → predicted S2 bands (PROSAIL) and S1 dB (WCM)."""

from __future__ import annotations

from typing import Any

import torch

from releo.physics import prosail_s2_bands, wcm_backscatter_db
from releo.physics.srf import PLATFORMS

S2_NOISE = (0.005, 0.02)  # L2A noise σ = abs + rel·ρ (Doxani et al. 2018 order of magnitude)


def s2_noise_sigma(reflectance: torch.Tensor) -> torch.Tensor:
    """Standard deviation of the L2A surface-reflectance noise at ``reflectance``."""
    return S2_NOISE[0] + S2_NOISE[1] * reflectance.abs()


def with_l2a_noise(reflectance: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
    """Simulated reflectance as L2A observes it: its noise added (from ``gen``), in [0, 1]."""
    noise = s2_noise_sigma(reflectance) * torch.randn(reflectance.shape, generator=gen)
    return (reflectance + noise).clamp(0, 1)


# The PROSAIL inputs taken from the decoder; the geometry comes from each acquisition.
PROSAIL_DECODED = (
    *("N", "cab", "car", "cant", "cbrown", "cw", "cm", "lai", "lidfa", "hspot", "psoil", "rsoil"),
)  # fmt: skip


def s2_reflectance(
    values: dict[str, torch.Tensor],
    angles: torch.Tensor,
    platform: torch.Tensor,
    *,
    fused: bool,
) -> torch.Tensor:
    """PROSAIL S2 bands (N, 10) for flat variables (N,).

    ``angles`` (N, 3) are sun zenith, view zenith and relative azimuth in degrees; ``platform`` (N,)
    holds platform codes.
    """
    out = angles.new_zeros(angles.shape[0], 10)
    for code in platform.unique().tolist():
        sel = platform == code
        # Any: prosail_s2_bands leaves its variables unannotated beside typed keyword options.
        args: dict[str, Any] = {k: values[k][sel] for k in PROSAIL_DECODED}
        a = angles[sel]
        out[sel] = prosail_s2_bands(
            **args, tts=a[:, 0], tto=a[:, 1], psi=a[:, 2], platform=PLATFORMS[code], fused=fused
        )
    return out


def s1_backscatter_db(
    lai: torch.Tensor, soil_moisture: torch.Tensor, incidence: torch.Tensor
) -> torch.Tensor:
    """WCM VV and VH backscatter (..., 2) in dB at each observation's incidence angle."""
    return torch.stack(
        [wcm_backscatter_db(lai, soil_moisture, incidence, p) for p in ("VV", "VH")], dim=-1
    )
