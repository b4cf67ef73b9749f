"""SNAP biophysical processor LAI: shipped test cases, backends, flags, errors."""

from __future__ import annotations

import io
from importlib.resources import files

import numpy as np
import pytest
import torch
import xarray as xr

from releo.physics.snap import (
    SNAP_ANGLES,
    SNAP_BANDS,
    SnapLAI,
    _extreme_cases,
    _lai_from_inputs,
    _load_network,
    snap_lai,
)

CASE_DIRS = {"3.0": ("3_0", "S2A", "LAI"), "2.1": ("2_1", "LAI")}


def _test_cases(version: str) -> np.ndarray:
    path = files("releo.physics") / "data" / "snap"
    for part in (*CASE_DIRS[version], "LAI_TestCases"):
        path = path / part
    return np.loadtxt(io.StringIO(path.read_text()), delimiter=",", ndmin=2)


def _as_mappings(cases: np.ndarray) -> tuple[dict, dict]:
    """Test-case rows → (bands, angles in degrees); the angles are stored as cosines."""
    # Column order from the ATBD, written out so a wrong SNAP_BANDS/SNAP_ANGLES order fails.
    band_names = ("B03", "B04", "B05", "B06", "B07", "B8A", "B11", "B12")
    angle_names = ("view_zenith", "sun_zenith", "relative_azimuth")
    bands = {name: cases[:, i] for i, name in enumerate(band_names)}
    angles = {name: np.rad2deg(np.arccos(cases[:, 8 + i])) for i, name in enumerate(angle_names)}
    return bands, angles


def _pixels(n: int = 6) -> tuple[dict, dict]:
    return _as_mappings(_test_cases("2.1")[:n])


@pytest.mark.parametrize("version", ["3.0", "2.1"])
def test_network_reproduces_shipped_test_cases(version: str) -> None:
    cases = _test_cases(version)
    assert len(cases) == {"3.0": 16, "2.1": 100}[version]
    lai = _lai_from_inputs(cases[:, :11], version=version)
    np.testing.assert_allclose(lai, cases[:, 11], atol=1e-3, rtol=0)


@pytest.mark.parametrize("version", ["3.0", "2.1"])
def test_public_api_reproduces_test_cases_unflagged(version: str) -> None:
    cases = _test_cases(version)
    out = snap_lai(*_as_mappings(cases), version=version)
    assert isinstance(out, SnapLAI)
    np.testing.assert_allclose(out.lai, cases[:, 11], atol=1e-3, rtol=0)
    assert not out.input_flag.any()
    assert not out.output_flag.any()


def test_angle_order_matters() -> None:
    # Swapping sun and view zenith must change the result: guards the input order.
    assert SNAP_ANGLES == ("view_zenith", "sun_zenith", "relative_azimuth")
    bands, angles = _pixels()
    swapped = {**angles, "sun_zenith": angles["view_zenith"], "view_zenith": angles["sun_zenith"]}
    assert np.abs(snap_lai(bands, swapped).lai - snap_lai(bands, angles).lai).max() > 0.05


def test_numpy_torch_xarray_agree() -> None:
    bands, angles = _pixels()
    ref = snap_lai(bands, angles)
    assert isinstance(ref.lai, np.ndarray) and ref.lai.dtype == np.float64

    t = snap_lai({k: torch.from_numpy(v) for k, v in bands.items()}, angles)
    assert isinstance(t.lai, torch.Tensor) and t.lai.dtype == torch.float64
    np.testing.assert_allclose(t.lai.numpy(), ref.lai, rtol=1e-12)
    np.testing.assert_array_equal(t.input_flag.numpy(), ref.input_flag)

    t32 = snap_lai({k: torch.from_numpy(v).float() for k, v in bands.items()}, angles)
    assert t32.lai.dtype == torch.float32
    np.testing.assert_allclose(t32.lai.numpy(), ref.lai, atol=1e-4)

    ds = xr.Dataset(
        {k: ("pixel", v) for k, v in bands.items()}, coords={"pixel": np.arange(10, 16)}
    )
    ang = {k: xr.DataArray(v, dims="pixel") for k, v in angles.items()}
    x = snap_lai(ds, ang)
    assert isinstance(x.lai, xr.DataArray) and x.lai.dims == ("pixel",)
    np.testing.assert_array_equal(x.lai["pixel"], ds["pixel"])
    np.testing.assert_allclose(x.lai.values, ref.lai, rtol=1e-12)


def test_xarray_broadcasts_angles_per_time() -> None:
    bands, _ = _pixels(4)
    time = np.array(["2023-06-01", "2023-06-11"], dtype="datetime64[ns]")
    ds = xr.Dataset(
        {k: (("time", "x"), np.stack([v, v])) for k, v in bands.items()},
        coords={"time": time, "x": [0.0, 10.0, 20.0, 30.0]},
    )
    ang = {
        "sun_zenith": xr.DataArray([30.0, 50.0], dims="time", coords={"time": time}),
        "view_zenith": 5.0,
        "relative_azimuth": 90.0,
    }
    out = snap_lai(ds, ang)
    assert out.lai.dims == ("time", "x") and out.lai.shape == (2, 4)
    np.testing.assert_array_equal(out.lai["time"], time)
    np.testing.assert_array_equal(out.lai["x"], ds["x"])
    single = snap_lai(bands, {"sun_zenith": 50.0, "view_zenith": 5.0, "relative_azimuth": 90.0})
    np.testing.assert_allclose(out.lai.isel(time=1).values, single.lai, rtol=1e-12)


def test_torch_gradient_finite_and_nonzero() -> None:
    bands, angles = _pixels()
    tb = {k: torch.tensor(v, requires_grad=True) for k, v in bands.items()}
    sun = torch.tensor(angles["sun_zenith"], requires_grad=True)
    out = snap_lai(tb, {**angles, "sun_zenith": sun}, version="2.1")
    out.lai.sum().backward()
    grads = [tb[k].grad for k in SNAP_BANDS] + [sun.grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert torch.stack(grads).abs().sum() > 0
    assert not out.input_flag.requires_grad


def test_nan_propagates_without_error_or_flag() -> None:
    bands, angles = _pixels()
    bands["B04"] = bands["B04"].copy()
    bands["B04"][2] = np.nan
    for version in ("3.0", "2.1"):
        out = snap_lai(bands, angles, version=version)
        assert np.isnan(out.lai[2]) and np.isfinite(np.delete(out.lai, 2)).all()
        assert not out.input_flag[2] and not out.output_flag[2]
    t = snap_lai({k: torch.from_numpy(v) for k, v in bands.items()}, angles, version="2.1")
    assert torch.isnan(t.lai[2]) and not t.input_flag[2]


@pytest.mark.parametrize("version", ["3.0", "2.1"])
def test_input_flag_fires_out_of_range(version: str) -> None:
    bands, angles = _pixels()
    bands["B03"] = bands["B03"].copy()
    bands["B03"][1] = 0.9
    out = snap_lai(bands, angles, version=version)
    np.testing.assert_array_equal(out.input_flag, np.arange(6) == 1)
    t = snap_lai({k: torch.from_numpy(v) for k, v in bands.items()}, angles, version=version)
    np.testing.assert_array_equal(t.input_flag.numpy(), out.input_flag)


def test_input_flag_fires_outside_grid_within_min_max() -> None:
    # Each band inside its own min/max, but a jagged combination no training spectrum produced.
    net = _load_network("2.1", "S2A")
    cells = np.array([10, 1, 10, 1, 10, 1, 10, 1])
    refl = net.domain_min + (cells - 0.5) / 10 * (net.domain_max - net.domain_min)
    bands = {k: np.array([refl[i]]) for i, k in enumerate(SNAP_BANDS)}
    angles = {"sun_zenith": 40.0, "view_zenith": 5.0, "relative_azimuth": 100.0}
    assert snap_lai(bands, angles, version="2.1").input_flag.all()
    t = snap_lai({k: torch.from_numpy(v) for k, v in bands.items()}, angles, version="2.1")
    assert t.input_flag.all()


def test_output_extreme_cases_clip_within_tolerance_flag_beyond() -> None:
    net = _load_network("3.0", "S2A")
    assert (net.tolerance, net.out_min, net.out_max) == (0.2, 0.0, 8.0)
    raw = np.array([-0.5, -0.1, 4.0, 8.1, 9.0, np.nan])
    lai, flag = _extreme_cases(raw, net)
    np.testing.assert_array_equal(lai, [-0.5, 0.0, 4.0, 8.0, 9.0, np.nan])
    np.testing.assert_array_equal(flag, [True, False, False, False, True, False])
    lai_t, flag_t = _extreme_cases(torch.from_numpy(raw), net)
    np.testing.assert_array_equal(lai_t.numpy(), lai)
    np.testing.assert_array_equal(flag_t.numpy(), flag)


def test_s2b_uses_s2a_network_for_3_0() -> None:
    bands, angles = _pixels()
    np.testing.assert_array_equal(
        snap_lai(bands, angles, platform="S2B").lai, snap_lai(bands, angles, platform="S2A").lai
    )
    assert _load_network("3.0", "S2A") is _load_network("3.0", "S2A")  # cached


def test_float32_numpy_stays_float32() -> None:
    bands, angles = _pixels()
    out = snap_lai({k: v.astype(np.float32) for k, v in bands.items()}, angles)
    assert out.lai.dtype == np.float32 and out.input_flag.dtype == bool


def test_missing_band_or_angle_and_bad_version_raise() -> None:
    bands, angles = _pixels()
    del bands["B05"]
    with pytest.raises(ValueError, match=r"B05.*available"):
        snap_lai(bands, angles)
    bands, angles = _pixels()
    del angles["relative_azimuth"]
    with pytest.raises(ValueError, match="relative_azimuth"):
        snap_lai(bands, angles)
    with pytest.raises(ValueError, match=r"'1\.0'.*2\.1.*3\.0"):
        snap_lai(*_pixels(), version="1.0")
    with pytest.raises(ValueError, match=r"'S2C'.*S2A"):
        snap_lai(*_pixels(), platform="S2C")
