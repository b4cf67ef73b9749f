"""Integration of a candidate equation with daily drivers.

Free runs and bridges between observations, and the integrals of every library term along them.

Drivers are constant over each day, so RK4 with ``substeps`` steps per day is accurate even
on heavy-rain days (rates near 1/day), and composite Simpson (trapezoid for odd ``substeps``)
integrates the library over the same nodes.
"""

from __future__ import annotations

import numpy as np

from releo.discover.library import Library, horner


def _rk4_day(
    lib: Library, coef: np.ndarray, x: np.ndarray, monomials: np.ndarray, substeps: int, bounds
) -> np.ndarray:
    """States at the ``substeps`` nodes after ``x`` over one day.

    ``monomials`` are the day's values of the driver monomials of each term.
    """
    h = 1.0 / substeps
    poly = lib.state_polynomial(coef, monomials)  # the drivers are fixed for the day
    nodes = np.empty((x.size, substeps))
    for s in range(substeps):
        k1 = horner(poly, x)
        k2 = horner(poly, x + 0.5 * h * k1)
        k3 = horner(poly, x + 0.5 * h * k2)
        k4 = horner(poly, x + h * k3)
        # A wrong candidate may blow up: clipping keeps the run finite (and visibly bad).
        x = np.clip(x + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4), *bounds)
        nodes[:, s] = x
    return nodes


def run_paths(
    lib: Library,
    coef: np.ndarray,
    x0: np.ndarray,
    start: np.ndarray,
    n_days: int,
    drivers: np.ndarray,
    substeps: int,
    bounds: tuple[float, float],
) -> np.ndarray:
    """Paths (n, n_days·substeps + 1) at every node, from ``x0`` at the end of day ``start``.

    Each path steps through days start+1, start+2, …; past the driver table the last day's
    drivers are repeated (callers ignore those nodes).
    """
    n = x0.size
    path = np.empty((n, n_days * substeps + 1))
    path[:, 0] = x = np.clip(np.asarray(x0, dtype=float), *bounds)
    last = drivers.shape[0] - 1
    monomials = lib.driver_monomials(drivers)  # once per day of the table, not per stage
    for day in range(n_days):
        day_terms = monomials[np.minimum(start + day + 1, last)]
        nodes = _rk4_day(lib, coef, x, day_terms, substeps, bounds)
        path[:, day * substeps + 1 : (day + 1) * substeps + 1] = nodes
        x = nodes[:, -1]
    return path


def _quadrature(substeps: int) -> np.ndarray:
    """Weights of the nodes of one day (Simpson when the step count is even)."""
    h = 1.0 / substeps
    if substeps % 2 == 0:
        w = np.ones(substeps + 1)
        w[1:-1:2], w[2:-1:2] = 4.0, 2.0
        return w * h / 3
    w = np.ones(substeps + 1)
    w[[0, -1]] = 0.5
    return w * h


def bridge_integrals(
    lib: Library,
    coef: np.ndarray,
    start: np.ndarray,
    length: np.ndarray,
    y0: np.ndarray,
    y1: np.ndarray,
    drivers: np.ndarray,
    substeps: int,
    bounds: tuple[float, float],
) -> tuple[np.ndarray, np.ndarray]:
    """Integrals ∫ Θ(x(t), u(t)) dt over each observation interval, and each term's RMS.

    The integrals are (n_intervals, n_terms), the RMS of each term along the paths (n_terms,).

    The path x(t) of an interval runs the current equation from the observed ``y0`` and is
    then bent linearly in time to end at the observed ``y1`` (a bridge): with no equation yet
    it is the straight line between observations, with the right one it is the true path.
    """
    n_days = int(length.max())
    path = run_paths(lib, coef, y0, start, n_days, drivers, substeps, bounds)
    rows = np.arange(start.size)
    total = length * substeps
    nodes = np.arange(path.shape[1])[None, :]
    tau = np.minimum(nodes / total[:, None], 1.0)
    path = path + (y1 - path[rows, total])[:, None] * tau
    weights = _quadrature(substeps)
    last = drivers.shape[0] - 1
    out = np.zeros((start.size, lib.powers.shape[0]))
    squares = np.zeros(lib.powers.shape[0])
    for day in range(n_days):
        active = day < length
        u = drivers[np.minimum(start + day + 1, last)]
        x = path[:, day * substeps : (day + 1) * substeps + 1]
        theta = lib.evaluate(x, np.broadcast_to(u[:, None, :], (*x.shape, u.shape[-1])))
        out += np.where(active[:, None], np.einsum("s,nsf->nf", weights, theta), 0.0)
        squares += np.einsum("s,nsf->f", weights, theta[active] ** 2)
    return out, np.sqrt(squares / length.sum())


def simulate_at(
    lib: Library,
    coef: np.ndarray,
    x0: np.ndarray,
    start: np.ndarray,
    days: list[np.ndarray],
    drivers: np.ndarray,
    substeps: int,
    bounds: tuple[float, float],
) -> list[np.ndarray]:
    """Free runs from ``x0`` at the end of day ``start``, read at each run's ``days``."""
    n_days = max(int(d.max() - s) for d, s in zip(days, start, strict=True))
    path = run_paths(lib, coef, x0, start, max(n_days, 1), drivers, substeps, bounds)
    return [path[i, (d - s) * substeps] for i, (d, s) in enumerate(zip(days, start, strict=True))]
