"""What do the S2 observations of the default site allow? LAI retrieval bounds next to SNAP.

The products' first goal (retired) asked for LAI 30 % better than SNAP's at SNAP's pixel-dates
(clear, valid, in the validation and test chunks). This benchmark measures, at exactly those
pixel-dates, what per-pixel regressors reach when they are given more and more of what a
label-free method cannot know:

- ``labelled``: trained on the simulator's true LAI of the training chunks (labels), from one
  date's spectrum and geometry; ``labelled_temporal`` adds the pixel's clear-date median
  spectrum and its previous and next clear spectra;
- ``hybrid_*``: no labels of the site, trained on releo's PROSAIL simulations (with the L2A
  noise model) as SNAP's processor is, at the site's own acquisition geometries, with
  variables drawn from releo's prior (``model_prior``) or from the simulator's joint
  distribution of variables over the training chunks (``true_joint``, an oracle), scored on the
  observed spectra as they are or with the simulator's exclusive optical effect subtracted
  (``effect_removed``, an oracle for the residual latents); ``*_smooth_residual``: the same
  simulations with random smooth spectra added (the synthetic term's augmentation,
  ``model.synthetic_residual``, off in ``params.yaml``: ``--residual`` sets its spread here),
  scored on the observed spectra: no oracle for the effect, only the knowledge that what
  PROSAIL lacks is broad;
- ``true_joint_in_sample``: the same oracle regressor on fresh simulations from the joint
  distribution: what one spectrum leaves ambiguous even with the right prior and no effect;
- ``hybrid_*_temporal_*``: the hybrids again, but trained on whole simulated seasons (a year
  of the site's dates, seen through real pixels' cloud masks) with the temporal features of
  ``labelled_temporal``: seasons from releo's prior with a generic double-logistic LAI
  (``model_prior``), the training pixels' true seasons (``true_joint``), and three oracles that
  isolate what the prior misses: the true LAI and soil with every trait from releo's prior
  (``true_seasons_prior_traits``), the reverse (``prior_seasons_true_traits``), and all true
  but the static canopy and soil traits (``true_joint_prior_static``).

All regressors are histogram gradient boosting (scikit-learn), the same for every row.

    .venv/bin/python benchmarks/retrieval_bound.py

Writes benchmarks/results/retrieval_bound.json.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch
import xarray as xr
from sklearn.ensemble import HistGradientBoostingRegressor

from releo.config import load_params
from releo.data.chunks import INDEX
from releo.data.contracts import MASK_CLEAR, S2_BANDS, S2_MASK
from releo.data.simulate.canopy import DYNAMIC_VARIABLES, STATIC_VARIABLES
from releo.data.simulate.effects import OPTICAL_BROWNING, OPTICAL_SPECTRUM
from releo.data.site import open_site
from releo.models.forward import s2_reflectance, with_l2a_noise
from releo.models.synthetic import prior_draws, residual_spectra
from releo.physics.srf import PLATFORMS
from releo.products.evaluate import held_out_mask
from releo.products.scores import scores
from report import report

ANGLES = ("sun_zenith", "view_zenith", "relative_azimuth")
EVALUATED_SPLITS = ("val", "test")


def regressor(features: np.ndarray, target: np.ndarray, seed: int) -> HistGradientBoostingRegressor:
    model = HistGradientBoostingRegressor(max_iter=400, max_leaf_nodes=63, random_state=seed)
    return model.fit(features, target)


def rmse(prediction: np.ndarray, truth: np.ndarray) -> float:
    return scores(prediction, truth)["rmse"]


def features(
    spectra: np.ndarray, clear: np.ndarray, geometry: np.ndarray, temporal: bool
) -> np.ndarray:
    """Feature rows of every pixel-date of ``spectra`` (t, h, w, 10): the bands, the date's
    ``geometry`` (t, 3) and, if ``temporal``, the context of the pixel's clear dates."""
    t, h, w, _ = spectra.shape
    parts = [spectra, np.broadcast_to(geometry[:, None, None], (t, h, w, 3))]
    if temporal:
        parts += temporal_context(spectra, clear)
    return np.concatenate(parts, -1).reshape(t * h * w, -1)


def temporal_context(spectra: np.ndarray, clear: np.ndarray) -> list[np.ndarray]:
    """The pixel's clear-date median spectrum, its previous and next clear spectra and the
    number of dates to them (NaN where there is none: the regressor handles missing)."""
    median = np.nanmedian(np.where(clear[..., None], spectra, np.nan), 0)
    out = [np.broadcast_to(median, spectra.shape)]
    for order in (slice(None), slice(None, None, -1)):
        seen = np.full(spectra.shape[1:], np.nan, np.float32)
        seen_at = np.full(spectra.shape[1:3], np.nan, np.float32)
        last = np.empty_like(spectra)
        gap = np.empty(spectra.shape[:3], np.float32)
        for i in np.arange(len(spectra))[order]:
            last[i], gap[i] = seen, np.abs(i - seen_at)
            seen = np.where(clear[i, ..., None], spectra[i], seen)
            seen_at = np.where(clear[i], i, seen_at)
        out += [last, gap[..., None]]
    return out


def season_draws(n: int, doy: np.ndarray, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` label-free seasons (t, n) at days of year ``doy``: releo's prior for every
    variable, drawn once per pixel, except LAI, which follows a generic double-logistic
    season (green-up anywhere from the previous autumn to late autumn, 60–250 days long, from
    a base of up to 40 % of the peak to a peak drawn from the prior), and the soil's dryness,
    drawn per date. Leaves senesce after the season: chlorophyll falls to 40 % and brown
    pigments rise to the drawn content (the generic pattern of leaf senescence; no class, no
    trait of the site)."""
    static = prior_draws((n,), gen)
    t = torch.as_tensor(doy, dtype=torch.float32)[:, None]

    def uniform(low: float, high: float) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, generator=gen)

    green_up, length = uniform(-120.0, 300.0), uniform(60.0, 250.0)
    rise, fall = uniform(5.0, 20.0), uniform(5.0, 20.0)
    growth = torch.sigmoid((t - green_up) / rise)
    senescence = torch.sigmoid((t - green_up - length) / fall)
    peak = static["lai"]
    base = peak * uniform(0.0, 0.4)
    out = {k: v.expand(len(doy), n).clone() for k, v in static.items()}
    out["lai"] = base + (peak - base) * growth * (1 - senescence)
    out["cab"] = static["cab"] * (1 - 0.6 * growth * senescence)
    out["cbrown"] = static["cbrown"] * growth * senescence
    out["psoil"] = prior_draws((len(doy), n), gen)["psoil"]
    return out


class SiteCube:
    """The site's S2 pixel-dates as flat feature rows, with truth, SNAP and chunk splits."""

    def __init__(self, data_dir: str, chunk_index: str):
        site = open_site(data_dir)
        s2, truth = site.s2, xr.open_zarr(site.path("truth"), consolidated=False)
        self.times = s2.time.values
        self.spectra = np.stack([s2[b].values for b in S2_BANDS], -1).astype(np.float32)
        h, w = self.spectra.shape[1:3]
        self.clear = s2[S2_MASK].values == MASK_CLEAR
        self.geometry = np.stack([s2[a].values for a in ANGLES], -1).astype(np.float32)
        self.platform = np.array([PLATFORMS.index(str(p)) for p in s2.platform.values])
        self.lai = truth["lai"].sel(time=self.times).values
        self.effect = truth[OPTICAL_BROWNING.pixel_variable].sel(time=self.times).values
        self.truth = truth
        snap = site.reference["lai"].values
        index = pd.read_parquet(chunk_index)
        self.train_places = held_out_mask(index, (h, w), ["train"])
        evaluated = held_out_mask(index, (h, w), list(EVALUATED_SPLITS))
        self.train_rows = np.flatnonzero((self.clear & self.train_places).reshape(-1))
        self.eval_rows = np.flatnonzero((self.clear & evaluated & np.isfinite(snap)).reshape(-1))
        self.snap = snap.reshape(-1)[self.eval_rows]
        self.target = self.lai.reshape(-1)

    def features(self, spectra: np.ndarray, temporal: bool = False) -> np.ndarray:
        return features(spectra, self.clear, self.geometry, temporal)

    def joint_draws(self, n: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
        """n draws of the simulator's variables at the training chunks' pixel-dates (the true
        joint distribution) and the S2 date index of each."""
        ys, xs = np.nonzero(self.train_places)
        pick, dates = rng.integers(0, ys.size, n), rng.integers(0, len(self.times), n)
        draws = {}
        for name, values in self.variables():
            at = (dates, ys[pick], xs[pick]) if values.ndim == 3 else (ys[pick], xs[pick])
            draws[name] = torch.as_tensor(values[at].astype(np.float32))
        return draws, dates

    def joint_series(self, n: int, rng: np.random.Generator) -> tuple[dict, np.ndarray]:
        """The simulator's variables (t, n) over the whole year at ``n`` training pixels (the
        true joint distribution of seasons, an oracle) and their clear masks (t, n)."""
        pick = self.training_pixels(n, rng)
        draws = {}
        for name, values in self.variables():
            at = values[:, pick[0], pick[1]] if values.ndim == 3 else values[pick]
            draws[name] = torch.as_tensor(np.broadcast_to(at, (len(self.times), n)).copy())
        return draws, self.clear[:, pick[0], pick[1]]

    def training_pixels(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        ys, xs = np.nonzero(self.train_places)
        pick = rng.choice(ys.size, min(n, ys.size), replace=False)
        return ys[pick], xs[pick]

    def variables(self):
        """(name, true values) of every PROSAIL variable: (y, x) if static, else (t, y, x)
        at the S2 dates."""
        for name in (*STATIC_VARIABLES, *DYNAMIC_VARIABLES):
            yield name, self.lai if name == "lai" else self.truth[name].values


def simulate(
    cube: SiteCube,
    draws: dict,
    dates: np.ndarray,
    seed: int,
    residual: float = 0.0,
    degree: int = 2,
) -> np.ndarray:
    """Noisy S2 spectra of ``draws`` at the geometry and platform of the site's ``dates``,
    as feature rows (bands, then angles); ``residual`` > 0 adds the synthetic term's smooth
    exclusive-effect spectra of that spread and Legendre ``degree``."""
    gen = torch.Generator().manual_seed(seed)
    geometry = torch.as_tensor(cube.geometry[dates])
    with torch.no_grad():
        rho = s2_reflectance(draws, geometry, torch.as_tensor(cube.platform[dates]), fused=False)
    if residual > 0:
        rho = rho + residual_spectra(len(dates), 1, 1, 1, residual, degree, gen)
    rho = with_l2a_noise(rho, gen)
    return np.concatenate([rho.numpy(), geometry.numpy()], -1)


def series_rows(
    cube: SiteCube,
    draws: dict,
    clear: np.ndarray,
    seed: int,
    residual: float = 0.0,
    degree: int = 2,
) -> tuple[np.ndarray, np.ndarray]:
    """Temporal feature rows and LAI of the clear pixel-dates of simulated seasons ``draws``
    (t, n) seen through the ``clear`` masks (t, n) at the site's dates."""
    t, n = clear.shape
    flat = {k: v.reshape(-1) for k, v in draws.items()}
    dates = np.repeat(np.arange(t), n)
    rho = simulate(cube, flat, dates, seed, residual, degree)[:, :10].reshape(t, n, 1, 10)
    rows = features(rho, clear[..., None], cube.geometry, temporal=True)
    keep = clear.reshape(-1)
    return rows[keep], draws["lai"].numpy().reshape(-1)[keep]


def temporal_hybrids(
    cube: SiteCube,
    scored_on: dict[str, np.ndarray],
    args: argparse.Namespace,
    degree: int,
    rng: np.random.Generator,
) -> dict[str, float]:
    """RMSE of regressors trained on whole simulated seasons, from the temporal features of
    ``labelled_temporal``, scored at the evaluated pixel-dates. Seasons drawn from releo's
    prior (:func:`season_draws`), the training pixels' true seasons (``true_joint``, an
    oracle), their true LAI and soil with every leaf and canopy trait from the prior
    (``true_seasons_prior_traits``), the reverse (``prior_seasons_true_traits``), or
    everything true but the static traits (N, leaf angle, hot spot, soil brightness) from the
    prior (``true_joint_prior_static``); the pixels' real clear masks. ``scored_on``: the
    evaluated rows' temporal features, "observed" and "effect_removed"."""
    truth = cube.target[cube.eval_rows]
    doy = (cube.times - cube.times[0].astype("datetime64[Y]")) / np.timedelta64(1, "D")
    gen = torch.Generator().manual_seed(args.seed + 3)
    prior = season_draws(args.series, doy, gen)
    true, clear = cube.joint_series(args.series, rng)
    traits = [k for k in true if k not in ("lai", "psoil")]
    rmses = {}
    for prior_name, draws in (
        ("model_prior", prior),
        ("true_joint", true),
        ("true_seasons_prior_traits", true | {k: prior[k] for k in traits}),
        ("prior_seasons_true_traits", true | {k: prior[k] for k in ("lai", "psoil")}),
        ("true_joint_prior_static", true | {k: prior[k] for k in STATIC_VARIABLES}),
    ):
        for residual in (0.0, args.residual):
            rows, lai = series_rows(cube, draws, clear, args.seed + 4, residual, degree)
            keep = rng.choice(lai.size, min(args.labelled, lai.size), replace=False)
            model = regressor(rows[keep], lai[keep], args.seed)
            spectra = ("observed", "effect_removed") if residual == 0 else ("observed",)
            for spectra_name in spectra:
                suffix = spectra_name if residual == 0 else "smooth_residual"
                name = f"hybrid_{prior_name}_temporal_{suffix}"
                rmses[name] = rmse(model.predict(scored_on[spectra_name]), truth)
                print(name, round(rmses[name], 4), flush=True)
    return rmses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--synthetic", type=int, default=200_000, help="simulated spectra")
    parser.add_argument("--labelled", type=int, default=300_000, help="labelled pixel-dates")
    parser.add_argument(
        "--residual", type=float, default=0.02, help="spread of the smooth residual spectra"
    )
    parser.add_argument("--series", type=int, default=8_000, help="simulated pixel seasons")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    params = load_params()
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    cube = SiteCube(params.data_dir, INDEX)
    truth = cube.target[cube.eval_rows]
    snap = rmse(cube.snap, truth)
    rmses: dict[str, float] = {}

    labelled = rng.choice(cube.train_rows, min(args.labelled, cube.train_rows.size), False)
    plain = cube.features(cube.spectra)
    temporal = cube.features(cube.spectra, temporal=True)
    for name, features in (("labelled", plain), ("labelled_temporal", temporal)):
        model = regressor(features[labelled], cube.target[labelled], args.seed)
        rmses[name] = rmse(model.predict(features[cube.eval_rows]), truth)
        print(name, round(rmses[name], 4), flush=True)

    observed = plain[cube.eval_rows]
    effect = cube.effect[..., None] * OPTICAL_SPECTRUM.astype(np.float32)
    removed = cube.features(cube.spectra - effect)[cube.eval_rows]
    n = args.synthetic
    prior = prior_draws((n,), torch.Generator().manual_seed(args.seed))
    joint, joint_dates = cube.joint_draws(n, rng)
    hybrids = {}
    prior_dates = rng.integers(0, len(cube.times), n)
    degree = params.model.s2_residual_degree
    for prior_name, draws, dates in (
        ("model_prior", prior, prior_dates),
        ("true_joint", joint, joint_dates),
    ):
        lai = draws["lai"].numpy()
        model = hybrids[prior_name] = regressor(
            simulate(cube, draws, dates, args.seed), lai, args.seed
        )
        smooth = simulate(cube, draws, dates, args.seed + 2, args.residual, degree)
        scored = {
            "observed": (model, observed),
            "effect_removed": (model, removed),
            "smooth_residual": (regressor(smooth, lai, args.seed), observed),
        }
        for spectra_name, (fitted, rows) in scored.items():
            name = f"hybrid_{prior_name}_{spectra_name}"
            rmses[name] = rmse(fitted.predict(rows), truth)
            print(name, round(rmses[name], 4), flush=True)
    fresh, fresh_dates = cube.joint_draws(n // 4, rng)
    fresh_spectra = simulate(cube, fresh, fresh_dates, args.seed + 1)
    in_sample = hybrids["true_joint"].predict(fresh_spectra)
    rmses["true_joint_in_sample"] = rmse(in_sample, fresh["lai"].numpy())
    temporal_scored_on = {
        "observed": temporal[cube.eval_rows],
        "effect_removed": cube.features(cube.spectra - effect, temporal=True)[cube.eval_rows],
    }
    rmses |= temporal_hybrids(cube, temporal_scored_on, args, degree, rng)

    goal = 0.7 * snap
    report(
        "retrieval_bound",
        {
            "pixel_dates": int(truth.size),
            "splits": list(EVALUATED_SPLITS),
            "snap_lai_rmse_truth": snap,
            "goal_lai_rmse": goal,
            "lai_rmse": rmses,
            "ratio_to_snap": {k: v / snap for k, v in rmses.items()},
            "meets_goal": {k: v <= goal for k, v in rmses.items()},
            "synthetic_spectra": n,
            "smooth_residual_spread": args.residual,
            "labelled_pixel_dates": int(labelled.size),
            "simulated_seasons": args.series,
            "seconds": time.perf_counter() - start,
        },
    )


if __name__ == "__main__":
    main()
