"""``releo lai``: LAI for a pixel time-series table with the trained chunk autoencoder.

Each point's series is read as the model's chunks: 1 × 1-pixel chunks of the model's window
(its chunk days, 10 by default, counted from the table's first date) with the model's temporal
context (``context_days`` of acquisitions either side), never as one multi-year chunk, which the
model never saw in training. Each window's S2 rows (clear ones usable; cloudy rows and requested
dates, whatever their values, masked) and S1 rows (finite VV and VH) go through the encoder,
and the latent decoder gives LAI (mean and standard deviation) at every row's date, cloudy
rows and requested dates included. Optionally the model is first fine-tuned on the table's own
windows with its physics loss (self-supervised: no LAI is read). A per-pixel inversion model
(:mod:`releo.models.pixel`) can stand in for the chunk model: LAI at the clear rows only,
without temporal context.

The column map (YAML or JSON) maps releo's canonical names to the table's columns::

    point_id: station          # required: point_id, date, B02 … B12, sun_zenith,
    date: acquisition_date     #   view_zenith, relative_azimuth, cloud_mask
    B8A: b8a_reflectance       # optional: x, y, crs, VV, VH, incidence_angle, platform
    cloud_mask: cloudy         # unmapped names are looked up as they are
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import yaml
from tqdm.auto import tqdm

from releo.data.chunks import PAD_ANGLES, PAD_INCIDENCE
from releo.data.contracts import (
    MASK_CLEAR,
    PLATFORM,
    S1_INCIDENCE,
    S1_POLARISATIONS,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
)
from releo.data.errors import DataError
from releo.data.io import open_cube, read_table, to_datetimes, write_table
from releo.data.readers import PixelTableSchema, read_pixel_table
from releo.data.site import open_site
from releo.models import LossWeights, PhysicsAutoencoder
from releo.physics.srf import platform_code
from releo.products.decode import lai_quantities
from releo.train.loop import adamw_cosine, train_one_epoch

PathLike = str | os.PathLike[str]

CANONICAL_COLUMNS: tuple[str, ...] = (*PixelTableSchema.model_fields, "platform")
"""Names a column map may use: the pixel-table contract's fields and ``platform`` (S2A/S2B…)."""
OUTPUT_COLUMNS = ("lai", "lai_std")
DEFAULT_WINDOW_DAYS = 10
"""Window of a point's series when the model's is not known: releo's chunk days (params.yaml
``chunks.days``), what the shipped model is trained on."""
PREDICT_WINDOWS = 2048  # point-windows encoded and decoded at once
FINE_TUNE_WINDOWS = 1024
"""Point-windows per fine-tuning step: a step also fits the cells of the loss's synthetic
chunks (~1 s on 2 cores), so large steps keep an epoch of a 78,000-row table to ~30 steps (the
whole-series chunks of 16 points per step gave as many)."""
GROUP_POINTS = 256  # points whose windows are cut and decoded together (bounded memory)


def load_column_map(path: PathLike) -> dict[str, str]:
    """Canonical name → table column from a YAML/JSON mapping file (see the module doc)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise DataError(f"{path}: cannot read the column map: {err}") from err
    try:
        raw = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        raise DataError(f"{path}: column map is not valid YAML/JSON: {err}") from err
    if not isinstance(raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in raw.items()
    ):
        raise DataError(f"{path}: column map must map canonical names to column names (strings)")
    unknown = [k for k in raw if k not in CANONICAL_COLUMNS]
    if unknown:
        raise DataError(
            f"{path}: unknown canonical column(s) {unknown}; known: {list(CANONICAL_COLUMNS)}"
        )
    targets = list(raw.values())
    twice = sorted({v for v in targets if targets.count(v) > 1})
    if twice:
        raise DataError(f"{path}: table column(s) {twice} mapped to several canonical names")
    return dict(raw)


def read_lai_table(
    path: PathLike, column_map: dict[str, str] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """The file's table as it is, the table in releo's names, and where each row comes from.

    The table in releo's names (:func:`read_pixel_table`) is sorted by point and date, with a
    ``platform`` column (S2A when absent); for each of its rows, the third result is its row
    position in the file's table.

    ``column_map`` maps canonical names to the file's columns (:func:`load_column_map`).
    """
    path = Path(path)
    column_map = dict(column_map or {})
    platform_col = column_map.pop("platform", "platform")
    raw = read_table(path)
    taken = [c for c in OUTPUT_COLUMNS if c in raw.columns]
    if taken:
        raise DataError(f"{path}: already has column(s) {taken}, which releo lai writes; rename")
    table = read_pixel_table(path, {v: k for k, v in column_map.items()})
    s1 = [p for p in S1_POLARISATIONS if p in table.columns]
    if s1 and len(s1) < len(S1_POLARISATIONS):
        missing = [p for p in S1_POLARISATIONS if p not in s1]
        raise DataError(f"{path}: S1 needs both VV and VH; missing column(s) {missing}")
    if s1 and S1_INCIDENCE not in table.columns:
        raise DataError(f"{path}: columns {s1} need the incidence angle column {S1_INCIDENCE!r}")
    # The reader sorted the rows stably by (point, date): the same sort of the file's rows
    # (dates parsed the same way) maps them back.
    point_col = column_map.get("point_id", "point_id")
    dates = to_datetimes(raw[column_map.get("date", "date")], utc=True)
    keys = pd.DataFrame({"point_id": raw[point_col], "date": dates.dt.tz_localize(None)})
    order = keys.sort_values(["point_id", "date"], kind="stable").index.to_numpy()
    if not np.array_equal(raw[point_col].to_numpy()[order], table["point_id"].to_numpy()):
        raise DataError(f"{path}: cannot align the parsed rows with the file's rows")
    platform = raw[platform_col].astype(str).to_numpy()[order] if platform_col in raw else "S2A"
    table["platform"] = platform
    return raw, table, order


@dataclass(frozen=True)
class Window:
    """One point-window chunk of a pixel table: the rows it reads and which are its window's.

    The rows are one point's, by date; those outside the window are the encoder's temporal
    context.
    """

    rows: np.ndarray  # (n,) row positions, by date
    inside: np.ndarray  # (n,) bool: in the window
    start: np.datetime64  # the window's first and last day (datetime64[D])
    end: np.datetime64


@dataclass(frozen=True)
class PixelSeries:
    """A pixel table in releo's names as arrays (one entry per row): what chunks are cut from."""

    point: np.ndarray  # (N,) point ids
    day: np.ndarray  # (N,) datetime64[D]
    bands: np.ndarray  # (N, 10) float32, NaN where unusable
    angles: np.ndarray  # (N, 3) float32 degrees (padding geometry where missing)
    usable: np.ndarray  # (N,) bool: clear S2 with finite bands and angles
    s1: np.ndarray  # (N, 2) float32 dB (VV, VH)
    incidence: np.ndarray  # (N,) float32 degrees
    has_s1: np.ndarray  # (N,) bool: finite VV, VH and incidence
    platform: np.ndarray  # (N,) str
    doy: np.ndarray  # (N,) float32 day of year
    platform_code: np.ndarray  # (N,) int64: index of the platform's spectral responses

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> PixelSeries:
        """Rows of any kind: clear ones feed the encoder, the others are masked.

        Cloudy rows and requested dates (empty bands, ``cloud_mask`` 1) are masked, whatever
        their values, and still get an LAI.
        """
        n = len(table)
        bands = table[list(S2_BANDS)].to_numpy(np.float32)
        angles = table[list(S2_ANGLES)].to_numpy(np.float32)
        geometry = np.isfinite(angles).all(1)
        usable = (table["cloud_mask"].to_numpy() == 0) & np.isfinite(bands).all(1) & geometry
        if all(c in table for c in (*S1_POLARISATIONS, S1_INCIDENCE)):
            s1 = table[list(S1_POLARISATIONS)].to_numpy(np.float32)
            incidence = table[S1_INCIDENCE].to_numpy(np.float32)
        else:
            s1, incidence = np.full((n, 2), np.nan, np.float32), np.full(n, np.nan, np.float32)
        has_s1 = np.isfinite(s1).all(1) & np.isfinite(incidence)
        platform = table["platform"] if "platform" in table else pd.Series(["S2A"] * n)
        platform = platform.fillna("S2A").astype(str).to_numpy()  # requested dates: none
        names, codes = np.unique(platform, return_inverse=True)
        dates = pd.DatetimeIndex(table["date"])
        return cls(
            point=table["point_id"].to_numpy(),
            day=dates.to_numpy().astype("datetime64[D]"),
            bands=np.where(usable[:, None], bands, np.nan).astype(np.float32),
            angles=np.where(geometry[:, None], angles, np.array(PAD_ANGLES, np.float32)),
            usable=usable,
            s1=np.where(has_s1[:, None], s1, 0.0).astype(np.float32),
            incidence=np.where(has_s1, incidence, PAD_INCIDENCE).astype(np.float32),
            has_s1=has_s1,
            platform=platform,
            doy=dates.day_of_year.to_numpy().astype(np.float32),
            platform_code=np.array([platform_code(p) for p in names], np.int64)[codes],
        )

    def points(self) -> list[np.ndarray]:
        """Row positions of each point (points sorted by id), by date."""
        codes, _ = pd.factorize(self.point, sort=True)
        order = np.lexsort((self.day, codes))
        return np.split(order, np.flatnonzero(np.diff(codes[order])) + 1)

    def windows(
        self,
        window_days: int = DEFAULT_WINDOW_DAYS,
        context_days: int = 0,
        points: list[np.ndarray] | None = None,
    ) -> list[Window]:
        """The ``window_days`` windows of each point that hold at least one of its rows.

        Points are those of ``points`` (default all); windows are counted from the table's
        first date like the chunk index, each reading its point's rows up to ``context_days``
        either side of it.
        """
        first = self.day.min()
        out = []
        for rows in self.points() if points is None else points:
            day = (self.day[rows] - first).astype(np.int64)
            index = day // window_days
            for w in np.unique(index):
                lo = np.searchsorted(day, w * window_days - context_days, "left")
                hi = np.searchsorted(day, (w + 1) * window_days - 1 + context_days, "right")
                start = first + np.timedelta64(int(w) * window_days, "D")
                end = start + np.timedelta64(window_days - 1, "D")
                out.append(Window(rows[lo:hi], index[lo:hi] == w, start, end))
        return out

    def item(self, window: Window) -> dict:
        """One window as a 1 × 1-pixel chunk item (``ChunkDataset``'s format)."""
        rows, inside = window.rows, window.inside
        first = pd.Timestamp(window.start)
        span = int((window.end - window.start).astype(int))
        s1 = self.has_s1[rows]
        return {
            "chunk_id": str(self.point[rows[0]]),
            "window_doy": torch.tensor([first.day_of_year, first.day_of_year + span]).float(),
            "s2": torch.from_numpy(self.bands[rows][:, :, None, None]),
            "s2_mask": torch.from_numpy(self.usable[rows][:, None, None]),
            "s2_angles": torch.from_numpy(self.angles[rows]),
            "s2_doy": torch.from_numpy(self.doy[rows]),
            "s2_platform": list(self.platform[rows]),
            "s2_in_window": torch.from_numpy(inside),
            "s1": torch.from_numpy(self.s1[rows[s1]][:, :, None, None]),
            "s1_incidence": torch.from_numpy(self.incidence[rows[s1]][:, None, None]),
            "s1_doy": torch.from_numpy(self.doy[rows[s1]]),
            "s1_in_window": torch.from_numpy(inside[s1]),
        }

    def batch(self, windows: Sequence[Window]) -> tuple[dict, np.ndarray]:
        """The windows as one batch, and the row position of each of the batch's S2 dates.

        The batch is what ``collate_chunks`` makes of the windows' items, but built with a few
        array operations (thousands of windows per batch); the row positions are (B, T), -1 at
        padding.
        """
        rows = np.concatenate([w.rows for w in windows])
        inside = np.concatenate([w.inside for w in windows])
        lengths = np.fromiter((w.rows.size for w in windows), np.int64, len(windows))
        s2_at = _layout(lengths)
        has_s1 = self.has_s1[rows]
        s1_at = _layout(np.bincount(s2_at[0][has_s1], minlength=len(windows)))
        rows1 = rows[has_s1]
        start = pd.DatetimeIndex(np.array([w.start for w in windows], "datetime64[D]"))
        span = np.array([w.end - w.start for w in windows]).astype(np.int64)
        first = start.day_of_year.to_numpy()
        s2 = {
            "s2": _padded(self.bands[rows], 0.0, s2_at)[..., None, None],
            "s2_mask": _padded(self.usable[rows], False, s2_at)[..., None, None],
            "s2_valid": _padded(np.ones(rows.size, bool), False, s2_at),
            "s2_angles": _padded(self.angles[rows], PAD_ANGLES, s2_at),
            "s2_doy": _padded(self.doy[rows], 0.0, s2_at),
            "s2_platform": _padded(self.platform_code[rows], 0, s2_at),
            "s2_in_window": _padded(inside, False, s2_at),
        }
        s1 = {
            "s1": _padded(self.s1[rows1], 0.0, s1_at)[..., None, None],
            "s1_valid": _padded(np.ones(rows1.size, bool), False, s1_at),
            "s1_incidence": _padded(self.incidence[rows1], PAD_INCIDENCE, s1_at)[..., None, None],
            "s1_doy": _padded(self.doy[rows1], 0.0, s1_at),
            "s1_in_window": _padded(inside[has_s1], False, s1_at),
        }
        batch = {
            "chunk_id": [str(self.point[w.rows[0]]) for w in windows],
            "window_doy": torch.from_numpy(np.stack([first, first + span], 1).astype(np.float32)),
            **s2,
            **s1,
        }
        return batch, _padded(rows, -1, s2_at).numpy()


Layout = tuple[np.ndarray, np.ndarray, int, int]


def _layout(lengths: np.ndarray) -> Layout:
    """Where the concatenated entries of B sequences of ``lengths`` go in a padded array.

    Returns:
        Each entry's sequence and its position in it, B and T of the (B, T) array.
    """
    offsets = np.cumsum(lengths) - lengths
    chunk = np.repeat(np.arange(lengths.size), lengths)
    position = np.arange(int(lengths.sum())) - np.repeat(offsets, lengths)
    return chunk, position, lengths.size, int(lengths.max(initial=0))


def _padded(values: np.ndarray, fill, layout: Layout) -> torch.Tensor:
    chunk, position, b, t = layout
    out = np.empty((b, t, *values.shape[1:]), values.dtype)
    out[...] = fill
    out[chunk, position] = values
    return torch.from_numpy(out)


def _series(table: pd.DataFrame | PixelSeries) -> PixelSeries:
    return table if isinstance(table, PixelSeries) else PixelSeries.from_table(table)


@torch.no_grad()
def predict_table_lai(
    model: PhysicsAutoencoder,
    table: pd.DataFrame | PixelSeries,
    *,
    window_days: int | None = None,
    batch_windows: int = PREDICT_WINDOWS,
    group_points: int = GROUP_POINTS,
    progress: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """LAI mean and standard deviation (N,) at every row of a table in releo's names.

    The table is :func:`read_lai_table`'s; cloudy rows and requested dates are included.

    Each point's series is read as the model's chunks: ``window_days`` windows (default
    :data:`DEFAULT_WINDOW_DAYS`, the chunk days the model is trained on) counted from the
    table's first date, each with ``model.cfg.context_days`` of acquisitions either side; a
    row's LAI is decoded at its date from its window's embedding. Points are taken
    ``group_points`` at a time (memory stays flat with the table's length) and
    ``batch_windows`` windows go through the model at once.
    """
    series = _series(table)
    window_days = window_days or DEFAULT_WINDOW_DAYS
    model.eval()
    lai = np.full(len(series.point), np.nan, np.float32)
    std = np.full(len(series.point), np.nan, np.float32)
    points = series.points()
    with tqdm(total=len(lai), unit="row", desc="LAI", disable=not progress) as bar:
        for start in range(0, len(points), group_points):
            group = points[start : start + group_points]
            windows = series.windows(window_days, model.cfg.context_days, group)
            for first in range(0, len(windows), batch_windows):
                batch, rows = series.batch(windows[first : first + batch_windows])
                z, detail = model.encode_with_detail(batch)
                t = batch["s2_doy"]  # every row is a date of its window's S2 axis
                centre = torch.full_like(t, 0.5)
                dist = model.decode(z, centre, centre, t, detail)["lai"]
                values = lai_quantities(dist.loc, dist.scale)  # the products' mean and σ
                at = batch["s2_in_window"].numpy()
                lai[rows[at]] = values["lai"].numpy()[at]
                std[rows[at]] = values["lai_std"].numpy()[at]
            bar.update(sum(r.size for r in group))
    return lai, std


def fine_tune(
    model: PhysicsAutoencoder,
    table: pd.DataFrame | PixelSeries,
    epochs: int,
    *,
    weights: LossWeights | None = None,
    lr: float = 3e-4,
    window_days: int | None = None,
    batch_windows: int = FINE_TUNE_WINDOWS,
    seed: int = 0,
    progress: bool = False,
    on_epoch: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Fine-tune ``model`` in place on the table's own series with its physics loss.

    Self-supervised: the table's LAI, if any, is never read. The series is read in the same
    windows as :func:`predict_table_lai`, ``batch_windows`` per step, shuffled with ``seed``;
    AdamW from ``lr``, cosine-decayed to 0. ``progress``: a progress bar per epoch.

    Returns:
        Each epoch's mean total loss (also passed to ``on_epoch(epoch, loss)``).
    """
    series = _series(table)
    windows = series.windows(window_days or DEFAULT_WINDOW_DAYS, model.cfg.context_days)
    weights = weights or LossWeights()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    steps = -(-len(windows) // batch_windows)
    optimizer, scheduler = adamw_cosine(model.parameters(), lr, epochs * steps)

    def batches(order: np.ndarray, desc: str) -> Iterator[dict]:
        for step in tqdm(range(steps), desc=desc, unit="step", disable=not progress):
            part = order[step * batch_windows : (step + 1) * batch_windows]
            yield series.batch([windows[i] for i in part])[0]

    losses = []
    with _eager_prosail(model):
        for epoch in range(epochs):
            epoch_batches = batches(
                rng.permutation(len(windows)), f"fine-tune {epoch + 1}/{epochs}"
            )
            terms = train_one_epoch(model, epoch_batches, optimizer, weights, scheduler=scheduler)
            losses.append(terms.get("total", float("nan")))
            if on_epoch is not None:
                on_epoch(epoch + 1, losses[-1])
    model.eval()
    return losses


@contextmanager
def _eager_prosail(model: PhysicsAutoencoder) -> Iterator[None]:
    """The model with eager PROSAIL for a while.

    The compiled PROSAIL costs minutes to build on first use (and rebuilds as the
    observations per step vary), more than a fine-tuning of ~1,000 pixel-dates per step
    spends in it; both compute the same reflectances.
    """
    cfg = model.cfg
    model.cfg = cfg.model_copy(update={"fused_prosail": False})
    try:
        yield
    finally:
        model.cfg = cfg


def default_output(path: PathLike) -> Path:
    """``<stem>_lai<suffixes>`` beside the table (``pixels.csv.gz`` → ``pixels_lai.csv.gz``)."""
    path = Path(path)
    suffixes = "".join(s for s in path.suffixes if s.lower() in (".csv", ".gz", ".parquet", ".pq"))
    stem = path.name[: len(path.name) - len(suffixes)] if suffixes else path.stem
    return path.with_name(f"{stem}_lai{suffixes or path.suffix}")


def _is_pixel_model(path: Path) -> bool:
    from releo.models.pixel import CHECKPOINT_KIND

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # unreadable: the chunk-model loader reports it with the file name
        return False
    return isinstance(payload, dict) and payload.get("kind") == CHECKPOINT_KIND


def run_lai(
    table_path: PathLike,
    out: PathLike | None = None,
    *,
    columns: PathLike | None = None,
    model_path: PathLike = Path("models/model.pt"),
    fine_tune_epochs: int = 0,
    lr: float = 3e-4,
    window_days: int | None = None,
    chunk_days: int | None = None,
    context_root: PathLike | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> dict:
    """``releo lai``: read and gate a pixel table, (fine-tune,) predict, write it back.

    ``model_path`` is the trained chunk autoencoder (``models/model.pt``), or a per-pixel
    inversion saved by ``releo.models.pixel.save_pixel_inversion`` (no temporal context:
    clear rows only, NaN elsewhere; no fine-tuning). The chunk model reads each point's series
    in its own windows: the chunk days saved with the model, else ``chunk_days`` (params.yaml
    ``chunks.days``), else :data:`DEFAULT_WINDOW_DAYS`, with its ``context_days`` either side;
    ``window_days`` overrides the window (windows the model was not trained on). The output is
    the file's table, rows and columns as they were, plus ``lai`` and ``lai_std``, written
    atomically to ``out`` (default :func:`default_output`). The Great Expectations gate
    (``check_pixel_table``) runs first; a failed gate raises ``QualityGateError``, bad files or
    columns :class:`DataError`. ``progress`` shows progress bars, ``log`` receives the
    fine-tuning loss of each epoch. Returns a summary.
    """
    from releo.models.checkpoint import trained_weights
    from releo.models.pixel import load_pixel_inversion, predict_pixel_lai
    from releo.products.embed import load_autoencoder
    from releo.quality import check_pixel_table

    started = time.perf_counter()
    table_path, model_path = Path(table_path), Path(model_path)
    out = Path(out) if out is not None else default_output(table_path)
    column_map = load_column_map(columns) if columns is not None else None
    raw, table, order = read_lai_table(table_path, column_map)
    check_pixel_table(table, table_path, context_root=context_root)
    series = PixelSeries.from_table(table)
    losses: list[float] = []
    timing: dict[str, float] = {}
    windows: dict[str, int | None] = {"window_days": None, "context_days": None}
    if model_path.is_file() and _is_pixel_model(model_path):
        if fine_tune_epochs:
            raise DataError(f"{model_path}: a per-pixel inversion model is not fine-tuned here")
        pixel_model = load_pixel_inversion(model_path)
        bands = np.where(series.usable[:, None], series.bands, np.nan)
        lai, std = predict_pixel_lai(pixel_model, bands, series.angles)
    else:
        model, payload = load_autoencoder(model_path)
        days = window_days or payload.get("chunk_days") or chunk_days or DEFAULT_WINDOW_DAYS
        windows = {"window_days": int(days), "context_days": model.cfg.context_days}
        if fine_tune_epochs:
            weights = trained_weights(payload)

            def report(epoch: int, loss: float) -> None:
                if log is not None:
                    log(f"fine-tune epoch {epoch}/{fine_tune_epochs}: loss {loss:.4f}")

            tic = time.perf_counter()
            losses = fine_tune(
                model, series, fine_tune_epochs, weights=weights, lr=lr, window_days=days,
                progress=progress, on_epoch=report,
            )  # fmt: skip
            timing["fine_tune_seconds"] = round(time.perf_counter() - tic, 1)
        tic = time.perf_counter()
        lai, std = predict_table_lai(model, series, window_days=days, progress=progress)
        timing["decode_seconds"] = round(time.perf_counter() - tic, 1)
    result = raw.copy()
    for name, values in zip(OUTPUT_COLUMNS, (lai, std), strict=True):
        column = np.full(len(raw), np.nan, np.float32)
        column[order] = values
        result[name] = column
    write_table(result, out)
    return {
        "out": str(out),
        "rows": len(result),
        "points": int(pd.unique(series.point).size),
        "clear_s2_rows": int(series.usable.sum()),
        "s1_rows": int(series.has_s1.sum()),
        "lai_rows": int(np.isfinite(lai).sum()),
        **windows,
        "fine_tune_losses": losses,
        **timing,
        "seconds": round(time.perf_counter() - started, 1),
    }


def site_pixel_table(
    data_dir: PathLike,
    n_points: int,
    *,
    index: pd.DataFrame | None = None,
    split: str | None = None,
    seed: int = 0,
    s1_max_days: int = 3,
) -> pd.DataFrame:
    """A pixel time-series table drawn from a site, in releo's names.

    ``n_points`` random pixels (of ``split``'s chunks when ``index`` and ``split`` are given)
    at every S2 date.

    ``cloud_mask`` is 0 clear, 1 otherwise; S1 (VV, VH, incidence) is the acquisition
    nearest to each S2 date within ``s1_max_days`` (NaN if none); ``truth_lai`` is the
    simulator's LAI when the site has a truth cube (for validation only).
    """
    site = open_site(Path(data_dir))
    s2, s1 = site.s2, site.s1
    ny, nx = s2.sizes["y"], s2.sizes["x"]
    allowed = np.ones((ny, nx), bool)
    if index is not None and split is not None:
        allowed[:] = False
        for row in index[index["split"] == split].drop_duplicates(["y0", "x0"]).itertuples():
            allowed[row.y0 : row.y0 + row.size_px, row.x0 : row.x0 + row.size_px] = True
    cells = np.flatnonzero(allowed)
    if cells.size == 0:
        raise DataError(f"{site.root}: no pixel in split {split!r}")
    cells = np.random.default_rng(seed).choice(cells, min(n_points, cells.size), replace=False)
    iy, ix = np.unravel_index(np.sort(cells), (ny, nx))
    ys, xs = s2.y.values[iy], s2.x.values[ix]
    n_t = s2.sizes["time"]
    pick = {"y": ("p", iy), "x": ("p", ix)}

    def at(cube, name):  # (time, points)
        sel = {k: xr.DataArray(v, dims=d) for k, (d, v) in pick.items()}
        return cube[name].isel(sel).values

    dates = pd.DatetimeIndex(s2.time.values)
    frame = {
        "point_id": np.repeat([f"p{i:05d}" for i in range(len(iy))], n_t),
        "date": np.tile(dates.values, len(iy)),
        "x": np.repeat(xs, n_t),
        "y": np.repeat(ys, n_t),
        "crs": site.crs,
    }
    for band in S2_BANDS:
        frame[band] = at(s2, band).T.reshape(-1)
    for angle in S2_ANGLES:
        frame[angle] = np.tile(s2[angle].values, len(iy))
    frame["cloud_mask"] = (at(s2, S2_MASK).T.reshape(-1) != MASK_CLEAR).astype(np.uint8)
    platforms = s2[PLATFORM].values.astype(str) if PLATFORM in s2.coords else ["S2A"] * n_t
    frame["platform"] = np.tile(platforms, len(iy))
    s1_days = pd.DatetimeIndex(s1.time.values).normalize()
    gap = np.abs(
        (dates.normalize().values[:, None] - s1_days.values[None]) / np.timedelta64(1, "D")
    )
    nearest, close = gap.argmin(1), gap.min(1) <= s1_max_days
    for name in (*S1_POLARISATIONS, S1_INCIDENCE):
        values = at(s1, name)[nearest]  # (n_t, points)
        frame[name] = np.where(close[:, None], values, np.nan).T.reshape(-1)
    if site.path("truth").exists():
        truth = open_cube(site.path("truth"))["lai"]
        truth = truth.sel(time=dates.normalize().values, method="nearest")
        frame["truth_lai"] = at(truth.to_dataset(name="lai"), "lai").T.reshape(-1)
    return pd.DataFrame(frame)
