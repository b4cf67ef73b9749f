"""LAI calibration: the detection limit against PROSAIL, the spread scale against a known
overconfidence, and what the calibrated product promises (wider intervals, bare soil at 0)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from releo.config import load_params
from releo.data.errors import DataError
from releo.data.simulate.config import SimulationConfig
from releo.data.simulate.s2 import noise_sigma
from releo.models.distributions import PRIOR_MEDIANS, BoundedNormal
from releo.physics.prosail import PARAMETERS, prosail_s2_bands
from releo.products.calibrate import fit_spread_scale, predictive_coverage
from releo.products.decode import LaiCalibration

Z90 = 1.6448536


def test_detection_limit_is_where_a_canopy_leaves_bare_soil_by_the_l2a_noise():
    """params.yaml's limit: PROSAIL at the prior medians changes the S2 bands of its soil by
    about the simulated L2A noise (0.5-2x), and three times the limit is clearly above it."""
    limit = load_params().products.calibrate.detection_limit
    sim = SimulationConfig()
    values = {k: PRIOR_MEDIANS.get(k, 0.0) for k in PARAMETERS}
    values.update(tts=40.0, tto=5.0, psi=0.0, cant=0.0, cbrown=0.0)
    lai = torch.tensor([0.0, limit, 3 * limit], dtype=torch.float64)
    batch = {k: torch.full((3,), float(v), dtype=torch.float64) for k, v in values.items()}
    bands = prosail_s2_bands(**{**batch, "lai": lai})
    change = (bands[1:] - bands[0]).pow(2).mean(-1).sqrt().numpy()
    noise = np.sqrt(np.mean(noise_sigma(
        bands[0].numpy(), sim.s2_noise_absolute, sim.s2_noise_relative) ** 2))  # fmt: skip
    assert 0.5 < change[0] / noise < 2.0
    assert change[1] / noise > 2.5


def _overconfident(n: int, factor: float, survey_sd: float, seed: int = 0):
    """Decoded distributions whose true spread is ``factor`` times the stated one, and
    surveys of the truth with a measurement error ``survey_sd``."""
    gen = torch.Generator().manual_seed(seed)
    loc = torch.randn(n, generator=gen, dtype=torch.float64) * 0.8 - 1.0
    scale = torch.full((n,), 0.15, dtype=torch.float64)
    dist = BoundedNormal(loc, scale, 0.0, 10.0)
    truth = BoundedNormal(loc + factor * scale * torch.randn(n, generator=gen), scale, 0.0, 10.0)
    observed = truth.median + survey_sd * torch.randn(n, generator=gen, dtype=torch.float64)
    return dist, observed.numpy(), np.full(n, survey_sd)


def test_spread_scale_recovers_a_known_overconfidence_with_noisy_surveys():
    dist, observed, sd = _overconfident(1000, factor=3.0, survey_sd=0.5)
    scale, before, after = fit_spread_scale(dist, observed, sd, interval=0.9)
    assert 2.6 < scale < 3.4
    assert before < 0.75 and 0.9 <= after < 0.92
    # the survey error is not the model's: ignoring it would widen the product too much
    ignored, _, _ = fit_spread_scale(dist, observed, np.zeros_like(sd), interval=0.9)
    assert ignored > 1.2 * scale


def test_predictive_coverage_grows_with_the_scale_and_counts_bare_soil_inside():
    dist = BoundedNormal(torch.full((4,), -4.0), torch.full((4,), 0.5), 0.0, 10.0)
    zeros = np.zeros(4)
    # LAI ~0.18 (0.08..0.4): an exact 0 is outside, unless the detection limit reports it
    cov = predictive_coverage(dist, zeros, zeros, np.array([1.0]), interval=0.9)
    assert cov[0] == 0.0
    cov = predictive_coverage(
        dist, zeros, zeros, np.array([1.0, 2.0]), interval=0.9, detection_limit=0.08
    )
    assert cov[0] == 0.0 and cov[1] == 1.0
    dist, observed, sd = _overconfident(500, factor=2.0, survey_sd=0.1)
    cov = predictive_coverage(dist, observed, sd, np.geomspace(0.5, 5, 12), interval=0.9)
    assert np.all(np.diff(cov) >= -0.01) and cov[0] < 0.6 and cov[-1] > 0.95


def test_calibration_widens_the_interval_and_zeroes_lai_below_the_limit():
    dist = BoundedNormal(torch.tensor([-6.0, -1.0, 0.5]), torch.tensor([0.3, 0.3, 0.3]), 0, 10)
    cal = LaiCalibration(spread_scale=2.0, detection_limit=0.08)
    wide = cal.widen(dist)
    assert torch.equal(wide.median, dist.median)
    assert torch.all(wide.icdf(0.05) < dist.icdf(0.05)) and torch.all(
        wide.icdf(0.95) > dist.icdf(0.95)
    )
    low = cal.censor(wide.icdf(0.05))
    assert low[0] == 0.0 and dist.median[0] > 0  # LAI 0.025 is reported as bare soil
    assert torch.equal(cal.censor(dist.median)[1:], dist.median[1:])
    assert LaiCalibration().widen(dist) is dist


def test_calibration_file_errors_name_the_file_the_field_and_the_value(tmp_path):
    assert LaiCalibration.load(None) == LaiCalibration()
    with pytest.raises(DataError, match=r"nowhere\.json"):
        LaiCalibration.load(tmp_path / "nowhere.json")
    bad = tmp_path / "lai.json"
    bad.write_text(json.dumps({"spread_scale": -1.0, "detection_limit": 0.08}))
    with pytest.raises(DataError, match=r"lai\.json.*'spread_scale'.*-1\.0"):
        LaiCalibration.load(bad)
    bad.write_text(json.dumps({"spread_scale": 1.5}))
    with pytest.raises(DataError, match=r"'detection_limit'.*None"):
        LaiCalibration.load(bad)
    bad.write_text(json.dumps({"spread_scale": 1.5, "detection_limit": 0.0}))
    assert LaiCalibration.load(bad) == LaiCalibration(1.5, 0.0)
