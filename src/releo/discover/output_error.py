"""Output-error refinement: sparse Gauss–Newton on the simulation error itself.

Bridges between observations pass through the noisy values, so observation noise leaks into
the regressors and biases the coefficients (errors in variables). Here the equation is
judged by its free runs instead: each trajectory is simulated from a fitted initial value
with the daily drivers, and the coefficients minimise the misfit at the observation dates.
Each Gauss–Newton step is a sparse regression — pysindy's STLSQ on the sensitivities of the
simulated observations to every library coefficient (the initial values projected out), so
terms can still enter or leave — and pysindy's bagging ``EnsembleOptimizer`` on the same
linearised problem gives each term its inclusion probability.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pysindy as ps

from releo.discover.config import DiscoverConfig
from releo.discover.integrate import run_paths
from releo.discover.library import Library
from releo.discover.trajectories import Trajectory


@dataclass(frozen=True)
class Runs:
    """The observed trajectories as one batch of free runs."""

    start: np.ndarray
    offsets: list[np.ndarray]  # node index of each observation along its run
    values: np.ndarray  # all observations, concatenated
    sizes: np.ndarray
    n_days: int

    @classmethod
    def of(cls, trajectories: Sequence[Trajectory], substeps: int) -> Runs:
        """The runs of ``trajectories`` on a grid of ``substeps`` steps per day."""
        start = np.array([t.days[0] for t in trajectories])
        return cls(
            start=start,
            offsets=[(t.days - t.days[0]) * substeps for t in trajectories],
            values=np.concatenate([t.values for t in trajectories]),
            sizes=np.array([t.days.size for t in trajectories]),
            n_days=max(int(t.days[-1] - t.days[0]) for t in trajectories),
        )

    def split(self, flat: np.ndarray) -> list[np.ndarray]:
        """Per-trajectory parts of a flat array of all observations."""
        return np.split(flat, np.cumsum(self.sizes)[:-1])


def _simulate(runs: Runs, lib, coefs, x0, drivers, substeps, bounds) -> tuple[np.ndarray, ...]:
    """Observations simulated by each (coefficient row, initial values) variant.

    Returns them stacked as (n_variants, n_observations), and the paths of the first variant.
    """
    n_traj = runs.start.size
    n_var = coefs.shape[0]
    path = run_paths(
        lib,
        np.repeat(coefs, n_traj, axis=0),
        x0.reshape(-1),
        np.tile(runs.start, n_var),
        runs.n_days,
        drivers,
        substeps,
        bounds,
    )
    out = np.empty((n_var, runs.values.size))
    for v in range(n_var):
        rows = path[v * n_traj : (v + 1) * n_traj]
        out[v] = np.concatenate([rows[i, o] for i, o in enumerate(runs.offsets)])
    return out, path[:n_traj]


def _term_rms(lib: Library, path: np.ndarray, runs: Runs, drivers: np.ndarray, substeps: int):
    """RMS of every library term along the runs (at the end of each day)."""
    ends = path[:, ::substeps]
    day = runs.start[:, None] + np.arange(ends.shape[1])[None, :]
    inside = day <= (runs.start + np.array([o[-1] for o in runs.offsets]) // substeps)[:, None]
    theta = lib.evaluate(ends[inside], drivers[np.minimum(day[inside], drivers.shape[0] - 1)])
    return np.sqrt(np.mean(theta**2, axis=0))


@dataclass
class Linearised:
    """Gauss–Newton view of the misfit at a point.

    Response and design with the initial values projected out, per-trajectory initial-value
    sensitivities, and the misfit.
    """

    design: np.ndarray  # (n_obs, n_terms) sensitivities, x0 directions removed
    response: np.ndarray  # projected residual + design · coef
    x0_sensitivity: list[np.ndarray]
    residual: list[np.ndarray]
    jacobian: list[np.ndarray]
    mse: float
    term_rms: np.ndarray


def linearise(
    runs: Runs,
    lib: Library,
    coef: np.ndarray,
    x0: np.ndarray,
    drivers: np.ndarray,
    cfg: DiscoverConfig,
    bounds: tuple[float, float],
    rate_rms: float,
    support: np.ndarray | None = None,
) -> Linearised:
    """Sensitivities by forward differences, every variant in one batched run.

    Only the terms of ``support`` are varied when it is given; the other columns stay 0.
    """
    n_terms = coef.size
    varied = np.flatnonzero(np.ones(n_terms, bool) if support is None else support)
    step = 1e-6 * rate_rms
    coefs = np.vstack([coef, coef + step * np.eye(n_terms)[varied], coef])
    x0_step = 1e-6 * max(float(np.std(runs.values)), 1e-9)
    starts = np.vstack([np.tile(x0, (varied.size + 1, 1)), x0 + x0_step])
    sims, path = _simulate(runs, lib, coefs, starts, drivers, cfg.substeps, bounds)
    base = sims[0]
    jac = np.zeros((base.size, n_terms))
    jac[:, varied] = ((sims[1 : varied.size + 1] - base) / step).T
    g = (sims[-1] - base) / x0_step
    residual = runs.values - base
    blocks: list[np.ndarray] = []
    response: list[np.ndarray] = []
    gs: list[np.ndarray] = []
    rs: list[np.ndarray] = []
    js: list[np.ndarray] = []
    for sl in np.split(np.arange(base.size), np.cumsum(runs.sizes)[:-1]):
        gi, ri, ji = g[sl], residual[sl], jac[sl]
        norm = float(gi @ gi)
        blocks.append(ji - np.outer(gi, gi @ ji) / norm)
        response.append(ri - gi * (gi @ ri) / norm)
        gs.append(gi)
        rs.append(ri)
        js.append(ji)
    design = np.concatenate(blocks)
    return Linearised(
        design,
        np.concatenate(response) + design @ coef,
        gs,
        rs,
        js,
        float(np.mean(residual**2)),
        _term_rms(lib, path, runs, drivers, cfg.substeps),
    )


def _scale(lin: Linearised, rate_rms: float) -> np.ndarray:
    scale = lin.term_rms / max(rate_rms, 1e-300)
    scale[scale == 0] = 1.0
    return scale


def _x0_update(lin: Linearised, delta: np.ndarray) -> np.ndarray:
    return np.array(
        [
            g @ (r - j @ delta) / (g @ g)
            for g, r, j in zip(lin.x0_sensitivity, lin.residual, lin.jacobian, strict=True)
        ]
    )


def refine_output_error(
    trajectories: Sequence[Trajectory],
    lib: Library,
    coef: np.ndarray,
    drivers: np.ndarray,
    cfg: DiscoverConfig,
    bounds: tuple[float, float],
    rate_rms: float,
    support: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Linearised, int]:
    """Sparse Gauss–Newton from ``coef`` (plain least squares on ``support`` when given).

    Returns the coefficients, the initial values, the linearisation at the solution and the number
    of iterations made.
    """
    runs = Runs.of(trajectories, cfg.substeps)
    x0 = np.array([t.values[0] for t in trajectories], dtype=float)
    lin = linearise(runs, lib, coef, x0, drivers, cfg, bounds, rate_rms, support)
    stlsq = ps.STLSQ(threshold=cfg.threshold, alpha=cfg.alpha, max_iter=50)
    done = 0
    for done in range(1, cfg.refine_iterations + 1):  # noqa: B007 (returned)
        if support is None:
            scale = _scale(lin, rate_rms)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "eliminated all coefficients"
                target = stlsq.fit(lin.design / scale, lin.response).coef_[0] / scale
        else:
            target = np.zeros_like(coef)
            target[support] = np.linalg.lstsq(lin.design[:, support], lin.response, rcond=None)[0]
        delta = target - coef
        dx0 = _x0_update(lin, delta)
        accepted = None
        for fraction in (1.0, 0.5, 0.25, 0.125):
            trial = coef + fraction * delta if fraction < 1 else target
            trial_lin = linearise(
                runs, lib, trial, x0 + fraction * dx0, drivers, cfg, bounds, rate_rms, support
            )
            if trial_lin.mse < lin.mse:
                accepted = (trial, x0 + fraction * dx0, trial_lin)
                break
        if accepted is None:
            break
        gain = (lin.mse - accepted[2].mse) / max(lin.mse, 1e-300)
        coef, x0, lin = accepted
        if gain < 1e-7:
            break
    return coef, x0, lin, done


def bic(lin: Linearised, n_terms: int) -> float:
    """Bayesian information criterion of a fit from its simulation misfit."""
    n = sum(r.size for r in lin.residual)
    return n * np.log(max(lin.mse, 1e-300)) + n_terms * np.log(n)


def prune(
    trajectories: Sequence[Trajectory],
    lib: Library,
    coef: np.ndarray,
    lin: Linearised,
    drivers: np.ndarray,
    cfg: DiscoverConfig,
    bounds: tuple[float, float],
    rate_rms: float,
) -> tuple[np.ndarray, Linearised, list[dict]]:
    """Backward elimination on the simulation error.

    Drops the term whose removal costs the least misfit while the BIC falls, refits, and repeats.

    Near-collinear pairs that cancel (b² with b, T⁺·b with a seasonal b) can pass the
    threshold and the bagging together; the BIC asks whether the free runs need them. The
    cheapest term comes from the linearisation (its Wald increase of the squared error), so
    each step costs one refit.
    """
    steps = []
    n = sum(r.size for r in lin.residual)
    while np.count_nonzero(coef) > 1:
        support = coef != 0
        k = int(support.sum())
        current = bic(lin, k)
        design = lin.design[:, support]
        diagonal = np.clip(np.diag(np.linalg.pinv(design.T @ design)), 1e-300, None)
        increase = coef[support] ** 2 / diagonal
        cheapest = int(np.argmin(increase))
        sse = lin.mse * n
        if n * np.log((sse + increase[cheapest]) / n) + (k - 1) * np.log(n) >= current:
            break
        j = int(np.flatnonzero(support)[cheapest])
        keep = support & (np.arange(coef.size) != j)
        fit, _, fit_lin, _ = refine_output_error(
            trajectories, lib, coef * keep, drivers, cfg, bounds, rate_rms, keep
        )
        after = bic(fit_lin, k - 1)
        if after >= current:
            break
        steps.append({"dropped": lib.labels[j], "bic_before": current, "bic_after": after})
        coef, lin = fit, fit_lin
    return coef, lin, steps


def inclusion(lin: Linearised, cfg: DiscoverConfig, rate_rms: float) -> np.ndarray:
    """Inclusion probability of every term.

    The share of pysindy ``EnsembleOptimizer`` models (STLSQ on bootstrap samples of the linearised
    problem) that keep it.
    """
    scale = _scale(lin, rate_rms)
    # pysindy draws its bootstrap samples from numpy's legacy global generator: seed it,
    # then restore it so the rest of the program is unaffected.
    state = np.random.get_state()  # noqa: NPY002
    np.random.seed(cfg.seed)  # noqa: NPY002
    try:
        with warnings.catch_warnings():
            # a bootstrap sample may lose every term: that is an inclusion of 0, not news
            warnings.simplefilter("ignore", UserWarning)
            ensemble = ps.EnsembleOptimizer(
                ps.STLSQ(threshold=cfg.threshold, alpha=cfg.alpha, max_iter=50),
                bagging=True,
                n_models=cfg.n_models,
            )
            ensemble.fit(lin.design / scale, lin.response)
    finally:
        np.random.set_state(state)  # noqa: NPY002
    return (np.abs(np.array(ensemble.coef_list)[:, 0, :]) > 0).mean(axis=0)


def standard_errors(lin: Linearised, coef: np.ndarray) -> np.ndarray:
    """Gauss–Newton standard errors of the selected coefficients (0 for the others)."""
    std = np.zeros(coef.size)
    support = coef != 0
    if support.any():
        design = lin.design[:, support]
        dof = max(lin.response.size - int(support.sum()) - len(lin.residual), 1)
        sigma2 = float(np.sum(np.concatenate(lin.residual) ** 2)) / dof
        cov = sigma2 * np.linalg.pinv(design.T @ design)
        std[support] = np.sqrt(np.clip(np.diag(cov), 0, None))
    return std
