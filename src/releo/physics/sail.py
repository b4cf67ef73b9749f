"""4SAIL canopy reflectance model (Verhoef 1984; Verhoef et al. 2007), batched, differentiable.

Turbid-medium canopy of leaves with an ellipsoidal inclination distribution (Campbell 1990) over
a Lambertian soil, with Kuusk's hot-spot correction of single scattering. Everything that does
not depend on wavelength (leaf-angle extinction and scattering coefficients, hot spot) is
computed once per canopy and broadcast over the spectrum.
"""

from __future__ import annotations

import math

import numpy as np
import torch

N_LEAF_ANGLES = 18
LEAF_ANGLE_STEP_DEG = 90.0 / N_LEAF_ANGLES
LEAF_ANGLES_DEG = np.arange(N_LEAF_ANGLES) * LEAF_ANGLE_STEP_DEG + 0.5 * LEAF_ANGLE_STEP_DEG
_HOTSPOT_STEPS = 20
_GAUSS_NODES = 16
# Constant quadrature nodes, computed once here: numpy's leggauss inside the model would also
# split a torch.compile graph in pieces.
_GAUSS_X, _GAUSS_W = np.polynomial.legendre.leggauss(_GAUSS_NODES)
_HALF_STEP_RAD = math.radians(LEAF_ANGLE_STEP_DEG) / 2
_LIDF_NODES_RAD = np.deg2rad(LEAF_ANGLES_DEG)[:, None] + _HALF_STEP_RAD * _GAUSS_X[None, :]
_LEAF_ANGLES_RAD = np.deg2rad(LEAF_ANGLES_DEG)


def ellipsoid_eccentricity(mean_leaf_angle_deg: torch.Tensor) -> torch.Tensor:
    """Campbell's ellipsoid parameter χ from the mean leaf inclination (degrees).

    Polynomial fit of ln χ against the mean angle used by SAIL (Wang et al. 2007): χ ≈ 1 for a
    spherical canopy (57.3°), χ > 1 planophile, χ < 1 erectophile.
    """
    a = mean_leaf_angle_deg
    return torch.exp(-1.6184e-5 * a**3 + 2.1145e-3 * a**2 - 1.2390e-1 * a + 3.2491)


def ellipsoidal_lidf(mean_leaf_angle_deg: torch.Tensor) -> torch.Tensor:
    """Leaf inclination distribution over 18 classes of 5° (shape ``(..., 18)``, sums to 1).

    Integrates Campbell's (1990) density g(θ) ∝ χ³ sin θ / (cos²θ + χ² sin²θ)² over each class
    by Gauss–Legendre quadrature.
    """
    chi = ellipsoid_eccentricity(mean_leaf_angle_deg)[..., None, None]
    theta = torch.as_tensor(_LIDF_NODES_RAD, dtype=chi.dtype, device=chi.device)
    weights = torch.as_tensor(_GAUSS_W * _HALF_STEP_RAD, dtype=chi.dtype, device=chi.device)
    sin_t, cos_t = torch.sin(theta), torch.cos(theta)
    density = sin_t / (cos_t**2 + chi**2 * sin_t**2) ** 2
    mass = (density * weights).sum(-1)
    return mass / mass.sum(-1, keepdim=True)


def _safe_acos(c: torch.Tensor) -> torch.Tensor:
    return torch.acos(c.clamp(-1.0 + 1e-7, 1.0 - 1e-7))


def volume_scattering(
    tts: torch.Tensor, tto: torch.Tensor, psi: torch.Tensor, ttl: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Extinction and bidirectional scattering of leaves inclined at ``ttl`` (Verhoef 1998).

    All angles in radians, broadcastable. Returns (chi_s, chi_o, frho, ftau): the projections of
    a leaf towards sun and observer and its bidirectional reflection/transmission weights.
    """
    cos_ts, sin_ts = torch.cos(tts), torch.sin(tts)
    cos_to, sin_to = torch.cos(tto), torch.sin(tto)
    cos_tl, sin_tl = torch.cos(ttl), torch.sin(ttl)
    cs, co = cos_tl * cos_ts, cos_tl * cos_to
    ss, so = sin_tl * sin_ts, sin_tl * sin_to

    # Azimuth beyond which a leaf's face turns away from the sun (bts) or observer (bto).
    def transition(c: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        ratio = -c / torch.where(s.abs() > 1e-6, s, torch.ones_like(s))
        inside = (s.abs() > 1e-6) & (ratio.abs() < 1.0)
        beta = torch.where(inside, _safe_acos(ratio), torch.full_like(ratio, math.pi))
        return beta, torch.where(inside, s, c)

    bts, ds = transition(cs, ss)
    bto, do = transition(co, so)
    chi_s = 2.0 / math.pi * ((bts - math.pi / 2) * cs + torch.sin(bts) * ss)
    chi_o = 2.0 / math.pi * ((bto - math.pi / 2) * co + torch.sin(bto) * so)

    # Order the relative azimuth among the two transition azimuths.
    btran1 = (bts - bto).abs()
    btran2 = math.pi - (bts + bto - math.pi).abs()
    first = psi <= btran1
    second = psi <= btran2
    bt1 = torch.where(first, psi, btran1)
    bt2 = torch.where(first, btran1, torch.where(second, psi, btran2))
    bt3 = torch.where(first, btran2, torch.where(second, btran2, psi))

    t1 = 2.0 * cs * co + ss * so * torch.cos(psi)
    t2 = torch.sin(bt2) * (2.0 * ds * do + ss * so * torch.cos(bt1) * torch.cos(bt3))
    denom = 2.0 * math.pi**2
    frho = torch.relu(((math.pi - bt2) * t1 + t2) / denom)
    ftau = torch.relu((-bt2 * t1 + t2) / denom)
    return chi_s, chi_o, frho, ftau


def _exchange(
    k: torch.Tensor, m: torch.Tensor, lai: torch.Tensor, ek: torch.Tensor, em: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Verhoef's J1 (stable when k ≈ m) and J2 for extinction ``k``, with 1/(k + m).

    J1 = (e^{−mL} − e^{−kL})/(k − m), J2 = (1 − e^{−(k+m)L})/(k + m); ``ek`` = e^{−kL} and
    ``em`` = e^{−mL} are shared by the caller, and one division gives both reciprocals.
    """
    diff, total = k - m, k + m
    near = (diff * lai).abs() < 1e-3
    safe = torch.where(near, torch.ones_like(diff), diff)
    inv = 1.0 / (safe * total)
    over_total = safe * inv
    series = 0.5 * lai * (ek + em) * (1 - (diff * lai) ** 2 * (1 / 12))
    j1 = torch.where(near, series, (em - ek) * total * inv)
    j2 = (1.0 - ek * em) * over_total
    return j1, j2, over_total


def _attenuation(k: torch.Tensor, m: torch.Tensor, lai: torch.Tensor) -> torch.Tensor:
    """Verhoef's J2: (1 − e^{−(k+m)L}) / (k + m)."""
    return -torch.expm1(-(k + m) * lai) / (k + m)


def _expm1_ratio(d: torch.Tensor) -> torch.Tensor:
    """(eᵈ − 1)/d, equal to 1 at d = 0 with finite gradient."""
    near = d.abs() < 1e-4
    safe = torch.where(near, torch.ones_like(d), d)
    return torch.where(near, 1 + d / 2 + d * d / 6, torch.expm1(safe) / safe)


def _hotspot(
    lai: torch.Tensor, ks: torch.Tensor, ko: torch.Tensor, hspot: torch.Tensor, dso: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bidirectional gap probability and single-scattering integral with the hot spot (Kuusk).

    Per canopy (no wavelength). Returns (tsstoo, sumint).
    """
    has_size = hspot > 0
    alf_raw = dso / torch.where(has_size, hspot, torch.ones_like(hspot)) * 2.0 / (ks + ko)
    alf = torch.where(has_size, alf_raw, torch.full_like(hspot, 1e6))
    exact_hotspot = alf <= 0
    alf = torch.where(exact_hotspot, torch.ones_like(alf), alf)

    fhot = lai * torch.sqrt(ko * ks)
    fint = -torch.expm1(-alf) * (1.0 / _HOTSPOT_STEPS)
    x1 = torch.zeros_like(lai)
    y1 = torch.zeros_like(lai)
    f1 = torch.ones_like(lai)
    sumint = torch.zeros_like(lai)
    for i in range(1, _HOTSPOT_STEPS + 1):
        x2 = -torch.log1p(-i * fint) / alf if i < _HOTSPOT_STEPS else torch.ones_like(lai)
        y2 = -(ko + ks) * lai * x2 + fhot * (-torch.expm1(-alf * x2)) / alf
        # (f2 - f1)(x2 - x1)/(y2 - y1) with f = e^y, written to stay exact as lai -> 0.
        sumint = sumint + f1 * _expm1_ratio(y2 - y1) * (x2 - x1)
        x1, y1, f1 = x2, y2, torch.exp(y2)

    tss = torch.exp(-ks * lai)
    safe_lai = torch.where(lai > 0, lai, torch.ones_like(lai))
    sumint_exact = torch.where(lai > 0, -torch.expm1(-ks * lai) / (ks * safe_lai), 1.0)
    tsstoo = torch.where(exact_hotspot, tss, f1)
    sumint = torch.where(exact_hotspot, sumint_exact, sumint)
    return tsstoo, sumint


def foursail(
    leaf_reflectance: torch.Tensor,
    leaf_transmittance: torch.Tensor,
    soil_reflectance: torch.Tensor,
    lai: torch.Tensor,
    lidfa: torch.Tensor,
    hspot: torch.Tensor,
    tts: torch.Tensor,
    tto: torch.Tensor,
    psi: torch.Tensor,
) -> torch.Tensor:
    """Bidirectional reflectance factor of canopy + soil (SDR), shape (M, L).

    Spectra are (M, L); canopy parameters (M, 1): ``lai``, mean leaf angle ``lidfa`` (deg),
    hot-spot size ``hspot``, sun zenith ``tts``, view zenith ``tto``, relative azimuth ``psi``
    (degrees).
    """
    rho, tau, rs = leaf_reflectance, leaf_transmittance, soil_reflectance
    # The geometry is symmetric in azimuth: fold psi into [0, 180].
    psi = (psi - 360.0 * torch.round(psi / 360.0)).abs()
    tts_r, tto_r, psi_r = torch.deg2rad(tts), torch.deg2rad(tto), torch.deg2rad(psi)
    cts, cto = torch.cos(tts_r), torch.cos(tto_r)
    tan_s, tan_o = torch.tan(tts_r), torch.tan(tto_r)
    dso = torch.sqrt(
        (tan_s**2 + tan_o**2 - 2.0 * tan_s * tan_o * torch.cos(psi_r)).clamp_min(1e-30)
    )

    # Leaf-angle averaged extinction and scattering coefficients: (M, 1) each.
    lidf = ellipsoidal_lidf(lidfa[..., 0])
    ttl = torch.as_tensor(_LEAF_ANGLES_RAD, dtype=lai.dtype, device=lai.device)
    chi_s, chi_o, frho, ftau = volume_scattering(tts_r, tto_r, psi_r, ttl)
    ks = (lidf * chi_s / cts).sum(-1, keepdim=True)
    ko = (lidf * chi_o / cto).sum(-1, keepdim=True)
    sob = (lidf * frho).sum(-1, keepdim=True) * math.pi / (cts * cto)
    sof = (lidf * ftau).sum(-1, keepdim=True) * math.pi / (cts * cto)
    bf = (lidf * torch.cos(ttl) ** 2).sum(-1, keepdim=True)
    sdb, sdf = 0.5 * (ks + bf), 0.5 * (ks - bf)
    dob, dof = 0.5 * (ko + bf), 0.5 * (ko - bf)
    ddb, ddf = 0.5 * (1.0 + bf), 0.5 * (1.0 - bf)

    tss = torch.exp(-ks * lai)
    too = torch.exp(-ko * lai)
    z = _attenuation(ks, ko, lai)

    # Scattering coefficients per wavelength.
    sigb = ddb * rho + ddf * tau
    sigf = ddf * rho + ddb * tau
    sb = sdb * rho + sdf * tau
    sf = sdf * rho + sdb * tau
    vb = dob * rho + dof * tau
    vf = dof * rho + dob * tau
    w = sob * rho + sof * tau
    a = 1.0 - sigf
    m = torch.sqrt((a * a - sigb * sigb).clamp_min(1e-30))
    # (a − m)/sigb, written without its cancellation when sigb → 0.
    rinf = sigb / (a + m)
    rinf2 = rinf * rinf

    # Diffuse fluxes of the canopy layer (Verhoef's two-stream solution); only the terms
    # that the bidirectional reflectance factor needs.
    e1 = torch.exp(-m * lai)
    e2 = e1 * e1
    re = rinf * e1
    j1ks, j2ks, over_ksm = _exchange(ks, m, lai, tss, e1)
    j1ko, j2ko, over_kom = _exchange(ko, m, lai, too, e1)
    s_up, s_down = sf + sb * rinf, sf * rinf + sb
    v_up, v_down = vf + vb * rinf, vf * rinf + vb
    ps, qs = s_up * j1ks, s_down * j2ks
    pv, qv = v_up * j1ko, v_down * j2ko
    # One division for both 1/(1 − rinf² e²) and 1/(1 − rinf²).
    denom, rinf_gap = 1.0 - rinf2 * e2, 1.0 - rinf2
    inv = 1.0 / (denom * rinf_gap)
    over_denom = rinf_gap * inv
    rdd = rinf * (1.0 - e2) * over_denom
    tsd = (ps - re * qs) * over_denom
    tdo = (pv - re * qv) * over_denom
    rdo = (qv - re * pv) * over_denom

    # Multiple scattering inside the canopy towards the observer.
    g1 = (z - j1ks * too) * over_kom
    g2 = (z - j1ko * tss) * over_ksm
    t3 = (rdo * qs + tdo * ps) * rinf
    rsod = (v_down * g1 * s_up + v_up * g2 * s_down - t3) * (denom * inv)

    # Single scattering with the hot spot, then the soil and its interactions with the canopy.
    tsstoo, sumint = _hotspot(lai, ks, ko, hspot, dso)
    rsos = w * lai * sumint
    dn = 1.0 - rs * rdd
    soil_coupled = ((tss + tsd) * tdo + (tsd + tss * rs * rdd) * too) * rs / dn
    return rsos + rsod + tsstoo * rs + soil_coupled
