"""Agreement scores of an LAI estimate with a reference: RMSE, bias, R², interval coverage."""

from __future__ import annotations

import math

import numpy as np


def scores(
    estimate: np.ndarray,
    reference: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> dict[str, float]:
    """``n``, ``rmse``, ``bias``, ``r2`` and ``coverage`` of an estimate against a reference.

    Over the pairs where both are finite: ``bias`` is estimate − reference, ``r2`` is
    1 − SSE/SST of the reference; ``coverage`` (share of the reference inside [low, high])
    when bounds are given. NaN when nothing is comparable.
    """
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    ok = np.isfinite(est) & np.isfinite(ref)
    out: dict[str, float] = {"n": int(ok.sum())}
    if not ok.any():
        out.update(rmse=math.nan, bias=math.nan, r2=math.nan)
        if low is not None:
            out["coverage"] = math.nan
        return out
    e, r = est[ok] - ref[ok], ref[ok]
    sst = float(((r - r.mean()) ** 2).sum())
    out.update(
        rmse=float(np.sqrt(np.mean(e**2))),
        bias=float(e.mean()),
        r2=1.0 - float((e**2).sum()) / sst if sst > 0 else math.nan,
    )
    if low is not None and high is not None:
        lo = np.asarray(low, dtype=np.float64).ravel()[ok]
        hi = np.asarray(high, dtype=np.float64).ravel()[ok]
        out["coverage"] = float(((r >= lo) & (r <= hi)).mean())
    return out


def grouped_scores(
    groups: np.ndarray,
    names: dict[int, str] | None,
    estimate: np.ndarray,
    reference: np.ndarray,
    low: np.ndarray | None = None,
    high: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """:func:`scores` per value of ``groups`` (same shape as the estimate).

    Groups are named by ``names`` (the value itself when absent); groups with nothing
    comparable are left out.
    """
    out = {}
    flat = np.asarray(groups).ravel()
    est, ref = np.asarray(estimate).ravel(), np.asarray(reference).ravel()
    lo = None if low is None else np.asarray(low).ravel()
    hi = None if high is None else np.asarray(high).ravel()
    for value in np.unique(flat):
        sel = flat == value
        result = scores(
            est[sel], ref[sel], None if lo is None else lo[sel], None if hi is None else hi[sel]
        )
        if result["n"]:
            key = names.get(int(value), str(value)) if names is not None else str(value)
            out[key] = result
    return out


def parcel_split(estimate: np.ndarray, reference: np.ndarray, groups: np.ndarray) -> dict:
    """RMSE of ``estimate`` split into ``between`` and ``within`` groups.

    ``between`` is the error of its means over each group (a parcel on one date), ``within``
    that of its deviations from them, so that between² + within² = rmse², over the pairs
    where both are finite; NaN when nothing is comparable.

    Tells a wrong level per parcel (the retrieval) from a wrong layout inside it (the
    spatial decoding); the reference's own ``within`` is what a map constant per group misses.
    """
    est = np.asarray(estimate, dtype=np.float64).ravel()
    ref = np.asarray(reference, dtype=np.float64).ravel()
    ok = np.isfinite(est) & np.isfinite(ref)
    if not ok.any():
        return {"between": math.nan, "within": math.nan, "reference_within": math.nan}
    _, group = np.unique(np.asarray(groups).ravel()[ok], return_inverse=True)
    count = np.bincount(group)

    def deviations(values: np.ndarray) -> np.ndarray:
        return values - (np.bincount(group, values) / count)[group]

    error = est[ok] - ref[ok]
    between = error - deviations(error)
    return {
        "between": float(np.sqrt(np.mean(between**2))),
        "within": float(np.sqrt(np.mean(deviations(error) ** 2))),
        "reference_within": float(np.sqrt(np.mean(deviations(ref[ok]) ** 2))),
    }
