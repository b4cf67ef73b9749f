"""PROSAIL = PROSPECT-D + 4SAIL, batched over any leading shape, in torch.

Parameter names and units follow the field (and the PyPI ``prosail`` package): ``cw`` in cm,
``cm`` in g/cm², pigments in µg/cm², angles in degrees, ellipsoidal leaf angle distribution of
mean angle ``lidfa``; soil = rsoil · (psoil · dry + (1 − psoil) · wet).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache

import numpy as np
import torch

from releo.physics.prospect import prospect_d
from releo.physics.sail import foursail
from releo.physics.spectra import spectral_tensors
from releo.physics.srf import band_weights, reduced_sampling

PARAMETERS = (
    "N", "cab", "car", "cant", "cbrown", "cw", "cm",
    "lai", "lidfa", "hspot", "tts", "tto", "psi", "psoil", "rsoil",
)  # fmt: skip

PARAMETER_RANGES: Mapping[str, tuple[float, float]] = {
    "N": (1.0, 3.5),
    "cab": (0.0, 150.0),
    "car": (0.0, 40.0),
    "cant": (0.0, 40.0),
    "cbrown": (0.0, 5.0),
    "cw": (0.0, 0.1),
    "cm": (1e-4, 0.05),
    "lai": (0.0, 15.0),
    "lidfa": (0.0, 90.0),
    "hspot": (0.0, 1.0),
    "tts": (0.0, 85.0),
    "tto": (0.0, 85.0),
    "psi": (-360.0, 360.0),
    "psoil": (0.0, 1.0),
    "rsoil": (0.0, 5.0),
}
"""Physical domain of each parameter (inclusive): outside values raise, or are clipped."""

BAND_PATH_STEP_NM = 5
"""Node spacing of the band-level path inside each S2 band (see ``benchmarks/physics.py``)."""


def check_parameters(values: Mapping[str, torch.Tensor], clip: bool = False) -> dict:
    """Reject (or clip) NaN and out-of-domain parameters, naming the parameter and its range."""
    checked = {}
    for name, value in values.items():
        lo, hi = PARAMETER_RANGES[name]
        with torch.no_grad():
            bad_nan = torch.isnan(value)
            outside = (value < lo) | (value > hi)
        if bad_nan.any():
            raise ValueError(f"PROSAIL parameter {name!r} contains NaN (domain [{lo}, {hi}])")
        if outside.any():
            if not clip:
                worst = value[outside].flatten()[0].item()
                raise ValueError(
                    f"PROSAIL parameter {name!r}={worst:g} is outside its domain [{lo}, {hi}] "
                    f"({int(outside.sum())} value(s)); pass clip=True to clip"
                )
            value = value.clamp(lo, hi)
        checked[name] = value
    return checked


def _as_batch(values: Mapping[str, object]) -> tuple[dict[str, torch.Tensor], torch.Size]:
    tensors = [torch.as_tensor(v) for v in values.values()]
    floats = [t.dtype for t in tensors if t.is_floating_point()]
    dtype = floats[0] if floats else torch.get_default_dtype()
    for d in floats:
        dtype = torch.promote_types(dtype, d)
    device = next((t.device for t in tensors if t.dim() > 0), tensors[0].device)
    tensors = [t.to(dtype=dtype, device=device) for t in tensors]
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    flat = {k: t.expand(shape).reshape(-1, 1) for k, t in zip(values, tensors, strict=True)}
    return flat, shape


def _reflectance_core(
    p: dict[str, torch.Tensor], spectral: dict[str, torch.Tensor]
) -> torch.Tensor:
    contents = torch.cat([p["cab"], p["car"], p["cant"], p["cbrown"], p["cw"], p["cm"]], dim=1)
    rho, tau = prospect_d(p["N"], contents, spectral)
    dry_weight = p["rsoil"] * p["psoil"]
    soil = dry_weight * spectral["soil_dry"] + (p["rsoil"] - dry_weight) * spectral["soil_wet"]
    return foursail(rho, tau, soil, p["lai"], p["lidfa"], p["hspot"], p["tts"], p["tto"], p["psi"])


@cache
def _fused_core():
    # One compiled graph (no graph breaks in prospect/sail) fuses the ~150 elementwise ops per
    # wavelength into a few vectorised loops; dynamic shapes so every batch size reuses it.
    return torch.compile(_reflectance_core, dynamic=True)


def _reflectance(
    p: dict[str, torch.Tensor], index: tuple[int, ...] | None, fused: bool
) -> torch.Tensor:
    spectral = spectral_tensors(p["lai"].dtype, p["lai"].device, index)
    core = _fused_core() if fused else _reflectance_core
    return core(p, spectral)


def prosail_spectrum(
    N, cab, car, cant, cbrown, cw, cm, lai, lidfa, hspot, tts, tto, psi, psoil, rsoil,
    *, clip: bool = False, fused: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Canopy bidirectional reflectance factor at 400–2500 nm (1 nm): shape ``(..., 2101)``.

    Arguments are tensors (or numbers) broadcastable to one batch shape; dtype and device follow
    them (float32 by default). Differentiable in every argument. ``fused=True`` runs a
    ``torch.compile``-d kernel: ~20x faster on large batches after a one-off compilation (~1 min
    on 2 cores, cached on disk by torch inductor afterwards).
    """
    params, shape = _as_batch(dict(zip(PARAMETERS, (N, cab, car, cant, cbrown, cw, cm, lai,
                                                    lidfa, hspot, tts, tto, psi, psoil, rsoil),
                                       strict=True)))  # fmt: skip
    params = check_parameters(params, clip=clip)
    return _reflectance(params, None, fused).reshape(*shape, -1)


def prosail_s2_bands(
    N, cab, car, cant, cbrown, cw, cm, lai, lidfa, hspot, tts, tto, psi, psoil, rsoil,
    *, platform: str = "S2A", clip: bool = False, step_nm: int = BAND_PATH_STEP_NM,
    fused: bool = False,
) -> torch.Tensor:  # fmt: skip
    """Sentinel-2 band reflectances B02..B12 of PROSAIL, shape ``(..., 10)``: the fast path.

    PROSAIL runs only at nodes ``step_nm`` apart inside the band supports (~7× fewer than the
    full spectrum) and the piecewise-linear spectrum is integrated exactly against the SRFs.
    Its error against the full-spectrum integration is measured in ``benchmarks/physics.py``
    (max 8e-4, mean 5e-5 reflectance at 5 nm). ``fused`` as in :func:`prosail_spectrum`.
    """
    params, shape = _as_batch(dict(zip(PARAMETERS, (N, cab, car, cant, cbrown, cw, cm, lai,
                                                    lidfa, hspot, tts, tto, psi, psoil, rsoil),
                                       strict=True)))  # fmt: skip
    params = check_parameters(params, clip=clip)
    index, _ = reduced_sampling(platform, step_nm)
    refl = _reflectance(params, tuple(int(i) for i in index), fused)
    weights = band_weights(platform, refl.dtype, refl.device, step_nm)
    return (refl @ weights).reshape(*shape, -1)


def random_parameters(
    n: int, seed: int = 0, dtype: torch.dtype = torch.float64
) -> dict[str, torch.Tensor]:
    """Uniform draws over the PROSAIL-VAE training ranges (Zérah et al. 2024), for tests/benches."""
    ranges = {
        "N": (1.2, 1.8), "cab": (20.0, 90.0), "car": (5.0, 23.0), "cant": (0.0, 10.0),
        "cbrown": (0.0, 2.0), "cw": (0.0075, 0.075), "cm": (0.003, 0.011), "lai": (0.0, 10.0),
        "lidfa": (30.0, 80.0), "hspot": (0.0, 0.5), "tts": (0.0, 70.0), "tto": (0.0, 15.0),
        "psi": (0.0, 180.0), "psoil": (0.0, 1.0), "rsoil": (0.3, 3.5),
    }  # fmt: skip
    rng = np.random.default_rng(seed)
    return {
        k: torch.as_tensor(rng.uniform(lo, hi, n), dtype=dtype) for k, (lo, hi) in ranges.items()
    }
