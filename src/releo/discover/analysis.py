"""Residual analysis: dependence measures and affine matches to planted effects.

Measures the dependence between residuals and physical variables, and finds the best affine match
between learned residuals and the simulator's planted effects.

Dependence is measured three ways, because each misses something: Pearson correlation
(linear), mutual information (k-nearest-neighbour estimator of Kraskov et al. 2004, as in
scikit-learn) and the normalised Hilbert–Schmidt independence criterion with Gaussian
kernels (Gretton et al. 2005; 0 for independence, 1 for identical kernels).
"""

from __future__ import annotations

import numpy as np
from sklearn.feature_selection import mutual_info_regression

MAX_SAMPLES = 800  # HSIC is quadratic in the sample size


def _standard(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    a = a.reshape(a.shape[0], -1)
    sd = a.std(axis=0)
    return (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)


def _gram(a: np.ndarray) -> np.ndarray:
    sq = np.sum(a**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * a @ a.T, 0.0)
    positive = d2[d2 > 0]
    bandwidth = np.median(positive) if positive.size else 1.0  # the median heuristic
    return np.exp(-d2 / bandwidth)


def _centred(k: np.ndarray) -> np.ndarray:
    """H K H with H = I − 1/n, without the two n³ products."""
    return k - k.mean(axis=0)[None, :] - k.mean(axis=1)[:, None] + k.mean()


def normalised_hsic(a: np.ndarray, b: np.ndarray) -> float:
    """HSIC(a, b) / sqrt(HSIC(a, a) · HSIC(b, b)) with centred Gaussian Gram matrices."""
    kc, mc = _centred(_gram(_standard(a))), _centred(_gram(_standard(b)))
    denom = np.sqrt(np.sum(kc * kc) * np.sum(mc * mc))
    return float(np.sum(kc * mc) / denom) if denom > 0 else 0.0


def subsample(n: int, size: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``size`` of ``n`` items, drawn without replacement."""
    return np.sort(np.random.default_rng(seed).permutation(n)[: min(n, size)])


def dependence(
    residual: np.ndarray, variables: dict[str, np.ndarray], seed: int = 0
) -> dict[str, dict[str, float]]:
    """Dependence of a scalar residual on each physical variable.

    Returns |Pearson|, mutual information (nats) and normalised HSIC, computed on the same samples
    for every variable.
    """
    keep = subsample(residual.size, MAX_SAMPLES, seed)
    r = np.asarray(residual, dtype=float)[keep]
    out = {}
    for name, values in variables.items():
        v = np.asarray(values, dtype=float)[keep]
        if np.std(v) == 0 or np.std(r) == 0:
            out[name] = {"abs_pearson": 0.0, "mutual_information": 0.0, "hsic": 0.0}
            continue
        mi = mutual_info_regression(v[:, None], r, random_state=seed, n_neighbors=3)[0]
        out[name] = {
            "abs_pearson": float(abs(np.corrcoef(r, v)[0, 1])),
            "mutual_information": float(mi),
            "hsic": normalised_hsic(r, v),
        }
    return out


def leading_direction(values: np.ndarray) -> tuple[np.ndarray, float]:
    """The dominant (uncentred) direction of residual vectors and its share of their energy.

    The direction is signed so that the mean projection is positive: a zero residual stays zero.
    """
    _, s, vt = np.linalg.svd(np.asarray(values, dtype=float), full_matrices=False)
    direction = vt[0]
    if np.mean(values @ direction) < 0:
        direction = -direction
    energy = float(s[0] ** 2 / np.sum(s**2)) if np.sum(s**2) > 0 else 0.0
    return direction, energy


def affine_match(latent: np.ndarray, planted: np.ndarray) -> dict:
    """Least-squares ``latent ≈ slope · planted + offset`` with its R² and correlation."""
    latent, planted = np.asarray(latent, dtype=float), np.asarray(planted, dtype=float)
    if latent.size < 3 or np.std(planted) == 0 or np.std(latent) == 0:
        return {"slope": 0.0, "offset": 0.0, "r2": None, "pearson": None, "n": int(latent.size)}
    slope, offset = np.polyfit(planted, latent, 1)
    pearson = float(np.corrcoef(latent, planted)[0, 1])
    return {
        "slope": float(slope),
        "offset": float(offset),
        "r2": pearson**2,
        "pearson": pearson,
        "n": int(latent.size),
    }


def ridge_match(
    features_fit: np.ndarray,
    target_fit: np.ndarray,
    features_test: np.ndarray,
    target_test: np.ndarray,
    ridge: float = 1e-2,
) -> dict:
    """Best affine map from latent vectors to a planted quantity.

    A ridge regression on standardised features, fitted on one split and scored on both.
    """
    mean, sd = features_fit.mean(axis=0), features_fit.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    a = np.column_stack([(features_fit - mean) / sd, np.ones(len(features_fit))])
    penalty = ridge * len(features_fit) * np.eye(a.shape[1])
    penalty[-1, -1] = 0.0
    w = np.linalg.solve(a.T @ a + penalty, a.T @ target_fit)

    def r2(features: np.ndarray, target: np.ndarray) -> float | None:
        if len(target) < 2 or np.std(target) == 0:
            return None
        pred = np.column_stack([(features - mean) / sd, np.ones(len(features))]) @ w
        return float(1 - np.sum((target - pred) ** 2) / np.sum((target - target.mean()) ** 2))

    corr = [
        abs(np.corrcoef(features_fit[:, k], target_fit)[0, 1])
        for k in range(features_fit.shape[1])
        if np.std(features_fit[:, k]) > 0
    ]
    return {
        "r2_fit": r2(features_fit, target_fit),
        "r2_heldout": r2(features_test, target_test),
        "max_abs_pearson_single_feature": float(max(corr)) if corr else None,
        "n_fit": len(target_fit),
        "n_heldout": len(target_test),
    }
