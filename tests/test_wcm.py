"""Water Cloud Model: limits, monotonicity, gradients, dtypes, broadcasting, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from releo.physics.wcm import (
    WCM_DEFAULTS,
    WCMParameters,
    db_to_linear,
    linear_to_db,
    water_cloud_model,
    wcm_backscatter_db,
)

P = WCMParameters(A=0.02, B=0.2, C=-15.0, D=20.0)


def test_bare_soil_is_exactly_the_soil_term() -> None:
    mv = torch.tensor([0.05, 0.2, 0.45], dtype=torch.float64)
    sigma = water_cloud_model(torch.zeros(3, dtype=torch.float64), mv, 35.0, P)
    assert torch.equal(sigma, db_to_linear(P.C + P.D * mv))  # τ² = 1 and the canopy term is 0
    torch.testing.assert_close(sigma, 10.0 ** ((P.C + P.D * mv) / 10.0), rtol=1e-14, atol=0)
    db = wcm_backscatter_db(0.0, 0.2, 35.0, params=P)
    assert db == pytest.approx(P.C + P.D * 0.2, abs=1e-12)


def test_matches_hand_computed_value() -> None:
    # θ = 60° → cosθ = 0.5; τ² = exp(-2·0.2·2/0.5) = exp(-1.6); soil = 10^((-15 + 20·0.25)/10).
    tau2 = math.exp(-1.6)
    expected = 0.02 * 2.0 * 0.5 * (1.0 - tau2) + tau2 * 10.0 ** (-1.0)
    sigma = water_cloud_model(torch.tensor(2.0, dtype=torch.float64), 0.25, 60.0, P)
    assert float(sigma) == pytest.approx(expected, rel=1e-12)


def test_dense_canopy_saturates_to_vegetation_term() -> None:
    # τ² = exp(-2·B·LAI/cosθ) → 0, so σ0 → A·LAI·cosθ: the soil is no longer seen.
    p = WCMParameters(A=0.02, B=5.0, C=-15.0, D=20.0)
    theta = 40.0
    sigma = water_cloud_model(torch.tensor(15.0, dtype=torch.float64), 0.3, theta, p)
    expected = p.A * 15.0 * math.cos(math.radians(theta))
    assert float(sigma) == pytest.approx(expected, rel=1e-12)
    wetter = water_cloud_model(torch.tensor(15.0, dtype=torch.float64), 0.55, theta, p)
    assert float(wetter) == pytest.approx(float(sigma), rel=1e-12)


def test_monotonic_in_soil_moisture() -> None:
    mv = torch.linspace(0.0, 0.6, 61, dtype=torch.float64)
    for lai in (0.0, 1.0, 3.0):
        for pol in ("VV", "VH"):
            db = wcm_backscatter_db(torch.full_like(mv, lai), mv, 38.0, pol)
            assert (db.diff() > 0).all()


def test_defaults_give_plausible_sentinel1_levels() -> None:
    mv = np.array([0.05, 0.25, 0.45])
    for theta in (30.0, 45.0):
        bare = wcm_backscatter_db(np.zeros(3), mv, theta, "VV")
        assert ((bare > -15.0) & (bare < -8.0)).all()
        dense = wcm_backscatter_db(np.array([4.0, 5.0, 6.0]), 0.25, theta, "VV")
        assert ((dense > -12.5) & (dense < -9.0)).all()
        vh = wcm_backscatter_db(np.array([0.0, 2.0, 5.0]), 0.25, theta, "VH")
        vv = wcm_backscatter_db(np.array([0.0, 2.0, 5.0]), 0.25, theta, "VV")
        assert ((vv - vh > 6.0) & (vv - vh < 8.0)).all()


def test_db_linear_round_trip() -> None:
    x = torch.linspace(-30.0, 5.0, 36, dtype=torch.float64)
    torch.testing.assert_close(linear_to_db(db_to_linear(x)), x)
    assert db_to_linear(torch.tensor(-10.0)).item() == pytest.approx(0.1)
    a = np.array([1e-4, 0.05, 1.0, 3.0])
    np.testing.assert_allclose(db_to_linear(linear_to_db(a)), a, rtol=1e-12)
    assert linear_to_db(0.01) == pytest.approx(-20.0)


def test_gradients_finite_including_bare_soil() -> None:
    lai = torch.tensor([0.0, 0.5, 3.0, 15.0], dtype=torch.float64, requires_grad=True)
    mv = torch.tensor([0.0, 0.1, 0.3, 0.6], dtype=torch.float64, requires_grad=True)
    params = {k: torch.tensor(v, dtype=torch.float64, requires_grad=True) for k, v in
              dict(A=0.02, B=0.2, C=-15.0, D=20.0).items()}  # fmt: skip
    sigma = water_cloud_model(lai, mv, 37.0, WCMParameters(**params))
    linear_to_db(sigma).sum().backward()
    for g in (lai.grad, mv.grad, *(p.grad for p in params.values())):
        assert g is not None and torch.isfinite(g).all()
    assert (mv.grad[:3] > 0).all()  # wetter soil is brighter until the canopy hides it
    assert params["A"].grad > 0 and params["B"].grad != 0


def test_gradient_matches_finite_difference_in_lai() -> None:
    lai = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    water_cloud_model(lai, 0.25, 40.0, P).backward()
    h = 1e-6
    fd = (
        water_cloud_model(torch.tensor(2.0 + h, dtype=torch.float64), 0.25, 40.0, P)
        - water_cloud_model(torch.tensor(2.0 - h, dtype=torch.float64), 0.25, 40.0, P)
    ) / (2 * h)
    assert lai.grad.item() == pytest.approx(fd.item(), rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_kept(dtype: torch.dtype) -> None:
    lai = torch.tensor([0.0, 2.0, 6.0], dtype=dtype)
    out = wcm_backscatter_db(lai, torch.full((3,), 0.2, dtype=dtype), 35.0, "VH")
    assert out.dtype == dtype and torch.isfinite(out).all()
    ref = wcm_backscatter_db(lai.double(), torch.full((3,), 0.2, dtype=torch.float64), 35.0, "VH")
    torch.testing.assert_close(out.double(), ref, rtol=1e-5, atol=1e-4)


def test_broadcasting_and_numpy_in_numpy_out() -> None:
    lai = torch.linspace(0.0, 6.0, 4, dtype=torch.float64).reshape(4, 1)
    mv = torch.linspace(0.05, 0.45, 5, dtype=torch.float64).reshape(1, 5)
    out = wcm_backscatter_db(lai, mv, torch.tensor(39.0, dtype=torch.float64))
    assert out.shape == (4, 5)
    for i in range(4):
        for j in range(5):
            single = wcm_backscatter_db(lai[i, 0], mv[0, j], 39.0)
            assert out[i, j].item() == pytest.approx(single.item(), rel=1e-12)
    batched = water_cloud_model(np.ones((2, 3, 1)), np.full((7,), 0.2), 30.0, P)
    assert isinstance(batched, np.ndarray) and batched.shape == (2, 3, 7)
    as32 = water_cloud_model(np.ones(3, dtype=np.float32), 0.2, 30.0, P)
    assert as32.dtype == np.float32


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"lai": -0.1}, r"lai.*\[0\.0, 15\.0\].*got -0\.1 "),
        ({"lai": 15.5}, r"lai.*got 15\.5 "),
        ({"lai": float("nan")}, r"lai.*got nan "),
        ({"soil_moisture": 0.7}, r"soil_moisture.*\[0\.0, 0\.6\].*got 0\.7 "),
        ({"soil_moisture": -0.01}, r"soil_moisture.*got -0\.01 "),
        ({"incidence_deg": 0.0}, r"incidence_deg.*\(0\.0, 90\.0\).*got 0 "),
        ({"incidence_deg": 95.0}, r"incidence_deg.*got 95 "),
    ],
)
def test_bad_input_raises(kwargs: dict, pattern: str) -> None:
    # The offending value sits second in a float32 batch: the message must find and show it.
    good = {"lai": 1.0, "soil_moisture": 0.2, "incidence_deg": 35.0}
    args = {k: torch.tensor([v, kwargs.get(k, v)], dtype=torch.float32) for k, v in good.items()}
    with pytest.raises(ValueError, match=pattern):
        water_cloud_model(params=P, **args)
    with pytest.raises(ValueError, match=pattern):  # numpy / scalar inputs are checked too
        water_cloud_model(params=P, **(good | kwargs))


def test_unknown_polarisation_raises() -> None:
    assert set(WCM_DEFAULTS) == {"VV", "VH"}
    with pytest.raises(ValueError, match=r"'HH'.*VH.*VV"):
        wcm_backscatter_db(1.0, 0.2, 35.0, polarisation="HH")
