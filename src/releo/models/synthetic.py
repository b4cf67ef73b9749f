"""Synthetic chunks simulated through the physics: the hybrid (simulation-based) training signal.

Operational LAI retrievals (the SNAP biophysical processor among them) learn the inverse of
PROSAIL from simulations: variables drawn from a prior, reflectance simulated, a network fitted
to map one back to the other (Weiss & Baret, S2 ToolBox ATBD; Verrelst et al. 2015, "hybrid"
retrieval). Here the same idea trains the chunk model's inversion path: small chunks whose every
pixel is simulated by releo's PROSAIL (S2, at random sun/view geometry, with the L2A noise model)
and the Water Cloud Model (S1, with gamma speckle), in the exact batch layout of real chunks, so
the encoder and the latent decoder learn to invert the physics they are trained through on real
data. No label of the site is used: the variables are prior draws.
"""

from __future__ import annotations

import torch

from releo.models.decoder import spectral_basis
from releo.models.distributions import PRIOR_SCALE, VARIABLE_RANGES, VARIABLES, prior_logit
from releo.models.forward import s1_backscatter_db, s2_reflectance, with_l2a_noise
from releo.physics.srf import PLATFORMS

S1_ENL = 4.4  # equivalent number of looks of GRD speckle (unit-mean gamma in linear power)
SUN_ZENITH, VIEW_ZENITH, RELATIVE_AZIMUTH = (20.0, 70.0), (0.0, 12.0), (0.0, 180.0)
INCIDENCE = (30.0, 46.0)
PATCH = 4  # pixels per side of the constant patches (fields) of a synthetic chunk

SNAP_TRAINING: dict[str, tuple[float, float, float, float]] = {
    "lai": (2.0, 3.0, 0.0, 15.0), "lidfa": (60.0, 30.0, 30.0, 80.0),
    "hspot": (0.2, 0.5, 0.1, 0.5), "N": (1.5, 0.3, 1.2, 1.8), "cab": (45.0, 30.0, 20.0, 90.0),
    "cm": (0.005, 0.005, 0.003, 0.011), "cw_rel": (0.75, 0.08, 0.6, 0.85),
    "cbrown": (0.0, 0.3, 0.0, 2.0), "psoil": (0.5, 0.6, 0.0, 1.0), "rsoil": (1.2, 2.0, 0.5, 3.5),
}  # fmt: skip
"""Truncated normals (mode, spread, min, max) of the SNAP biophysical processor's training
database (Weiss & Baret 2016, S2ToolBox Level 2 products ATBD v1.1: the distribution of its
input variables); ``cw_rel`` is the leaf's relative water content, Cw / (Cw + Cm)."""

SNAP_AT_LAI_MAX: dict[str, tuple[float, float]] = {
    "lidfa": (55.0, 65.0), "hspot": (0.1, 0.5), "N": (1.3, 1.8), "cab": (45.0, 90.0),
    "cm": (0.005, 0.011), "cw_rel": (0.70, 0.80), "cbrown": (0.0, 0.2), "psoil": (0.0, 0.4),
    "rsoil": (0.5, 1.2),
}  # fmt: skip
"""The ATBD's co-distribution with LAI: each variable's range at the maximum LAI; the range
narrows linearly from the whole range at LAI 0 (dense canopies: green, planophile-to-erect
leaves over dark soil)."""
RESIDUAL_SUSCEPTIBILITY = (0.5, 1.5)  # per-field factor on the chunk-date residual spectrum


def _uniform(shape: tuple[int, ...], bounds: tuple[float, float], gen: torch.Generator | None):
    low, high = bounds
    return low + (high - low) * torch.rand(shape, generator=gen)


def random_geometry(shape: tuple[int, ...], gen: torch.Generator | None) -> torch.Tensor:
    """Sun zenith, view zenith and relative azimuth (*shape, 3) in degrees, uniform in range."""
    bounds = (SUN_ZENITH, VIEW_ZENITH, RELATIVE_AZIMUTH)
    return torch.stack([_uniform(shape, r, gen) for r in bounds], -1)


def prior_draws(shape: tuple[int, ...], gen: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Every physical variable drawn from its prior (logit-normal in its range)."""
    out = {}
    for name in VARIABLES:
        lo, hi = VARIABLE_RANGES[name]
        u = prior_logit(name) + PRIOR_SCALE * torch.randn(shape, generator=gen)
        out[name] = (lo + (hi - lo) * torch.sigmoid(u)).clamp(lo, hi)
    return out


def _truncated_normal(shape, mode, spread, lo, hi, gen) -> torch.Tensor:
    """Draws of N(mode, spread²) truncated to [lo, hi], by the inverse CDF."""
    a, b = (torch.special.ndtr(torch.tensor((x - mode) / spread)) for x in (lo, hi))
    u = a + (b - a) * torch.rand(shape, generator=gen)
    return (mode + spread * torch.special.ndtri(u)).clamp(lo, hi)


def snap_training_draws(
    shape: tuple[int, ...], gen: torch.Generator | None
) -> dict[str, torch.Tensor]:
    """Variables drawn as the SNAP processor's training database, inside the model's ranges.

    Truncated normals with the ATBD's co-distribution with LAI (:data:`SNAP_TRAINING`,
    :data:`SNAP_AT_LAI_MAX`); carotenoids at a quarter of chlorophyll and water from the
    relative water content, as in the ATBD. What the ATBD does not vary (anthocyanins, soil
    moisture for S1) is drawn from the model's prior. Values are clamped into
    :data:`VARIABLE_RANGES` (LAI ≤ 10, Cw ≥ 0.0075).
    """
    out = prior_draws(shape, gen)
    drawn = {k: _truncated_normal(shape, *v, gen) for k, v in SNAP_TRAINING.items()}
    lai = drawn["lai"] / SNAP_TRAINING["lai"][3]  # the ATBD's LAI maximum scales the ranges
    for name, (lo_max, hi_max) in SNAP_AT_LAI_MAX.items():
        _, _, lo, hi = SNAP_TRAINING[name]
        low, high = lo + lai * (lo_max - lo), hi + lai * (hi_max - hi)
        drawn[name] = low + (drawn[name] - lo) * (high - low) / (hi - lo)
    drawn["car"] = 0.25 * drawn["cab"]
    drawn["cw"] = drawn["cm"] / (1 - drawn["cw_rel"]) - drawn["cm"]
    for name in VARIABLES:
        if name in drawn:
            lo, hi = VARIABLE_RANGES[name]
            out[name] = drawn[name].clamp(lo, hi)
    return out


SYNTHETIC_PRIORS = {"model": prior_draws, "snap": snap_training_draws}
"""Where the synthetic chunks' variables come from: the model's prior, or SNAP's database."""


def _patches(values: torch.Tensor, size: int) -> torch.Tensor:
    """(B, h, w) patch values → (B, size, size) pixels, each patch constant (a field)."""
    up = values.repeat_interleave(PATCH, -1).repeat_interleave(PATCH, -2)
    return up[..., :size, :size]


def residual_spectra(
    b: int, n_s2: int, coarse: int, size: int, scale: float, degree: int, gen
) -> torch.Tensor:
    """Additive spectra (B·n_s2·size², 10): one smooth shape per chunk and date.

    Each shape is scaled per field.
    """
    spread = scale * 0.5 ** torch.arange(degree + 1, dtype=torch.float32)
    shapes = (torch.randn((b, n_s2, degree + 1), generator=gen) * spread) @ spectral_basis(degree)
    factor = _patches(_uniform((b, coarse, coarse), RESIDUAL_SUSCEPTIBILITY, gen), size)
    out = shapes[:, :, None, None, :] * factor[:, None, :, :, None]  # (B, n_s2, size, size, 10)
    return out.reshape(-1, shapes.shape[-1])


def synthetic_chunks(
    batch_size: int,
    size: int,
    n_s2: int,
    n_s1: int,
    gen: torch.Generator | None = None,
    device: torch.device | str = "cpu",
    residual_scale: float = 0.0,
    residual_degree: int = 2,
    prior: str = "model",
) -> tuple[dict, dict[str, torch.Tensor]]:
    """A batch of simulated chunks and the true variables of every pixel, on ``device``.

    The batch has the layout of ``releo.data.chunks.collate_chunks``; the true variables are
    (B, size, size), constant over the chunk's 10-day window.

    ``residual_scale`` > 0 adds to each date an exclusive-effect spectrum of Legendre degree
    ``residual_degree``: coefficients N(0, residual_scale · 2⁻ᵏ) for degree k, drawn per chunk
    and date, times a factor per field drawn in :data:`RESIDUAL_SUSCEPTIBILITY`.

    ``prior`` names the distribution of the variables in :data:`SYNTHETIC_PRIORS`.

    Random draws come from ``gen`` (the global generator when None; speckle always does), on
    the CPU whatever the device, so a seed gives the same chunks everywhere.
    """
    b, coarse = batch_size, -(-size // PATCH)
    draws = SYNTHETIC_PRIORS[prior]((b, coarse, coarse), gen)
    truth = {k: _patches(v, size) for k, v in draws.items()}
    start = _uniform((b, 1), (1.0, 355.0), gen).floor()
    window = torch.cat([start, start + 9], dim=1)
    s2_doy = (start + _uniform((b, n_s2), (0.0, 9.0), gen).floor()).sort(-1).values
    s1_doy = (start + _uniform((b, n_s1), (0.0, 9.0), gen).floor()).sort(-1).values
    angles = random_geometry((b, n_s2), gen)
    platform = torch.randint(len(PLATFORMS), (b, n_s2), generator=gen)

    pixels = size * size
    flat = {
        k: v.reshape(b, 1, pixels).expand(b, n_s2, pixels).reshape(-1) for k, v in truth.items()
    }
    geometry = angles[:, :, None].expand(b, n_s2, pixels, 3).reshape(-1, 3)
    codes = platform[:, :, None].expand(b, n_s2, pixels).reshape(-1)
    with torch.no_grad():
        rho = s2_reflectance(flat, geometry, codes, fused=False)
    if residual_scale > 0:
        rho = rho + residual_spectra(b, n_s2, coarse, size, residual_scale, residual_degree, gen)
    s2 = with_l2a_noise(rho, gen).reshape(b, n_s2, size, size, 10).permute(0, 1, 4, 2, 3)
    # Whole dates overcast (as the real 35 % cloudiness) or clear in patches.
    overcast = torch.rand((b, n_s2, 1, 1), generator=gen) < 0.35
    clear = _patches(torch.rand((b * n_s2, coarse, coarse), generator=gen) > 0.1, size)
    s2_mask = clear.reshape(b, n_s2, size, size) & ~overcast

    incidence = _uniform((b, n_s1, 1, 1), INCIDENCE, gen).expand(b, n_s1, size, size)
    lai = truth["lai"][:, None].expand(b, n_s1, size, size)
    moisture = truth["soil_moisture"][:, None].expand(b, n_s1, size, size)
    with torch.no_grad():
        sigma0 = s1_backscatter_db(lai, moisture, incidence)
    speckle = torch.distributions.Gamma(S1_ENL, S1_ENL).sample(sigma0.shape)
    s1 = (sigma0 + 10 * torch.log10(speckle)).permute(0, 1, 4, 2, 3)

    batch = {
        "window_doy": window,
        "s2": s2.contiguous(),
        "s2_mask": s2_mask,
        "s2_valid": torch.ones(b, n_s2, dtype=torch.bool),
        "s2_angles": angles,
        "s2_doy": s2_doy,
        "s2_platform": platform,
        "s1": s1.contiguous(),
        "s1_valid": torch.ones(b, n_s1, dtype=torch.bool),
        "s1_incidence": incidence.contiguous(),
        "s1_doy": s1_doy,
    }
    return {k: v.to(device) for k, v in batch.items()}, {k: v.to(device) for k, v in truth.items()}
