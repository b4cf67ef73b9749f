"""SNAP biophysical processor LAI: the operational Sentinel-2 LAI neural network.

A 5-neuron tansig network on 8 Sentinel-2 bands (B3 B4 B5 B6 B7 B8A B11 B12, BOA reflectance
0–1) plus cos(view zenith), cos(sun zenith) and cos(relative azimuth), with min–max input
normalisation and output denormalisation. The coefficients are the ones published with ESA's
Sentinel-2 Toolbox (versions 2.1 and 3.0), shipped here as package data.

Reference: Weiss, M., Baret, F. (2016, 2020). S2ToolBox Level 2 products: LAI, FAPAR, FCOVER.
ATBD, INRA-EMMAH Avignon (https://step.esa.int/docs/extra/ATBD_S2ToolBox_L2B_V1.1.pdf).
"""

from __future__ import annotations

import io
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any, NamedTuple

import numpy as np
import torch
import xarray as xr

__all__ = ["SNAP_ANGLES", "SNAP_BANDS", "SNAP_PLATFORMS", "SNAP_VERSIONS", "SnapLAI", "snap_lai"]

SNAP_BANDS: tuple[str, ...] = ("B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")
"""releo band names of the network's reflectance inputs, in network order."""

SNAP_ANGLES: tuple[str, ...] = ("view_zenith", "sun_zenith", "relative_azimuth")
"""Angle keys (degrees), in the network's order: they enter as cosines after the bands."""

SNAP_VERSIONS: tuple[str, ...] = ("2.1", "3.0")
SNAP_PLATFORMS: tuple[str, ...] = ("S2A", "S2B")

# Only the S2A network of version 3.0 is published; S2B uses it (the two MSIs are near twins).
_NETWORK_DIRS: dict[tuple[str, str], tuple[str, ...]] = {
    ("2.1", "S2A"): ("2_1", "LAI"),
    ("2.1", "S2B"): ("2_1", "LAI"),
    ("3.0", "S2A"): ("3_0", "S2A", "LAI"),
    ("3.0", "S2B"): ("3_0", "S2A", "LAI"),
}
_EXTREME_CASES_DIR = ("2_1", "LAI")  # 3.0 ships no extreme-case file; SNAP's 2.1 limits apply
_GRID_STEPS = 10  # the ATBD quantises each band's definition-domain range into 10 classes
_GRID_BITS = 4  # one hex digit per band is enough for classes 1..11


class SnapLAI(NamedTuple):
    """Output of :func:`snap_lai`.

    ``lai`` is the leaf area index (m² m⁻², NaN where an input is NaN). ``input_flag`` is True where
    the band reflectances lie outside the network's definition domain; ``output_flag`` is True where
    the raw LAI lies beyond the tolerated range (left unclipped). NaN pixels are not flagged.
    """

    lai: Any
    input_flag: Any
    output_flag: Any


@dataclass(frozen=True)
class _SnapNetwork:
    norm_min: np.ndarray  # (11,)
    norm_max: np.ndarray  # (11,)
    w1: np.ndarray  # (5, 11)
    b1: np.ndarray  # (5,)
    w2: np.ndarray  # (5,)
    b2: float
    lai_min: float
    lai_max: float
    domain_min: np.ndarray  # (8,) band reflectance bounds of the definition domain
    domain_max: np.ndarray
    grid_keys: np.ndarray | None  # sorted int64 codes of the valid quantised band combinations
    tolerance: float
    out_min: float
    out_max: float


def _read_csv(parts: Sequence[str], name: str) -> np.ndarray:
    resource = files("releo.physics") / "data" / "snap"
    for part in (*parts, name):  # one step at a time: namespace-package paths take one segment
        resource = resource / part
    return np.loadtxt(io.StringIO(resource.read_text()), delimiter=",", ndmin=2)


def _grid_codes(cells: np.ndarray) -> np.ndarray:
    shifts = np.arange(cells.shape[-1], dtype=np.int64) * _GRID_BITS
    return (cells.astype(np.int64) << shifts).sum(axis=-1)


def _check_version(version: str, platform: str) -> tuple[str, str]:
    if version not in SNAP_VERSIONS:
        raise ValueError(f"unknown SNAP version {version!r}; available: {list(SNAP_VERSIONS)}")
    if platform not in SNAP_PLATFORMS:
        raise ValueError(f"unknown platform {platform!r}; available: {list(SNAP_PLATFORMS)}")
    return version, platform


@cache
def _load_network(version: str, platform: str) -> _SnapNetwork:
    parts = _NETWORK_DIRS[_check_version(version, platform)]
    norm = _read_csv(parts, "LAI_Normalisation")
    denorm = _read_csv(parts, "LAI_Denormalisation").ravel()
    n_bands = len(SNAP_BANDS)
    if version == "2.1":
        minmax = _read_csv(parts, "LAI_DefinitionDomain_MinMax")
        domain_min, domain_max = minmax[0], minmax[1]
        grid_keys = np.unique(_grid_codes(_read_csv(parts, "LAI_DefinitionDomain_Grid")))
    else:
        domain_min, domain_max = norm[:n_bands, 0], norm[:n_bands, 1]
        grid_keys = None
    tolerance, out_min, out_max = _read_csv(_EXTREME_CASES_DIR, "LAI_ExtremeCases").ravel()
    return _SnapNetwork(
        norm_min=norm[:, 0],
        norm_max=norm[:, 1],
        w1=_read_csv(parts, "LAI_Weights_Layer1_Neurons"),
        b1=_read_csv(parts, "LAI_Weights_Layer1_Bias").ravel(),
        w2=_read_csv(parts, "LAI_Weights_Layer2_Neurons").ravel(),
        b2=float(_read_csv(parts, "LAI_Weights_Layer2_Bias").item()),
        lai_min=float(denorm[0]),
        lai_max=float(denorm[1]),
        domain_min=domain_min,
        domain_max=domain_max,
        grid_keys=grid_keys,
        # The file stores the tolerance as -0.2; SNAP's comparisons only make sense with its
        # magnitude (LAI in [-0.2, 0) is clipped to 0), and the shipped test cases need it.
        tolerance=abs(float(tolerance)),
        out_min=float(out_min),
        out_max=float(out_max),
    )


def _const(values: np.ndarray | float, like: Any) -> Any:
    """Network constants in the array type, dtype and device of ``like``."""
    if isinstance(like, torch.Tensor):
        return torch.as_tensor(values, dtype=like.dtype, device=like.device)
    return np.asarray(values, dtype=like.dtype)


def _forward(inputs: Any, net: _SnapNetwork) -> Any:
    """Raw network LAI from un-normalised inputs (..., 11), numpy or torch, before clipping."""
    xp = torch if isinstance(inputs, torch.Tensor) else np
    lo, hi = _const(net.norm_min, inputs), _const(net.norm_max, inputs)
    x = 2.0 * (inputs - lo) / (hi - lo) - 1.0
    h = xp.tanh(x @ _const(net.w1, inputs).T + _const(net.b1, inputs))
    y = h @ _const(net.w2, inputs) + net.b2
    return 0.5 * (y + 1.0) * (net.lai_max - net.lai_min) + net.lai_min


def _lai_from_inputs(inputs: Any, version: str = "3.0", platform: str = "S2A") -> Any:
    """Raw network LAI from the 11 inputs on the last axis.

    The inputs are 8 reflectances, then cos(view zenith), cos(sun zenith) and cos(relative azimuth):
    the layout of the shipped LAI_TestCases.
    """
    return _forward(inputs, _load_network(version, platform))


def _input_flag(refl: Any, net: _SnapNetwork) -> Any:
    """Out-of-definition-domain flag for reflectances (..., 8).

    As in the ATBD: per-band min/max, then the quantised band combination must be one seen in the
    training data.
    """
    xp = torch if isinstance(refl, torch.Tensor) else np
    lo, hi = _const(net.domain_min, refl), _const(net.domain_max, refl)
    finite = xp.isfinite(refl).all(-1)
    inside = ((refl >= lo) & (refl <= hi)).all(-1)
    if net.grid_keys is not None:
        cells = xp.floor(_GRID_STEPS * (refl - lo) / (hi - lo) + 1.0)
        cells = xp.where(inside[..., None], cells, xp.zeros_like(cells))  # NaN-free before the cast
        if xp is torch:
            shifts = torch.arange(refl.shape[-1], device=refl.device) * _GRID_BITS
            codes = (cells.to(torch.int64) << shifts).sum(-1)
            grid = torch.as_tensor(net.grid_keys, device=refl.device)
            inside = inside & torch.isin(codes, grid)
        else:
            inside = inside & np.isin(_grid_codes(cells), net.grid_keys)
    return finite & ~inside


def _extreme_cases(raw: Any, net: _SnapNetwork) -> tuple[Any, Any]:
    """SNAP output handling: clip LAI within tolerance of [min, max], flag (and keep) beyond."""
    xp = torch if isinstance(raw, torch.Tensor) else np
    flag = (raw < net.out_min - net.tolerance) | (raw > net.out_max + net.tolerance)
    if xp is torch:
        flag = flag.detach()
        clipped = torch.clamp(raw, net.out_min, net.out_max)
    else:
        clipped = np.clip(raw, net.out_min, net.out_max)
    return xp.where(flag, raw, clipped), flag


def _compute(refl: list[Any], angles_deg: list[Any], net: _SnapNetwork) -> SnapLAI:
    """numpy or torch core on already-converted, same-type arrays."""
    cosines: list[Any]
    stacked: Any
    if isinstance(refl[0], torch.Tensor):
        cosines = [torch.cos(torch.deg2rad(a)) for a in angles_deg]
        stacked = torch.stack(torch.broadcast_tensors(*refl, *cosines), dim=-1)
        with torch.no_grad():
            in_flag = _input_flag(stacked[..., : len(SNAP_BANDS)].to(torch.float64), net)
    else:
        cosines = [np.cos(np.deg2rad(a)) for a in angles_deg]
        stacked = np.stack(np.broadcast_arrays(*refl, *cosines), axis=-1)
        in_flag = _input_flag(stacked[..., : len(SNAP_BANDS)].astype(np.float64), net)
    lai, out_flag = _extreme_cases(_forward(stacked, net), net)
    return SnapLAI(lai, in_flag, out_flag)


def _fetch(mapping: Mapping[str, Any], keys: Sequence[str], what: str) -> list[Any]:
    if not isinstance(mapping, Mapping):
        raise ValueError(f"{what} must be a mapping (dict or xarray.Dataset) of {list(keys)}")
    missing = [k for k in keys if k not in mapping]
    if missing:
        available = sorted(map(str, mapping))
        raise ValueError(
            f"snap_lai: missing {what} {missing}; needs {list(keys)}, available: {available}"
        )
    return [mapping[k] for k in keys]


def _run_torch(values: list[Any], net: _SnapNetwork) -> SnapLAI:
    ref = next(v for v in values if isinstance(v, torch.Tensor))
    dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
    tensors = [torch.as_tensor(v, dtype=dtype, device=ref.device) for v in values]
    n = len(SNAP_BANDS)
    return _compute(tensors[:n], tensors[n:], net)


def _run_numpy(values: list[Any], net: _SnapNetwork) -> SnapLAI:
    n = len(SNAP_BANDS)
    dtype = np.result_type(*[np.asarray(v) for v in values[:n]], np.float32)
    arrays = [np.asarray(v, dtype=dtype) for v in values]
    return _compute(arrays[:n], arrays[n:], net)


def _run_xarray(values: list[Any], net: _SnapNetwork) -> SnapLAI:
    arrays = []
    for v in values:
        if isinstance(v, xr.DataArray):
            arrays.append(v)
        elif np.ndim(v) == 0:
            arrays.append(xr.DataArray(np.asarray(v)))
        else:
            raise ValueError("snap_lai: with xarray inputs, other inputs must be scalars")
    arrays = list(xr.broadcast(*arrays))
    dims = arrays[0].dims
    arrays = [a.transpose(*dims) for a in arrays]
    out = _run_numpy([a.values for a in arrays], net)
    coords: dict[Hashable, Any] = {}
    for a in arrays:
        for name, coord in a.coords.items():
            if name not in coords and set(coord.dims) <= set(dims):
                coords[name] = coord
    attrs = {
        "lai": {"units": "m2 m-2", "long_name": "SNAP biophysical processor LAI"},
        "input_flag": {"long_name": "input outside the SNAP definition domain"},
        "output_flag": {"long_name": "SNAP LAI outside the tolerated output range"},
    }
    return SnapLAI(
        *(
            xr.DataArray(data, dims=dims, coords=coords, name=name, attrs=attrs[name])
            for name, data in zip(SnapLAI._fields, out, strict=True)
        )
    )


def snap_lai(
    bands: Mapping[str, Any],
    angles: Mapping[str, Any],
    version: str = "3.0",
    platform: str = "S2A",
) -> SnapLAI:
    """Leaf area index (m² m⁻²) by the SNAP biophysical processor (Weiss & Baret ATBD).

    Args:
        bands: mapping band name → BOA reflectance (0–1) with at least B03 B04 B05 B06 B07 B8A B11
            B12; an ``xarray.Dataset`` works.
        angles: mapping with ``sun_zenith``, ``view_zenith``, ``relative_azimuth`` in degrees,
            broadcastable to the bands.
        version: network version, "3.0" (default) or "2.1".
        platform: "S2A" or "S2B". Only the S2A network of version 3.0 is published, so "S2B" uses
            it; version 2.1 has one network for both.

    numpy in → numpy out (float32 kept); torch in → torch out on the same dtype and device,
    differentiable w.r.t. reflectances and angles; xarray in → ``DataArray`` with the broadcast
    coords (other inputs must then be scalars). NaN inputs (clouds) give NaN LAI, unflagged.
    The definition domain is the 2.1 min/max + grid (ATBD) or, for 3.0 which ships none, the
    normalisation bounds of the bands. LAI within the 2.1 extreme-case tolerance of [0, 8] is
    clipped to it, as SNAP does; beyond, it is kept and ``output_flag`` is set.

    Raises:
        ValueError: unknown version/platform, or a band/angle key missing.
    """
    net = _load_network(version, platform)
    values = _fetch(bands, SNAP_BANDS, "band") + _fetch(angles, SNAP_ANGLES, "angle")
    if any(isinstance(v, torch.Tensor) for v in values):
        return _run_torch(values, net)
    if any(isinstance(v, xr.DataArray) for v in values):
        return _run_xarray(values, net)
    return _run_numpy(values, net)
