"""Decoding LAI from chunk embeddings alone, at any point, grid and date.

Every query (map x, y and a day) falls in one chunk and one time window: its embedding and
the chunk-relative position (u, v) ∈ [0, 1)² go through the model's latent decoder without
any per-pixel context. Queries are grouped by embedding so that each model call decodes many
points of a few chunks (:func:`decode_queries`); grids and point lists are built on it.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
import xarray as xr
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.data.errors import DataError
from releo.models import PhysicsAutoencoder
from releo.models.decoder import LOGIT_BOUND, MIN_SCALE, linear_layer
from releo.models.distributions import (
    GAUSS_HERMITE_NODES,
    GAUSS_HERMITE_WEIGHTS,
    VARIABLE_RANGES,
    BoundedNormal,
)
from releo.models.encoder import fourier_doy
from releo.models.slots import CELL_SHARPNESS
from releo.products.grid import ChunkLayout, Grid

LAI_VARIABLES: tuple[str, ...] = ("lai", "lai_std", "lai_low", "lai_high")
"""Decoded LAI: mean, standard deviation and the bounds of the central interval.

The mean, not the median, is the point estimate: of the estimates the distribution gives, it has
the least expected squared error."""
MAX_QUERIES_IN_MEMORY = 4_000_000  # pixel-dates assembled at once by decode_grid
MIN_ROWS_PER_CALL = 256  # rows of the smallest model call (see decode_queries)
# Elementwise kernels finish a tensor's last (n mod 2 x SIMD width) values with scalar code,
# whose exp/tanh round differently: flat work is padded to a multiple of this so that every
# value takes the vector path, whatever its position (Ray regions equal one process's).
SIMD_PAD = 64


@dataclass(frozen=True)
class LaiCalibration:
    """How a decoded LAI distribution becomes the product (identity by default)."""

    spread_scale: float = 1.0
    detection_limit: float = 0.0

    def widen(self, dist: BoundedNormal) -> BoundedNormal:
        """The distribution with its logit-space spread times ``spread_scale``."""
        if self.spread_scale == 1.0:
            return dist
        return BoundedNormal(dist.loc, dist.scale * self.spread_scale, dist.low, dist.high)

    def fields(self, prefix: str = "") -> dict[str, float]:
        """``spread_scale`` and ``detection_limit`` keyed ``prefix + name``.

        For attributes, MLflow params and the model config.
        """
        return {f"{prefix}{k}": v for k, v in asdict(self).items()}

    def censor(self, lai: torch.Tensor) -> torch.Tensor:
        """LAI below the detection limit reported as 0 (bare soil)."""
        return torch.where(lai < self.detection_limit, torch.zeros_like(lai), lai)

    @classmethod
    def load(cls, path: str | Path | None) -> LaiCalibration:
        """From a ``calibration/lai.json`` file; the identity when ``path`` is None."""
        if path is None:
            return cls()
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError as err:
            raise DataError(f"{path}: no such calibration file (run the calibrate stage)") from err
        except ValueError as err:
            raise DataError(f"{path}: not JSON ({err})") from err
        out = {}
        for name, positive in (("spread_scale", True), ("detection_limit", False)):
            value = values.get(name) if isinstance(values, dict) else None
            if not (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and (value > 0 or (value == 0 and not positive))
            ):
                bound = "> 0" if positive else ">= 0"
                raise DataError(f"{path}: field {name!r} must be a number {bound}, got {value!r}")
            out[name] = float(value)
        return cls(**out)


def _first_layer_terms(model: PhysicsAutoencoder, z: torch.Tensor, doy: torch.Tensor) -> tuple:
    """What the LAI head needs beside the slot features.

    Returns:
        The first layer's slot weights, its per-embedding term (B, hidden), its per-day term
        (days, hidden) and each query's day.
    """
    dec, cfg = model.decoder, model.cfg
    chunk_wide = z[:, cfg.slot_code_dim : cfg.embedding_dim - 2 * cfg.residual_dim]
    first = linear_layer(dec.dynamic_head, 0)
    n_slot = cfg.slot_features
    n_zero = cfg.detail_channels + 1 if cfg.detail_channels else 1  # the absent detail inputs
    w1 = first.weight.double()
    w_global, w_time = w1[:, n_slot + n_zero : dec.n_space], w1[:, dec.n_space :]
    g = chunk_wide.double() @ dec.to_global.weight.double().T + dec.to_global.bias.double()
    per_chunk = g @ w_global.T + first.bias.double()
    first_day, last_day = float(doy.min()), float(doy.max())
    if bool((doy == doy.round()).all()) and last_day - first_day < 4096:
        # whole days (dates): a table over the days spanned, indexed without sorting
        days = torch.arange(first_day, last_day + 1, dtype=torch.float64)
        which = (doy - first_day).long()
    else:
        days, which = torch.unique(doy.double(), return_inverse=True)
    per_day = fourier_doy(days, cfg.fourier_frequencies) @ w_time.T
    return w1[:, :n_slot].float(), per_chunk.float(), per_day.float(), which


def _lai_head_inputs(model: PhysicsAutoencoder, z, u, v, doy) -> tuple:
    dec, cfg = model.decoder, model.cfg
    cells = dec.slots
    code = z[:, : cfg.slot_code_dim].reshape(len(z), cells.slots, cells.geometry + cells.features)
    w_slot, per_chunk, per_day, which = _first_layer_terms(model, z, doy)
    second, last = linear_layer(dec.dynamic_head, 2), linear_layer(dec.dynamic_head, 4)
    k = dec.dynamic.index("lai")
    rows = torch.tensor([k, len(dec.dynamic) + k])  # the LAI location and scale outputs
    return (
        code, u, v, float(cells.side), cells.geometry, w_slot, per_chunk, per_day, which,
        second.weight, second.bias, last.weight[rows], last.bias[rows],
    )  # fmt: skip


def _slot_features(code, u, v, side: float, geometry: int):
    """FieldSlots' features (B, N, F) at u, v.

    The soft power cells of the slots' centres (and powers), with squared distances taken
    coordinate-wise (elementwise work that fuses; ``cdist`` expands them as a matrix product).
    """
    dx = u[..., None] * side - code[:, None, :, 0] * side
    dy = v[..., None] * side - code[:, None, :, 1] * side
    logits = -(dx * dx + dy * dy) * CELL_SHARPNESS
    if geometry == 3:
        logits = code[:, None, :, 2] + logits
    return logits.softmax(-1) @ code[..., geometry:]


def _lai_head(code, u, v, side, geometry, w_slot, per_chunk, per_day, which, w2, b2, w3, b3):
    """LAI logit location and scale (B, N) from the slot features and the first layer's terms.

    The first layer's terms are its per-embedding and per-day ones (see
    :func:`lai_distribution`).
    """
    slots = _slot_features(code, u, v, side, geometry)
    h = slots[..., 0:1] * w_slot[:, 0]
    for j in range(1, slots.shape[-1]):
        h = h + slots[..., j : j + 1] * w_slot[:, j]
    h = h + per_chunk[:, None] + per_day[which]
    # matmul, then the bias: a compiled graph adds it inside the next fused loop (with F.linear,
    # addmm first copies the bias into the output: one more pass over it)
    raw = F.gelu(F.gelu(h) @ w2.T + b2) @ w3.T + b3
    return LOGIT_BOUND * torch.tanh(raw[..., 0] / LOGIT_BOUND), F.softplus(raw[..., 1]) + MIN_SCALE


def _lai_products(loc, scale, nodes, weights, low, high, spread, limit, q_low, q_high):
    """Mean, standard deviation and interval bounds of the logit-normal LAI.

    The distribution is (``loc``, ``scale`` times ``spread``), censored below ``limit``:
    BoundedNormal's formulas, with the quadrature nodes evaluated once for both moments, taken
    about the median (less cancellation than about 0).
    """
    scale = scale * spread

    def to_range(x):
        return (low + (high - low) * torch.sigmoid(x)).clamp(low, high)

    def censor(x):
        return torch.where(x < limit, torch.zeros_like(x), x)

    median = to_range(loc)
    values = to_range(loc[..., None] + scale[..., None] * nodes) - median[..., None]
    m1 = (values * weights).sum(-1)
    m2 = (values * values * weights).sum(-1)
    std = (m2 - m1 * m1).clamp_min(0).sqrt()
    lo, hi = to_range(loc + scale * q_low), to_range(loc + scale * q_high)
    return censor(median + m1), std, censor(lo), censor(hi)


_COMPILED: dict = {}


def _compiled(fn):
    """``fn`` through torch.compile with dynamic shapes.

    Compiled once per process (~s); then its elementwise chains run as fused loops.
    """
    if fn not in _COMPILED:
        _COMPILED[fn] = torch.compile(fn, dynamic=True)
    return _COMPILED[fn]


def lai_distribution(
    model: PhysicsAutoencoder, z: torch.Tensor, u: torch.Tensor, v: torch.Tensor, doy: torch.Tensor
) -> BoundedNormal:
    """The model's LAI distribution (B, N) from embeddings ``z`` (B, D) alone.

    At chunk-relative ``u``, ``v`` and day-of-year ``doy`` (B, N): ``model.decode(z, u, v,
    doy)["lai"]`` computed for LAI only (equal to float32 rounding).

    Without a context the decoder's first layer sees, per query, only the slot features; its
    chunk-wide input (the embedding's global part) is one per embedding, its date input one
    per day-of-year, and its detail inputs are zeros. Those terms are computed once (float64,
    rounded once: the same values whatever the batch), the static head and the other
    variables' outputs not at all: per query remain 2 x 128 + 128 x 128 + 128 x 2 products
    instead of (83 + 95) x 128 + 128 x 128 + 128 x 26.
    """
    loc, scale = _lai_head(*_lai_head_inputs(model, z, u, v, doy))
    return BoundedNormal(loc, scale, *VARIABLE_RANGES["lai"])


def lai_logits(
    model: PhysicsAutoencoder,
    z: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    doy: torch.Tensor,
    compiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Logit-space location and scale (B, N) of the LAI decoded from embeddings ``z`` (B, D).

    At ``u``, ``v``, ``doy`` (B, N); see :func:`lai_distribution`.
    """
    head = _compiled(_lai_head) if compiled else _lai_head
    return head(*_lai_head_inputs(model, z, u, v, doy))


def lai_quantities(
    loc: torch.Tensor,
    scale: torch.Tensor,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    compiled: bool = False,
) -> dict[str, torch.Tensor]:
    """:data:`LAI_VARIABLES` of the logit-normal LAI (``loc``, ``scale``).

    The distribution is widened and censored by ``calibration``.
    """
    cal = calibration or LaiCalibration()
    products = _compiled(_lai_products) if compiled else _lai_products
    q = (1.0 - interval) / 2
    # BoundedNormal.icdf: loc + scale sqrt(2) erfinv(2q - 1)
    q_low, q_high = (
        math.sqrt(2) * torch.erfinv(torch.tensor(2 * p - 1.0)).item() for p in (q, 1 - q)
    )
    nodes = torch.as_tensor(GAUSS_HERMITE_NODES, dtype=loc.dtype)
    weights = torch.as_tensor(GAUSS_HERMITE_WEIGHTS / math.sqrt(2 * math.pi), dtype=loc.dtype)
    low, high = VARIABLE_RANGES["lai"]
    out = products(
        loc, scale, nodes, weights, low, high, cal.spread_scale, cal.detection_limit, q_low, q_high
    )
    return dict(zip(LAI_VARIABLES, out, strict=True))


def _lanewise(fn, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``fn`` of 1-D ``tensors`` (n,), computed on padded copies and cut back to n.

    The copies are padded to a multiple of :data:`SIMD_PAD` (see there).
    """
    n = len(tensors[0])
    pad = -n % SIMD_PAD
    if pad:
        tensors = tuple(torch.cat([t, t[-1:].expand(pad)]) if n else t for t in tensors)
    out = fn(*tensors)
    return tuple(o[:n] for o in out) if isinstance(out, tuple | list) else (out[:n],)


def padded_rows(a: np.ndarray) -> np.ndarray:
    """``a`` (n, ...) padded to at least :data:`MIN_ROWS_PER_CALL` rows, a multiple of SIMD_PAD.

    The last row is repeated: a row's values through a model call then do not depend on how
    many rows share the call.
    """
    n = len(a)
    size = max(MIN_ROWS_PER_CALL, -(-n // SIMD_PAD) * SIMD_PAD)
    if n == 0 or size == n:
        return a
    return np.concatenate([a, np.repeat(a[-1:], size - n, axis=0)])


def blend_logits(
    loc: torch.Tensor,
    scale: torch.Tensor,
    other_loc: torch.Tensor,
    other_scale: torch.Tensor,
    weight: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The logit-normal matching the first two moments of the mixture of two windows' LAI.

    The moments are taken in logit space; the second window has ``weight``. Where the windows
    disagree the spread grows.
    """
    keep = 1.0 - weight
    mixed = keep * loc + weight * other_loc
    gap = loc - other_loc
    variance = keep * scale * scale + weight * other_scale * other_scale
    return mixed, (variance + keep * weight * gap * gap).sqrt()


@torch.inference_mode()
def decode_lai(
    model: PhysicsAutoencoder,
    z: torch.Tensor,
    u: torch.Tensor,
    v: torch.Tensor,
    doy: torch.Tensor,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    compiled: bool = False,
) -> dict[str, torch.Tensor]:
    """LAI (mean, std, central ``interval`` bounds) from embeddings ``z`` (B, D) alone.

    At chunk-relative ``u`` (east), ``v`` (south) and day-of-year ``doy``, each (B, N). The
    ``calibration`` widens the distribution and zeroes values below its detection limit (the
    std is the widened distribution's). ``compiled``: the elementwise chains fused by
    torch.compile (equal to float32 rounding; worth it for large requests).
    """
    loc, scale = lai_logits(model, z, u, v, doy, compiled)
    return lai_quantities(loc, scale, interval, calibration, compiled)


def _blocks(owner_sorted: np.ndarray, block: int) -> list[tuple[int, int]]:
    """(start, end) runs of equal owners in a sorted array, longest first.

    Runs are cut to at most ``block`` long.
    """
    n = len(owner_sorted)
    starts = np.flatnonzero(np.r_[True, owner_sorted[1:] != owner_sorted[:-1]])
    ends = np.r_[starts[1:], n]
    out = [
        (a, min(a + block, e))
        for s, e in zip(starts, ends, strict=True)
        for a in range(s, e, block)
    ]
    return sorted(out, key=lambda ab: ab[0] - ab[1])


@dataclass(frozen=True)
class Queries:
    """Decoder queries of P point-dates.

    The embedding rows ``table`` (K, D) and, for the point-dates a chunk covers (``valid``
    (P,)), their ``owner`` row, chunk-relative ``u``, ``v``, day of year ``doy``, and the
    ``partner`` row blended in with ``weight``.
    """

    table: np.ndarray
    owner: np.ndarray
    u: np.ndarray
    v: np.ndarray
    doy: np.ndarray
    partner: np.ndarray
    weight: np.ndarray
    valid: np.ndarray

    @classmethod
    def unblended(cls, table, owner, u, v, doy) -> Queries:
        """Queries of one embedding each (no window blended in), all valid."""
        owner = np.asarray(owner)
        return cls(table, owner, u, v, doy, owner, np.zeros(len(owner)), np.ones(len(owner), bool))


def _query_logits(
    model: PhysicsAutoencoder,
    table: torch.Tensor,
    owner: np.ndarray,
    inputs: list[torch.Tensor],
    batch_queries: int,
    compiled: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """LAI logit location and scale (Q,) of queries ``owner`` (Q,) at ``inputs`` u, v, doy.

    ``inputs`` are (Q,) each. Queries of one embedding share model calls, ≤ ``batch_queries``
    each.
    """
    n = len(owner)
    loc, scale = torch.full((n,), math.nan), torch.full((n,), math.nan)
    order = np.argsort(owner, kind="stable")
    blocks = _blocks(owner[order], batch_queries)
    i = 0
    while i < len(blocks):
        width = blocks[i][1] - blocks[i][0]
        call = blocks[i : i + max(1, batch_queries // width)]
        # BLAS takes other kernels for matrices of a few rows, which round differently: a
        # small call is padded so that a query's value never depends on its batch (Ray regions)
        width = max(width, -(-MIN_ROWS_PER_CALL // len(call)))
        idx = np.empty((len(call), width), dtype=np.int64)
        keep = np.zeros((len(call), width), dtype=bool)
        for r, (a, b) in enumerate(call):
            idx[r, : b - a] = order[a:b]
            idx[r, b - a :] = order[a]  # padding repeats a real query, then is dropped
            keep[r, : b - a] = True
        rows = torch.as_tensor(idx)
        z = table[torch.as_tensor(owner[idx[:, 0]])]
        u, v, doy = (x[rows] for x in inputs)
        got = lai_logits(model, z, u, v, doy, compiled=compiled)
        target = torch.as_tensor(idx[keep])
        mask = torch.as_tensor(keep)
        loc[target], scale[target] = got[0][mask], got[1][mask]
        i += len(call)
    return loc, scale


@torch.inference_mode()
def blended_logits(
    model: PhysicsAutoencoder, q: Queries, batch_queries: int = 65536, compiled: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """LAI logit location and scale (Q,) of the valid queries ``q``.

    Each query is blended with its ``partner`` row where its ``weight`` is positive.
    """
    model.eval()
    table = torch.as_tensor(np.asarray(q.table, dtype=np.float32))
    inputs = [torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (q.u, q.v, q.doy)]
    loc, scale = _query_logits(model, table, np.asarray(q.owner), inputs, batch_queries, compiled)
    if (mixed := np.asarray(q.weight) > 0).any():
        pick = torch.as_tensor(np.flatnonzero(mixed))
        other = _query_logits(
            model, table, np.asarray(q.partner)[mixed], [x[pick] for x in inputs],
            batch_queries, compiled,
        )  # fmt: skip
        w = torch.as_tensor(np.asarray(q.weight, dtype=np.float32)[mixed])
        loc[pick], scale[pick] = _lanewise(blend_logits, loc[pick], scale[pick], *other, w)
    return loc, scale


@torch.inference_mode()
def decode_queries(
    model: PhysicsAutoencoder,
    queries: Queries,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    batch_queries: int = 65536,
    compiled: bool = False,
) -> dict[str, np.ndarray]:
    """LAI at the Q valid ``queries``.

    ``queries``: :class:`Queries` (:meth:`Queries.unblended` for one embedding per query).
    Queries of one embedding share model calls, ≤ ``batch_queries`` each; near a window
    boundary a query blends its two windows' LAI (:func:`blend_logits`).

    Returns:
        float32 arrays (Q,) per :data:`LAI_VARIABLES`.
    """
    n = len(queries.owner)
    out = {k: np.full(n, np.nan, np.float32) for k in LAI_VARIABLES}
    if n == 0:
        return out
    loc, scale = blended_logits(model, queries, batch_queries, compiled)
    for a in range(0, n, batch_queries):
        part = slice(a, min(a + batch_queries, n))
        values = _lanewise(
            lambda lo, sc: tuple(lai_quantities(lo, sc, interval, calibration, compiled).values()),
            loc[part], scale[part],
        )  # fmt: skip
        for k, value in zip(LAI_VARIABLES, values, strict=True):
            out[k][part] = value.float().numpy()
    return out


def embedding_table(embeddings: xr.Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings as rows (windows·rows·cols, D) float32 and whether each row is finite."""
    table = embeddings["embedding"].values.astype(np.float32)
    table = table.reshape(-1, table.shape[-1])
    # numpy's stubs type all(axis=...) as a scalar or an array; along an axis it is an array
    return table, cast(npt.NDArray[np.bool_], np.isfinite(table).all(axis=1))


def decode_pixels(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    dates: pd.DatetimeIndex,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
    batch_queries: int = 65536,
    compiled: bool = False,
) -> dict[str, np.ndarray]:
    """LAI (T, P) at every date × point.

    Points are map coordinates ``x``, ``y`` (P,) in the embeddings' CRS; NaN where no chunk
    covers the point or the date. Dates near a window boundary blend the two windows
    (``blend_days``: see :func:`pair_queries`).
    """
    dates = pd.DatetimeIndex(dates)
    t, p = len(dates), len(np.asarray(x))
    q = _queries(embeddings, x, y, dates, blend_days, every_date=True)
    values = decode_queries(
        model, q, interval=interval, calibration=calibration, batch_queries=batch_queries,
        compiled=compiled,
    )  # fmt: skip
    out = {}
    for k, value in values.items():
        full = np.full(t * p, np.nan, np.float32)
        full[q.valid] = value
        out[k] = full.reshape(t, p)
    return out


def pair_queries(
    embeddings: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    dates: pd.DatetimeIndex | np.ndarray,
    *,
    blend_days: float | None = None,
) -> Queries:
    """Queries of P point-dates (map ``x``, ``y`` (P,), one date each).

    A date within ``blend_days / 2`` of a window boundary blends in the neighbouring window's
    embedding (:meth:`ChunkLayout.blend_of`); None: the window length (LAI interpolated
    between window centres), 0: each window alone (a 10-day staircase).
    """
    return _queries(embeddings, x, y, dates, blend_days, every_date=False)


def _queries(
    embeddings: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    dates: pd.DatetimeIndex | np.ndarray,
    blend_days: float | None,
    *,
    every_date: bool,
) -> Queries:
    """:func:`pair_queries` (one date per point), or the queries of every date × point.

    With ``every_date``, the queries are those of every date × point, row-major (dates
    first): points are located and dates given their windows once each, then broadcast.
    """
    layout = ChunkLayout.from_embeddings(embeddings)
    table, finite = embedding_table(embeddings)
    row, col, u, v, inside = layout.locate(np.asarray(x), np.asarray(y))
    dates = pd.DatetimeIndex(dates)
    blend = layout.days if blend_days is None else blend_days
    window, neighbour, weight, covered = layout.blend_of(dates, blend)
    doy = dates.day_of_year.to_numpy()
    if every_date:  # dates (T, 1) against points (1, P)
        window, neighbour, weight, covered, doy = (
            a[:, None] for a in (window, neighbour, weight, covered, doy)
        )
    place = row * layout.cols + col
    owner = window * (layout.rows * layout.cols) + place
    partner = neighbour * (layout.rows * layout.cols) + place
    valid = covered & inside & finite[owner]
    weight = np.where(finite[partner], weight, 0.0)
    u, v, doy = (np.broadcast_to(a, valid.shape)[valid] for a in (u, v, doy))
    return Queries(table, owner[valid], u, v, doy, partner[valid], weight[valid], valid.ravel())


def decode_distribution(model: PhysicsAutoencoder, queries: Queries) -> BoundedNormal:
    """The model's LAI distribution (Q,) at the valid ``queries``, before any calibration.

    For a few points (field surveys).
    """
    loc, scale = blended_logits(model, queries)
    return BoundedNormal(loc, scale, *VARIABLE_RANGES["lai"])


def decode_pairs(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    x: np.ndarray,
    y: np.ndarray,
    dates: pd.DatetimeIndex | np.ndarray,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
) -> dict[str, np.ndarray]:
    """LAI (P,) at P point-dates (one date per point, e.g. field measurements)."""
    q = pair_queries(embeddings, x, y, dates, blend_days=blend_days)
    values = decode_queries(model, q, interval=interval, calibration=calibration)
    out = {}
    for k, value in values.items():
        full = np.full(len(q.valid), np.nan, np.float32)
        full[q.valid] = value
        out[k] = full
    return out


def decode_grid_arrays(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    grid: Grid,
    dates: pd.DatetimeIndex,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
    batch_queries: int = 65536,
    compiled: bool = False,
) -> dict[str, np.ndarray]:
    """:func:`decode_grid`'s values: float32 arrays (time, y, x) per :data:`LAI_VARIABLES`."""
    x, y = grid.points()
    dates = pd.DatetimeIndex(dates)
    per_call = max(1, MAX_QUERIES_IN_MEMORY // max(len(x), 1))
    parts: dict[str, list[np.ndarray]] = {k: [] for k in LAI_VARIABLES}
    for start in range(0, len(dates), per_call):
        values = decode_pixels(
            model, embeddings, x, y, dates[start : start + per_call],
            interval=interval, calibration=calibration, blend_days=blend_days,
            batch_queries=batch_queries, compiled=compiled,
        )  # fmt: skip
        for k, value in values.items():
            parts[k].append(value.reshape(-1, *grid.shape))
    return {
        k: np.concatenate(v) if v else np.zeros((0, *grid.shape), np.float32)
        for k, v in parts.items()
    }


def lai_cube(
    values: dict[str, np.ndarray] | None,
    grid: Grid,
    dates: pd.DatetimeIndex,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    source_model_sha256: str = "",
    chunks: tuple[int, int, int] | None = None,
) -> xr.Dataset:
    """The LAI product cube (time, y, x) of ``values``, or a lazy template.

    With ``values`` None, a lazy all-NaN template in dask chunks of ``chunks`` (dates, rows,
    cols) whose regions Ray tasks fill.
    """
    dates = pd.DatetimeIndex(dates)
    if values is None:
        import dask.array as da

        shape = (len(dates), *grid.shape)
        values = {
            k: da.full(shape, np.nan, dtype=np.float32, chunks=chunks or -1) for k in LAI_VARIABLES
        }
    q = (1.0 - interval) / 2
    meta = {
        "lai": {"long_name": "leaf area index (mean)", "units": "m2 m-2"},
        "lai_std": {"long_name": "leaf area index standard deviation", "units": "m2 m-2"},
        "lai_low": {"long_name": f"leaf area index, quantile {q:g}", "units": "m2 m-2"},
        "lai_high": {"long_name": f"leaf area index, quantile {1 - q:g}", "units": "m2 m-2"},
    }
    ds = xr.Dataset(
        {k: (("time", "y", "x"), values[k], meta[k]) for k in LAI_VARIABLES},
        coords={"time": dates.values.astype("datetime64[ns]"), "y": grid.y, "x": grid.x},
        attrs={
            "title": "releo LAI decoded from chunk embeddings alone",
            "interval": interval,
            **(calibration or LaiCalibration()).fields("calibration_"),
            "resolution_m": grid.resolution,
            "source_model_sha256": source_model_sha256,
        },
    )
    return ds.rio.write_crs(grid.crs)


def decode_grid(
    model: PhysicsAutoencoder,
    embeddings: xr.Dataset,
    grid: Grid,
    dates: pd.DatetimeIndex,
    *,
    interval: float = 0.9,
    calibration: LaiCalibration | None = None,
    blend_days: float | None = None,
    batch_queries: int = 65536,
    compiled: bool = False,
) -> xr.Dataset:
    """LAI maps (time, y, x) of :data:`LAI_VARIABLES` on ``grid`` at ``dates``.

    Decoded from the embeddings alone; NaN outside the chunks and their windows.
    """
    values = decode_grid_arrays(
        model, embeddings, grid, dates,
        interval=interval, calibration=calibration, blend_days=blend_days,
        batch_queries=batch_queries, compiled=compiled,
    )  # fmt: skip
    return lai_cube(
        values, grid, dates, interval=interval, calibration=calibration,
        source_model_sha256=str(embeddings.attrs.get("model_sha256", "")),
    )  # fmt: skip
