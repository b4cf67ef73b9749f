"""``releo lai``: LAI for a pixel time-series table with the trained chunk autoencoder.

Each point's series is a 1 × 1-pixel "chunk" of the autoencoder: its S2 rows (clear ones
usable, cloudy ones masked) and its S1 rows (finite VV and VH) go through the encoder, and the
latent decoder gives LAI (median and standard deviation) at every row's date, cloudy rows
included. ``window_days`` cuts each series into consecutive windows like the training chunks
(None: the whole series is one chunk), each read with the model's ``context_days`` around it.
Optionally the model is first fine-tuned on the table's own series with its physics loss
(self-supervised: no LAI is read). A per-pixel inversion model (:mod:`releo.models.pixel`) can
stand in for the chunk model: LAI at the clear rows only, without temporal context.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr
import yaml

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
from releo.train.loop import PAD_ANGLES, PAD_INCIDENCE, collate_chunks

PathLike = str | os.PathLike[str]

CANONICAL_COLUMNS: tuple[str, ...] = (*PixelTableSchema.model_fields, "platform")
"""Names a column map may use: the pixel-table contract's fields and ``platform`` (S2A/S2B…)."""
OUTPUT_COLUMNS = ("lai", "lai_std")
PREDICT_POINTS = 256  # chunks encoded and decoded at once
FINE_TUNE_POINTS = 16  # chunks per fine-tuning step


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
    """The file's table as it is, the table in releo's names (:func:`read_pixel_table`,
    sorted by point and date, with a ``platform`` column, S2A when absent) and, for each row
    of the latter, its row position in the former.

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

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> PixelSeries:
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
        return cls(
            point=table["point_id"].to_numpy(),
            day=table["date"].to_numpy().astype("datetime64[D]"),
            bands=np.where(usable[:, None], bands, np.nan).astype(np.float32),
            angles=np.where(geometry[:, None], angles, np.float32(PAD_ANGLES)),
            usable=usable,
            s1=np.where(has_s1[:, None], s1, 0.0).astype(np.float32),
            incidence=np.where(has_s1, incidence, PAD_INCIDENCE).astype(np.float32),
            has_s1=has_s1,
            platform=platform.astype(str).to_numpy(),
        )

    def groups(self, window_days: int | None = None) -> list[np.ndarray]:
        """Row positions of each chunk: one per point, or per point and ``window_days``
        window (counted from the table's first date, like the chunk index)."""
        keys = pd.DataFrame({"point": self.point})
        if window_days is not None:
            keys["window"] = (self.day - self.day.min()).astype(int) // window_days
        return [np.sort(v) for v in keys.groupby(list(keys.columns), sort=False).indices.values()]

    def chunks(
        self, window_days: int | None = None, context_days: int = 0
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each chunk's rows to read (its window's and, with ``window_days``, its point's rows
        up to ``context_days`` either side of the window) and which of them are its window's."""
        groups = self.groups(window_days)
        if window_days is None or context_days == 0:
            return [(rows, np.ones(rows.size, bool)) for rows in groups]
        first = self.day.min()
        by_point = {
            p: np.sort(r) for p, r in pd.Series(self.point).groupby(self.point).indices.items()
        }
        out = []
        for rows in groups:
            window = (self.day[rows[0]] - first).astype(int) // window_days
            start = first + np.timedelta64(window * window_days - context_days, "D")
            end = first + np.timedelta64((window + 1) * window_days - 1 + context_days, "D")
            same = by_point[self.point[rows[0]]]
            read = same[(self.day[same] >= start) & (self.day[same] <= end)]
            out.append((read, np.isin(read, rows)))
        return out

    def item(self, rows: np.ndarray, inside: np.ndarray | None = None) -> dict:
        """Rows (of one point, by date) as a 1 × 1-pixel chunk item (``ChunkDataset``'s format);
        ``inside`` marks the window's rows (default: all), the others are temporal context."""
        inside = np.ones(rows.size, bool) if inside is None else inside
        doy = pd.DatetimeIndex(self.day[rows]).day_of_year.to_numpy().astype(np.float32)
        window = self.day[rows][inside]
        span = float((window[-1] - window[0]).astype(int))
        first = float(pd.Timestamp(window[0]).day_of_year)
        s1 = self.has_s1[rows]
        return {
            "chunk_id": str(self.point[rows[0]]),
            "window_doy": torch.tensor([first, first + span]),
            "s2": torch.from_numpy(self.bands[rows][:, :, None, None]),
            "s2_mask": torch.from_numpy(self.usable[rows][:, None, None]),
            "s2_angles": torch.from_numpy(self.angles[rows]),
            "s2_doy": torch.from_numpy(doy),
            "s2_platform": list(self.platform[rows]),
            "s2_in_window": torch.from_numpy(inside),
            "s1": torch.from_numpy(self.s1[rows[s1]][:, :, None, None]),
            "s1_incidence": torch.from_numpy(self.incidence[rows[s1]][:, None, None]),
            "s1_doy": torch.from_numpy(doy[s1]),
            "s1_in_window": torch.from_numpy(inside[s1]),
        }


def _batches(
    series: PixelSeries, chunks: list[tuple[np.ndarray, np.ndarray]], size: int
) -> Iterator[tuple[list[tuple[np.ndarray, np.ndarray]], dict]]:
    for start in range(0, len(chunks), size):
        part = chunks[start : start + size]
        yield part, collate_chunks([series.item(rows, inside) for rows, inside in part])


def _series(table: pd.DataFrame | PixelSeries) -> PixelSeries:
    return table if isinstance(table, PixelSeries) else PixelSeries.from_table(table)


@torch.no_grad()
def predict_table_lai(
    model: PhysicsAutoencoder,
    table: pd.DataFrame | PixelSeries,
    *,
    window_days: int | None = None,
    batch_points: int = PREDICT_POINTS,
) -> tuple[np.ndarray, np.ndarray]:
    """LAI median and standard deviation (N,) at every row of a table in releo's names
    (:func:`read_lai_table`), each decoded from its point's series (or window of it)."""
    series = _series(table)
    model.eval()
    lai = np.full(len(series.point), np.nan, np.float32)
    std = np.full(len(series.point), np.nan, np.float32)
    chunks = series.chunks(window_days, model.cfg.context_days)
    for part, batch in _batches(series, chunks, batch_points):
        z, context = model.encode_with_context(batch)
        t = batch["s2_doy"]  # every row is a date of its chunk's S2 axis (then padding)
        centre = torch.full_like(t, 0.5)
        dist = model.decode(z, centre, centre, t, context)["lai"]
        median, sigma = dist.median.numpy(), dist.stddev.numpy()
        for i, (rows, inside) in enumerate(part):
            at = np.flatnonzero(inside)
            lai[rows[at]], std[rows[at]] = median[i, at], sigma[i, at]
    return lai, std


def fine_tune(
    model: PhysicsAutoencoder,
    table: pd.DataFrame | PixelSeries,
    epochs: int,
    *,
    weights: LossWeights | None = None,
    lr: float = 3e-4,
    window_days: int | None = None,
    batch_points: int = FINE_TUNE_POINTS,
    seed: int = 0,
) -> list[float]:
    """Fine-tune ``model`` in place on the table's own series with its physics loss
    (self-supervised: the table's LAI, if any, is never read); returns each epoch's mean
    total loss. AdamW from ``lr``, cosine-decayed to 0; points shuffled with ``seed``."""
    series = _series(table)
    chunks = series.chunks(window_days, model.cfg.context_days)
    weights = weights or LossWeights()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(chunks) // batch_points)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(steps, 1))
    losses = []
    for _ in range(epochs):
        model.train()
        total, n = 0.0, 0
        shuffled = [chunks[i] for i in rng.permutation(len(chunks))]
        for _, batch in _batches(series, shuffled, batch_points):
            optimizer.zero_grad(set_to_none=True)
            loss = model.loss(batch, weights)["total"]
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            scheduler.step()
            total, n = total + float(loss.detach()), n + 1
        losses.append(total / max(n, 1))
    model.eval()
    return losses


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
    context_root: PathLike | None = None,
) -> dict:
    """``releo lai``: read and gate a pixel table, (fine-tune,) predict, write it back.

    ``model_path`` is the trained chunk autoencoder (``models/model.pt``), or a per-pixel
    inversion saved by ``releo.models.pixel.save_pixel_inversion`` (no temporal context:
    clear rows only, NaN elsewhere; no fine-tuning). The output is the file's table, rows
    and columns as they were, plus ``lai`` and ``lai_std``, written atomically to ``out``
    (default :func:`default_output`). The Great Expectations gate (``check_pixel_table``)
    runs first; a failed gate raises ``QualityGateError``, bad files or columns
    :class:`DataError`. Returns a summary.
    """
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
    if model_path.is_file() and _is_pixel_model(model_path):
        if fine_tune_epochs:
            raise DataError(f"{model_path}: a per-pixel inversion model is not fine-tuned here")
        pixel_model = load_pixel_inversion(model_path)
        bands = np.where(series.usable[:, None], series.bands, np.nan)
        lai, std = predict_pixel_lai(pixel_model, bands, series.angles)
    else:
        model, payload = load_autoencoder(model_path)
        if fine_tune_epochs:
            weights = LossWeights(**payload.get("weights", {}))
            losses = fine_tune(
                model, series, fine_tune_epochs, weights=weights, lr=lr, window_days=window_days
            )
        lai, std = predict_table_lai(model, series, window_days=window_days)
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
        "fine_tune_losses": losses,
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
    """A pixel time-series table drawn from a site: ``n_points`` random pixels (of ``split``'s
    chunks when ``index`` and ``split`` are given) at every S2 date, in releo's names.

    ``cloud_mask`` is 0 clear, 1 otherwise; S1 (VV, VH, incidence) is the acquisition
    nearest to each S2 date within ``s1_max_days`` (NaN if none); ``truth_lai`` is the
    simulator's LAI when the site has a truth cube (for validation only).
    """
    site = open_site(data_dir)
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
