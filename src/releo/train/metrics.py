"""Full-chunk evaluation of the autoencoder: reconstruction and LAI errors, accumulated."""

from __future__ import annotations

import math

import torch

from releo.data.contracts import S1_POLARISATIONS, S2_BANDS
from releo.models import PhysicsAutoencoder
from releo.models.autoencoder import gather_pixels
from releo.models.encoder import fitted, in_window
from releo.models.forward import s1_backscatter_db, s2_noise_sigma, s2_reflectance
from releo.models.slots import pixel_xy
from releo.models.synthetic import S1_ENL

PIXEL_BLOCK = 2500  # pixels decoded at once per chunk (bounds memory on large chunks)

LAI_METRICS = (
    "lai_rmse_truth",
    "lai_rmse_truth_clear",
    "lai_rmse_truth_cloudy",
    "lai_rmse_truth_at_snap",
    "lai_rmse_truth_between",
    "lai_rmse_truth_embedding_only",
    "lai_rmse_truth_embedding_only_at_snap",
    "snap_lai_rmse_truth",
)
# Agreement with the reference product (SNAP) at its clear pixel-dates: needs no truth.
SNAP_METRICS = ("lai_rmse_snap", "lai_rmse_snap_embedding_only")
RECONSTRUCTION_METRICS = (
    "s2_reconstruction_rmse",
    "s2_noise_rms",
    *(f"s2_rmse_{b}" for b in S2_BANDS),
    "s1_reconstruction_rmse_db",
    *(f"s1_rmse_db_{p}" for p in S1_POLARISATIONS),
)

DERIVED_METRICS = (
    "lai_bias_truth",
    "s2_fit_to_noise",
    "lai_rmse_to_snap",
    "embedding_lai_to_goal",
    "goal_ratio",
    "s1_fit_to_noise",
    "lai_snap_to_tolerance",
    "truth_free_ratio",
)
# The products' goal: LAI decoded from the embeddings alone at least as good as SNAP's RMSE.
EMBEDDING_GOAL_TO_SNAP = 1.0
# Standard deviation (dB) of GRD speckle, unit-mean gamma with S1_ENL looks: 10/ln 10 x
# sqrt(trigamma(ENL)), ~2.2 dB. A model that fits S1 perfectly still misses it by this much.
S1_SPECKLE_DB = 10 / math.log(10) * math.sqrt(float(torch.polygamma(1, torch.tensor(S1_ENL))))
# Truth-free goals: the S1 RMSE within 25 % of the speckle (a model error up to ~0.75 x the
# speckle, ~1.6 dB) and LAI within 1 m2/m2 of SNAP (of the order of SNAP's own error against
# ground measurements: closer is not better, further means the physics went astray).
S1_FIT_GOAL = 1.25
SNAP_LAI_TOLERANCE = 1.0
VALIDATION_METRICS = (
    *RECONSTRUCTION_METRICS,
    *LAI_METRICS,
    *SNAP_METRICS,
    *DERIVED_METRICS,
)
# The validation metrics that a site without the simulator's truth can report (train.select_metric
# and tune.metric fall back to one of these there): no "truth" in them, and not goal_ratio,
# lai_rmse_to_snap or embedding_lai_to_goal, which are ratios of truth errors.
TRUTH_FREE_METRICS = (
    *RECONSTRUCTION_METRICS,
    *SNAP_METRICS,
    "s2_fit_to_noise",
    "s1_fit_to_noise",
    "lai_snap_to_tolerance",
    "truth_free_ratio",
)


def _add(sums: dict, name: str, error: torch.Tensor) -> None:
    """Accumulate squared error, error and count of the finite entries of ``error``."""
    error = error[torch.isfinite(error)].double()
    acc = sums.setdefault(name, [0.0, 0.0, 0])
    acc[0] += float(error.pow(2).sum())
    acc[1] += float(error.sum())
    acc[2] += error.numel()


def finish_metrics(sums: dict) -> dict[str, float]:
    """RMSE (and bias for LAI vs truth) of every accumulated error; NaN where nothing was seen."""
    out = {}
    for name in (*RECONSTRUCTION_METRICS, *LAI_METRICS, *SNAP_METRICS):
        sq, _, n = sums.get(name, (0.0, 0.0, 0))
        out[name] = math.sqrt(sq / n) if n else float("nan")
    s, n = sums.get("lai_rmse_truth", (0.0, 0.0, 0))[1:]
    out["lai_bias_truth"] = s / n if n else float("nan")
    out["s2_fit_to_noise"] = out["s2_reconstruction_rmse"] / out["s2_noise_rms"]
    out["lai_rmse_to_snap"] = out["lai_rmse_truth_at_snap"] / out["snap_lai_rmse_truth"]
    # the products' goal compares with SNAP where SNAP has a value, so the ratio does too
    out["embedding_lai_to_goal"] = out["lai_rmse_truth_embedding_only_at_snap"] / (
        EMBEDDING_GOAL_TO_SNAP * out["snap_lai_rmse_truth"]
    )
    out["goal_ratio"] = goal_ratio(
        out["lai_rmse_to_snap"], out["s2_fit_to_noise"], out["embedding_lai_to_goal"]
    )
    out["s1_fit_to_noise"] = out["s1_reconstruction_rmse_db"] / S1_SPECKLE_DB
    # the worse of the two decoding paths, as goal_ratio judges both
    snap = [out[k] for k in SNAP_METRICS if math.isfinite(out[k])]
    out["lai_snap_to_tolerance"] = max(snap) / SNAP_LAI_TOLERANCE if snap else math.nan
    out["truth_free_ratio"] = truth_free_ratio(
        out["s2_fit_to_noise"], out["s1_fit_to_noise"], out["lai_snap_to_tolerance"]
    )
    return out


def goal_ratio(
    lai_rmse_to_snap: float, s2_fit_to_noise: float, embedding_lai_to_goal: float = math.nan
) -> float:
    """How far the model is from the platform's goals, as the worse of their ratios.

    The ratios: LAI RMSE over the SNAP product's at its pixel-dates, S2 RMSE over twice the L2A
    noise, and the LAI RMSE decoded from the embeddings alone over SNAP's. Below 1 all hold.
    A site without a reference product is judged on the S2 fit alone.
    """
    ratios = [
        r
        for r in (lai_rmse_to_snap, s2_fit_to_noise / 2, embedding_lai_to_goal)
        if math.isfinite(r)
    ]
    return max(ratios) if ratios else float("nan")


def truth_free_ratio(
    s2_fit_to_noise: float, s1_fit_to_noise: float, lai_snap_to_tolerance: float = math.nan
) -> float:
    """The model's distance from the goals that need no truth, as the worse of their ratios.

    The ratios: S2 RMSE over twice the L2A noise, S1 RMSE over 1.25 x the speckle and the LAI RMSE
    against the SNAP reference over its tolerance (a site without a reference is judged on the
    fits). Below 1 all hold. What ``train.select_metric`` and ``tune.metric`` fall back to on a site
    without the simulator's truth.
    """
    ratios = [
        r
        for r in (s2_fit_to_noise / 2, s1_fit_to_noise / S1_FIT_GOAL, lai_snap_to_tolerance)
        if math.isfinite(r)
    ]
    return max(ratios) if ratios else float("nan")


def _decode_lai(model, z, space, t) -> torch.Tensor:
    return model.decoder.variables(space, t)["lai"].median


def _s2_block(model, batch, z, detail, idx, x, y, sums) -> None:
    b, p = idx.shape
    n_t = batch["s2"].shape[1]
    if n_t == 0:
        return
    space = model.decoder.space_features(z, x, y, detail)
    space_t = space[:, :, None].expand(-1, -1, n_t, -1).reshape(b, p * n_t, -1)
    t = batch["s2_doy"][:, None].expand(b, p, n_t).reshape(b, p * n_t)
    dists = model.decoder.variables(space_t, t)
    clear = gather_pixels(fitted(batch, "s2"), idx).reshape(b, p * n_t)
    valid = in_window(batch, "s2")[:, None].expand(b, p, n_t).reshape(b, p * n_t)
    if clear.any():
        values = {k: d.median[clear] for k, d in dists.items()}
        angles = batch["s2_angles"][:, None].expand(b, p, n_t, 3).reshape(b, p * n_t, 3)
        platform = batch["s2_platform"][:, None].expand(b, p, n_t).reshape(b, p * n_t)
        pred = (
            s2_reflectance(values, angles[clear], platform[clear], fused=model.cfg.fused_prosail)
            + model.decoder.residuals(z, space_t, t, "s2")[clear]
        )
        obs = gather_pixels(batch["s2"], idx).reshape(b, p * n_t, 10)
        error = pred - obs[clear]
        _add(sums, "s2_reconstruction_rmse", error)
        _add(sums, "s2_noise_rms", s2_noise_sigma(obs[clear]))
        for i, band in enumerate(S2_BANDS):
            _add(sums, f"s2_rmse_{band}", error[:, i])
    lai = dists["lai"].median
    snap = truth = seen = None
    if "reference_lai" in batch:
        snap = gather_pixels(batch["reference_lai"], idx).reshape(b, p * n_t)
        _add(sums, "lai_rmse_snap", (lai - snap)[valid])  # NaN where SNAP has none: skipped
    if "truth_lai" in batch:
        truth = gather_pixels(batch["truth_lai"], idx).reshape(b, p * n_t)
        error = lai - truth
        _add(sums, "lai_rmse_truth", error[valid])
        _add(sums, "lai_rmse_truth_clear", error[clear])
        _add(sums, "lai_rmse_truth_cloudy", error[valid & ~clear])
        if snap is not None:
            seen = valid & torch.isfinite(snap) & torch.isfinite(truth)
            _add(sums, "snap_lai_rmse_truth", (snap - truth)[seen])
            _add(sums, "lai_rmse_truth_at_snap", error[seen])
    if model.cfg.detail_channels and (truth is not None or snap is not None):
        alone = model.decoder.space_features(z, x, y, None)
        alone = alone[:, :, None].expand(-1, -1, n_t, -1).reshape(b, p * n_t, -1)
        alone_lai = _decode_lai(model, z, alone, t)
        if truth is not None:
            alone_error = alone_lai - truth
            _add(sums, "lai_rmse_truth_embedding_only", alone_error[valid])
            if seen is not None:
                _add(sums, "lai_rmse_truth_embedding_only_at_snap", alone_error[seen])
        if snap is not None:
            _add(sums, "lai_rmse_snap_embedding_only", (alone_lai - snap)[valid])


def _s1_block(model, batch, z, detail, idx, x, y, sums) -> None:
    b, p = idx.shape
    n_t = batch["s1"].shape[1]
    sel = gather_pixels(fitted(batch, "s1"), idx).reshape(b, p * n_t)
    if n_t == 0 or not sel.any():
        return
    space = model.decoder.space_features(z, x, y, detail)
    space_t = space[:, :, None].expand(-1, -1, n_t, -1).reshape(b, p * n_t, -1)
    t = batch["s1_doy"][:, None].expand(b, p, n_t).reshape(b, p * n_t)
    dists = model.decoder.variables(space_t, t)
    incidence = gather_pixels(batch["s1_incidence"], idx).reshape(b, p * n_t)[sel]
    pred = s1_backscatter_db(
        dists["lai"].median[sel], dists["soil_moisture"].median[sel], incidence
    )
    pred = pred + model.decoder.residuals(z, space_t, t, "s1")[sel]
    obs = gather_pixels(batch["s1"], idx).reshape(b, p * n_t, 2)[sel]
    error = pred - obs
    _add(sums, "s1_reconstruction_rmse_db", error)
    for i, pol in enumerate(S1_POLARISATIONS):
        _add(sums, f"s1_rmse_db_{pol}", error[:, i])


def _between_block(model, batch, z, detail, idx, x, y, sums) -> None:
    # Days of the window without an S2 acquisition: LAI decoded where nothing optical exists.
    if "truth_lai_daily" not in batch or batch["truth_doy"].shape[1] == 0:
        return
    b, p = idx.shape
    doy = batch["truth_doy"]
    n_d = doy.shape[1]
    acquired = (doy[:, :, None] == batch["s2_doy"][:, None]) & in_window(batch, "s2")[:, None]
    between = batch["truth_valid"] & ~acquired.any(-1)  # (B, D)
    space = model.decoder.space_features(z, x, y, detail)
    space_t = space[:, :, None].expand(-1, -1, n_d, -1).reshape(b, p * n_d, -1)
    t = doy[:, None].expand(b, p, n_d).reshape(b, p * n_d)
    lai = _decode_lai(model, z, space_t, t)
    truth = gather_pixels(batch["truth_lai_daily"], idx).reshape(b, p * n_d)
    keep = between[:, None].expand(b, p, n_d).reshape(b, p * n_d)
    _add(sums, "lai_rmse_truth_between", (lai - truth)[keep])


@torch.no_grad()
def evaluate_batch(model: PhysicsAutoencoder, batch: dict, sums: dict) -> None:
    """Decode every pixel of every chunk of ``batch`` (medians) and accumulate the errors."""
    z, detail = model.encode_with_detail(batch)
    s2: torch.Tensor = batch["s2"]
    b, h, w = s2.shape[0], *s2.shape[-2:]
    for start in range(0, h * w, PIXEL_BLOCK):
        idx = torch.arange(start, min(start + PIXEL_BLOCK, h * w), device=z.device)
        idx = idx.expand(b, -1)
        x, y = pixel_xy(idx, h, w, z.dtype)
        for block in (_s2_block, _s1_block, _between_block):
            block(model, batch, z, detail, idx, x, y, sums)
