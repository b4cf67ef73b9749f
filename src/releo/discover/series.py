"""Field trajectories from per-pixel tables (the model's decoded residuals and LAI)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from releo.discover.config import DiscoverConfig
from releo.discover.fields import Fields
from releo.discover.trajectories import Drivers, Trajectory


def field_date_means(
    table: pd.DataFrame, columns: Sequence[str], *, clear_only: bool, min_clear_fraction: float
) -> pd.DataFrame:
    """Mean of ``columns`` per (field, date) over the sampled pixels.

    Over the clear pixels only when ``clear_only``, and only where enough of the field's sample was
    clear.
    """
    rows = table[table["field"] > 0]
    if rows.empty:
        return pd.DataFrame(columns=["field", "date", "pixels", *columns])
    total = rows.groupby(["field", "date"]).size().rename("sampled")
    used = rows[rows["clear"].astype(bool)] if clear_only else rows
    means = used.groupby(["field", "date"])[list(columns)].mean()
    means["pixels"] = used.groupby(["field", "date"]).size()
    out = means.join(total).reset_index()
    enough = out["pixels"] >= np.maximum(2, min_clear_fraction * out["sampled"])
    return out[enough].drop(columns="sampled").sort_values(["field", "date"])


def trajectories_from(
    means: pd.DataFrame,
    value: str,
    fields: Fields,
    drivers: Drivers,
    cfg: DiscoverConfig,
    scale: dict[int, float] | None = None,
) -> tuple[list[Trajectory], dict]:
    """One trajectory per field with at least ``min_dates`` observations.

    Values are optionally divided by a per-field ``scale``. Also returns counts of what was left
    out.
    """
    out, skipped = [], {"few_dates": 0, "no_scale": 0}
    for field_id, part in means.groupby("field"):
        field_id = int(field_id)
        values = part[value].to_numpy(dtype=float)
        if scale is not None:
            s = scale.get(field_id)
            if s is None or not s > 0:
                skipped["no_scale"] += 1
                continue
            values = values / s
        keep = np.isfinite(values)
        if keep.sum() < cfg.min_dates:
            skipped["few_dates"] += 1
            continue
        days = drivers.day_of(part["date"].to_numpy().astype("datetime64[D]"))[keep]
        group = "train" if fields.split.get(field_id) in cfg.fit_splits else "heldout"
        name = fields.names.get(field_id, f"field {field_id}")
        out.append(Trajectory(name, days, values[keep], group, {"field": field_id}))
    return out, {"kept": len(out), **skipped}
