"""Trajectories (a scalar observed on irregular days) and their daily drivers, checked.

Time is counted in days from the first day of the driver table. Following the simulator, the
value observed on day ``d`` is the state at the end of that day, and the drivers of day ``d``
act over (d − 1, d]. Every check raises :class:`~releo.data.errors.DataError` naming the
trajectory, the day and the offending value, so a bad input never surfaces as a crash deep
inside a regression.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from releo.data.errors import DataError


@dataclass(frozen=True)
class Drivers:
    """Daily control inputs: ``values[d]`` holds each driver over day ``d``."""

    names: tuple[str, ...]
    values: np.ndarray  # (n_days, n_drivers)
    dates: np.ndarray  # datetime64[D] of each day
    source: str = "drivers"

    def __post_init__(self) -> None:
        values = np.asarray(self.values, dtype=float)
        if values.ndim != 2 or values.shape != (len(self.dates), len(self.names)):
            raise DataError(
                f"{self.source}: expected {len(self.dates)} days x {len(self.names)} drivers, "
                f"got shape {values.shape}"
            )
        bad = ~np.isfinite(values)
        if bad.any():
            day, col = np.argwhere(bad)[0]
            raise DataError(
                f"{self.source}: {self.names[col]} is {values[day, col]} on "
                f"{self.dates[day]} ({int(bad.sum())} non-finite values); drivers must be finite"
            )
        object.__setattr__(self, "values", values)

    @classmethod
    def from_table(cls, table: pd.DataFrame, columns: dict[str, str], source: str) -> Drivers:
        """Drivers named by symbol from the ``columns`` of a daily table with a ``date``."""
        missing = [c for c in ("date", *columns.values()) if c not in table.columns]
        if missing:
            raise DataError(f"{source}: missing columns {missing}")
        dates = pd.to_datetime(table["date"]).to_numpy().astype("datetime64[D]")
        steps = np.diff(dates).astype(int)
        if (steps != 1).any():
            at = int(np.flatnonzero(steps != 1)[0])
            raise DataError(
                f"{source}: dates must be consecutive days; {dates[at]} is followed by "
                f"{dates[at + 1]}"
            )
        values = table[list(columns.values())].to_numpy(dtype=float)
        return cls(tuple(columns), values, dates, source)

    def day_of(self, dates: np.ndarray) -> np.ndarray:
        """Day indices of ``dates`` (datetime64) in this table."""
        return (np.asarray(dates, dtype="datetime64[D]") - self.dates[0]).astype(int)


@dataclass(frozen=True)
class Trajectory:
    """One scalar series (a field's effect, residual or LAI) on irregular days."""

    name: str
    days: np.ndarray  # int day indices, strictly increasing
    values: np.ndarray
    group: str = "train"  # "train" trajectories are fitted; the others are held out
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "days", np.asarray(self.days, dtype=int))
        object.__setattr__(self, "values", np.asarray(self.values, dtype=float))


def check_trajectory(traj: Trajectory, drivers: Drivers, min_dates: int, label: str) -> None:
    """Check that ``traj`` has usable observations inside the driver table.

    Raises:
        DataError: unless the observations are enough, increasing, finite and varying, and
            lie inside the driver table.
    """
    where = f"{label}: trajectory {traj.name!r}"
    if traj.days.shape != traj.values.shape or traj.values.ndim != 1:
        raise DataError(
            f"{where}: {traj.days.shape} days but {traj.values.shape} values (need 1-D, equal)"
        )
    if traj.days.size < min_dates:
        raise DataError(
            f"{where}: {traj.days.size} observation dates, at least {min_dates} are needed"
        )
    bad = ~np.isfinite(traj.values)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{where}: value {traj.values[first]} on {_date(drivers, traj.days[first])} "
            f"({int(bad.sum())} non-finite values)"
        )
    steps = np.diff(traj.days)
    if (steps <= 0).any():
        at = int(np.flatnonzero(steps <= 0)[0])
        raise DataError(
            f"{where}: days must increase strictly; {_date(drivers, traj.days[at])} is "
            f"followed by {_date(drivers, traj.days[at + 1])}"
        )
    if traj.days[0] < 0 or traj.days[-1] >= len(drivers.dates):
        raise DataError(
            f"{where}: observed from {_date(drivers, traj.days[0])} to "
            f"{_date(drivers, traj.days[-1])}, outside the drivers "
            f"({drivers.dates[0]}..{drivers.dates[-1]}, {drivers.source})"
        )
    if is_constant(traj.values):
        raise DataError(
            f"{where}: constant series (value {traj.values[0]:.6g} on all {traj.days.size} "
            "dates); there are no dynamics to identify"
        )


def is_constant(values: np.ndarray) -> bool:
    """No variation beyond rounding: nothing to identify."""
    scale = max(float(np.abs(values).max()), 1e-12)
    return float(np.ptp(values)) <= 1e-9 * scale


def check_trajectories(
    trajectories: Sequence[Trajectory], drivers: Drivers, min_dates: int, label: str
) -> None:
    """Check each trajectory and that names are unique."""
    if not trajectories:
        raise DataError(f"{label}: no trajectory to fit")
    names = [t.name for t in trajectories]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise DataError(f"{label}: duplicated trajectory names {duplicated[:5]}")
    for traj in trajectories:
        check_trajectory(traj, drivers, min_dates, label)


def _date(drivers: Drivers, day: int) -> str:
    if 0 <= day < len(drivers.dates):
        return str(drivers.dates[day])
    return f"day {day} (outside {drivers.dates[0]}..{drivers.dates[-1]})"


def smooth(traj: Trajectory, bandwidth_days: float) -> Trajectory:
    """Local-linear Gaussian-kernel smoothing in real time (days).

    Irregular gaps weigh what they span; a bandwidth of 0 returns the trajectory unchanged.
    """
    if bandwidth_days <= 0:
        return traj
    t = traj.days.astype(float)
    dt = t[:, None] - t[None, :]
    w = np.exp(-0.5 * (dt / bandwidth_days) ** 2)
    s0, s1, s2 = w.sum(1), (w * -dt).sum(1), (w * dt**2).sum(1)
    y0, y1 = w @ traj.values, (w * -dt) @ traj.values
    # Local-linear fit at each t_i: intercept of a weighted line in (t_j − t_i).
    det = s0 * s2 - s1**2
    safe = det > 1e-12 * np.maximum(s0 * s2, 1e-300)
    local = np.where(safe, (s2 * y0 - s1 * y1) / np.where(safe, det, 1.0), y0 / s0)
    return Trajectory(traj.name, traj.days, local, traj.group, dict(traj.meta))
