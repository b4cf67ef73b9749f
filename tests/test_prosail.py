"""PROSAIL against the PyPI `prosail` reference, plus gradients, batching and domain errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
import torch

from releo.data.contracts import S2_BANDS
from releo.physics import (
    PARAMETERS,
    prosail_s2_bands,
    prosail_spectrum,
    random_parameters,
    s2_bands,
)
from releo.physics.prospect import exp1
from releo.physics.reference import reference_spectra
from releo.physics.spectra import interface_transmissivity, leaf_spectra

pytest.importorskip("prosail")


def draws(n: int, seed: int) -> dict[str, torch.Tensor]:
    """Random draws over the PROSAIL-VAE ranges, with the edges forced into the first rows."""
    p = random_parameters(n, seed=seed, dtype=torch.float64)
    p["lai"][:3] = torch.tensor([0.0, 1e-6, 10.0], dtype=torch.float64)
    p["hspot"][3] = 0.0
    p["psi"][4], p["tto"][4], p["tts"][4] = 0.0, 10.0, 10.0  # exact hot-spot geometry
    return p


def test_matches_reference_on_200_draws():
    p = draws(220, seed=7)
    ours = prosail_spectrum(**p).numpy()
    ref = reference_spectra(p)
    assert ours.shape == (220, 2101)
    assert np.abs(ours - ref).max() <= 1e-4


def test_float32_stays_close_to_float64():
    p = draws(64, seed=11)
    f64 = prosail_spectrum(**p)
    f32 = prosail_spectrum(**{k: v.float() for k, v in p.items()})
    assert f32.dtype == torch.float32
    assert (f32.double() - f64).abs().max() < 1e-4


def test_gradients_are_finite_in_every_parameter_including_edges():
    p = {k: v.clone().requires_grad_(True) for k, v in draws(40, seed=3).items()}
    spectrum = prosail_spectrum(**p)
    spectrum.sum().backward()
    for name in PARAMETERS:
        assert torch.isfinite(p[name].grad).all(), name
    # LAI changes reflectance, so its gradient must not vanish (unless over a soil-like leaf).
    assert (p["lai"].grad.abs() > 0).float().mean() > 0.9


def test_gradient_matches_finite_difference():
    p = draws(5, seed=5)
    p["lai"] = torch.full((5,), 2.0, dtype=torch.float64, requires_grad=True)
    prosail_spectrum(**p)[:, 860 - 400].sum().backward()
    eps = 1e-6
    up = prosail_spectrum(**{**p, "lai": p["lai"].detach() + eps})[:, 460]
    down = prosail_spectrum(**{**p, "lai": p["lai"].detach() - eps})[:, 460]
    np.testing.assert_allclose(p["lai"].grad.numpy(), ((up - down) / (2 * eps)).numpy(), rtol=1e-5)


def test_batches_over_any_leading_shape_and_broadcasts():
    p = draws(6, seed=2)
    grid = {k: v.reshape(2, 3) for k, v in p.items()}
    grid["lai"] = torch.linspace(0.5, 6.0, 4, dtype=torch.float64).reshape(4, 1, 1)
    out = prosail_spectrum(**grid)
    assert out.shape == (4, 2, 3, 2101)
    single = prosail_spectrum(**{k: v[1, 2] for k, v in grid.items() if k != "lai"}, lai=6.0)
    torch.testing.assert_close(out[3, 1, 2], single)
    scalar = prosail_spectrum(1.5, 40, 8, 0, 0, 0.01, 0.009, 3, 57, 0.2, 30, 5, 90, 0.5, 1)
    assert scalar.shape == (2101,) and scalar.dtype == torch.get_default_dtype()


def test_band_path_agrees_with_full_spectrum_integration():
    p = draws(300, seed=9)
    full = s2_bands(prosail_spectrum(**p))
    fast = prosail_s2_bands(**p)
    assert fast.shape == (300, 10)
    assert (fast - full).abs().max() < 1e-3
    assert (fast - full).abs().mean() < 1e-4


def test_s2_bands_integrates_srf_weighted_mean():
    flat = np.full((3, 2101), 0.37)
    np.testing.assert_allclose(s2_bands(flat), 0.37, rtol=1e-12)
    ramp = torch.linspace(0, 1, 2101, dtype=torch.float64)
    bands = s2_bands(ramp)
    assert torch.all(bands[1:] >= bands[:-1])  # band centres increase with wavelength
    # B04 (red, ~665 nm) of a linear ramp equals the ramp at its SRF centroid.
    assert abs(bands[2].item() - (665 - 400) / 2100) < 2e-3
    with pytest.raises(ValueError, match="2101"):
        s2_bands(np.zeros(100))
    with pytest.raises(ValueError, match="platform"):
        s2_bands(flat, platform="L8")


def test_vegetation_spectrum_is_physical():
    # A dense spherical canopy seen off the hot spot.
    bands = prosail_s2_bands(1.5, 50, 10, 0, 0, 0.012, 0.008, 4, 57, 0.1, 35, 5, 100, 0.5, 1)
    b = dict(zip(S2_BANDS, bands, strict=True))
    assert b["B04"] < b["B03"] < b["B08"]  # green peak, red absorption, NIR plateau
    assert (b["B08"] - b["B04"]) / (b["B08"] + b["B04"]) > 0.7  # dense canopy NDVI


def test_out_of_domain_and_nan_raise_naming_the_parameter():
    p = {k: v[4:8] for k, v in draws(8, seed=4).items()}
    with pytest.raises(ValueError, match=r"'lai'=-1 is outside its domain \[0.0, 15.0\]"):
        prosail_spectrum(**{**p, "lai": torch.tensor([-1.0, 1, 2, 3], dtype=torch.float64)})
    with pytest.raises(ValueError, match="'cab' contains NaN"):
        prosail_s2_bands(**{**p, "cab": torch.tensor([40, np.nan, 40, 40], dtype=torch.float64)})
    clipped = prosail_spectrum(
        **{**p, "lai": torch.full((4,), 20.0, dtype=torch.float64)}, clip=True
    )
    torch.testing.assert_close(clipped, prosail_spectrum(**{**p, "lai": torch.full((4,), 15.0)}))


def test_exp1_and_interface_transmissivity_against_closed_forms():
    x = torch.logspace(-6, 2, 500, dtype=torch.float64)
    np.testing.assert_allclose(exp1(x).numpy(), scipy.special.exp1(x.numpy()), atol=2e-7)
    # Normal incidence limit: Fresnel transmissivity 4n/(n+1)^2 for a tiny cone.
    n = leaf_spectra().refractive_index
    np.testing.assert_allclose(interface_transmissivity(0.01, n), 4 * n / (n + 1) ** 2, rtol=1e-8)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_gpu():
    p = {k: v.cuda() for k, v in draws(64, seed=8).items()}
    out = prosail_s2_bands(**p)
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), prosail_s2_bands(**{k: v.cpu() for k, v in p.items()}))
