"""Water Cloud Model (WCM) of Sentinel-1 C-band backscatter over vegetated soil.

σ0 = A·V1·cosθ·(1 − τ²) + τ²·σ0_soil,   τ² = exp(−2·B·V2 / cosθ),   σ0_soil[dB] = C + D·mv,

with V1 = V2 = LAI (m² m⁻²), θ the incidence angle, mv the volumetric soil moisture (m³ m⁻³);
terms are added in linear units. Batched torch functions (any leading shape, float32/float64,
differentiable); numpy in → numpy out.

Reference: Attema, E. P. W., Ulaby, F. T. (1978). Vegetation modeled as a water cloud.
Radio Science 13(2), 357–364.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch

__all__ = [
    "WCM_DEFAULTS",
    "WCMParameters",
    "db_to_linear",
    "linear_to_db",
    "water_cloud_model",
    "wcm_backscatter_db",
]

_LAI_RANGE = (0.0, 15.0)
_SOIL_MOISTURE_RANGE = (0.0, 0.6)
_INCIDENCE_RANGE = (0.0, 90.0)  # open interval


@dataclass(frozen=True)
class WCMParameters:
    """WCM parameters for one polarisation (floats, or torch tensors to fit them by gradient).

    A: vegetation backscatter per unit LAI (linear, dimensionless). B: attenuation per unit LAI
    (dimensionless). C: bare-soil backscatter of dry soil (dB). D: soil-moisture sensitivity
    (dB per m³ m⁻³).
    """

    A: float | torch.Tensor
    B: float | torch.Tensor
    C: float | torch.Tensor
    D: float | torch.Tensor


WCM_DEFAULTS: dict[str, WCMParameters] = {
    "VV": WCMParameters(A=0.022, B=0.20, C=-15.5, D=16.0),
    "VH": WCMParameters(A=0.0045, B=0.20, C=-22.5, D=14.0),
}
"""Generic C-band (Sentinel-1) crop defaults, V1 = V2 = LAI, mv in m³ m⁻³.

These are releo engineering defaults, not one paper's calibration table. They were chosen
within the usual orders of magnitude of LAI-based C-band WCM calibrations over crops and
grasslands (e.g. Baghdadi, El Hajj, Zribi, Fayad 2016, "Coupling SAR C-band and optical data for
soil moisture and leaf area index retrieval over irrigated grasslands", IEEE JSTARS 9(3),
1229–1243; Bao et al. 2018, Int. J. Appl. Earth Obs. Geoinf. 72, 76–85) and a soil sensitivity
D of 0.14–0.16 dB per vol.% (within the 0.1–0.4 dB/% usually reported at C-band), so that at
θ = 30–45°: VV over bare soil spans ≈ −15 dB (mv 0.05) to −8.3 dB (mv 0.45); a dense canopy
(LAI 4–6) gives ≈ −12 to −9.5 dB; VH is ≈ 7 dB below VV. Calibrate per site for quantitative use.
"""


def db_to_linear(x: Any) -> Any:
    """Decibels → linear power ratio (torch or numpy)."""
    if isinstance(x, torch.Tensor):
        return torch.pow(10.0, x / 10.0)
    return np.power(10.0, np.asarray(x) / 10.0)


def linear_to_db(x: Any) -> Any:
    """Linear power ratio → decibels (torch or numpy)."""
    if isinstance(x, torch.Tensor):
        return 10.0 * torch.log10(x)
    return 10.0 * np.log10(np.asarray(x))


def _check_range(
    name: str, unit: str, x: torch.Tensor, lo: float, hi: float, open_interval: bool
) -> None:
    """Raise ValueError on NaN or out-of-range values (no autograd, one reduction)."""
    with torch.no_grad():
        ok = (x > lo) & (x < hi) if open_interval else (x >= lo) & (x <= hi)
        bad = ~ok  # NaN fails both comparisons
        if bool(bad.any()):
            value = x[bad].flatten()[0].item()
            interval = f"({lo}, {hi})" if open_interval else f"[{lo}, {hi}]"
            raise ValueError(
                f"{name} must be in {interval} {unit}, got {value:.6g} "
                f"({int(bad.sum())} bad value(s))"
            )


def _to_tensors(*values: Any) -> tuple[list[torch.Tensor], bool]:
    """Tensors on one device and float dtype; also says whether any input was a torch tensor.

    The dtype promotes over the array inputs only, so Python scalars don't upcast float32.
    """
    any_torch = any(isinstance(v, torch.Tensor) for v in values)
    device = next((v.device for v in values if isinstance(v, torch.Tensor)), torch.device("cpu"))
    arrays = [torch.as_tensor(v) if isinstance(v, np.ndarray) else v for v in values]
    dtype = torch.get_default_dtype()
    typed = [a.dtype for a in arrays if isinstance(a, torch.Tensor) and a.is_floating_point()]
    if typed:
        dtype = typed[0]
        for other in typed[1:]:
            dtype = torch.promote_types(dtype, other)
    return [torch.as_tensor(a, dtype=dtype, device=device) for a in arrays], any_torch


def water_cloud_model(
    lai: Any,
    soil_moisture: Any,
    incidence_deg: Any,
    params: WCMParameters,
) -> Any:
    """Total backscatter σ0 (linear) of the Water Cloud Model (Attema & Ulaby 1978).

    Args:
        lai: leaf area index, m² m⁻², in [0, 15].
        soil_moisture: volumetric soil moisture, m³ m⁻³, in [0, 0.6].
        incidence_deg: incidence angle, degrees, in (0, 90).
        params: :class:`WCMParameters` (floats or tensors).

    Inputs broadcast; torch in → torch out (differentiable), otherwise numpy out.

    Raises:
        ValueError: NaN or out-of-range input, naming the parameter, its range and the value.
    """
    p = [getattr(params, f.name) for f in fields(WCMParameters)]
    (lai_t, mv_t, inc_t, A, B, C, D), is_torch = _to_tensors(lai, soil_moisture, incidence_deg, *p)
    _check_range("lai", "m2 m-2", lai_t, *_LAI_RANGE, open_interval=False)
    _check_range("soil_moisture", "m3 m-3", mv_t, *_SOIL_MOISTURE_RANGE, open_interval=False)
    _check_range("incidence_deg", "degrees", inc_t, *_INCIDENCE_RANGE, open_interval=True)

    cos_theta = torch.cos(torch.deg2rad(inc_t))
    tau2 = torch.exp(-2.0 * B * lai_t / cos_theta)  # two-way canopy transmissivity
    soil = db_to_linear(C + D * mv_t)
    sigma0 = A * lai_t * cos_theta * (1.0 - tau2) + tau2 * soil
    return sigma0 if is_torch else sigma0.numpy()


def wcm_backscatter_db(
    lai: Any,
    soil_moisture: Any,
    incidence_deg: Any,
    polarisation: str = "VV",
    params: WCMParameters | None = None,
) -> Any:
    """Total backscatter σ0 in dB of the Water Cloud Model for one S1 polarisation.

    ``params`` None uses ``WCM_DEFAULTS[polarisation]``. Units and ranges as in
    :func:`water_cloud_model`.

    Raises:
        ValueError: unknown polarisation, or bad input (see :func:`water_cloud_model`).
    """
    if polarisation not in WCM_DEFAULTS:
        raise ValueError(
            f"unknown polarisation {polarisation!r}; available: {sorted(WCM_DEFAULTS)}"
        )
    if params is None:
        params = WCM_DEFAULTS[polarisation]
    return linear_to_db(water_cloud_model(lai, soil_moisture, incidence_deg, params))
