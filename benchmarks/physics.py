"""Physics benchmark: releo's PROSAIL and SNAP LAI against the PyPI `prosail` package.

Run with `make bench-physics` (or `.venv/bin/python benchmarks/physics.py`). Measures, in one run
on this machine: spectra per second of releo's PROSAIL (full spectrum and band-level path, batch
1 and 10,000, float32, eager and fused) and of the reference called per spectrum; accuracy
against the reference; SNAP LAI pixels per second. Writes benchmarks/results/physics.json.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from releo.data.contracts import S2_BANDS
from releo.physics import prosail_s2_bands, prosail_spectrum, random_parameters, s2_bands
from releo.physics import snap_lai as snap
from releo.physics.reference import reference_spectra
from report import report


def rate(fn, n_items: int, min_seconds: float = 2.0) -> float:
    """Items per second of ``fn`` (best of repeated calls lasting at least ``min_seconds``)."""
    fn()  # warm-up (caches, compiled kernels)
    best, spent = float("inf"), 0.0
    while spent < min_seconds:
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return n_items / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--reference-draws", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    # Reference: scalar, per spectrum (its numba compilation is excluded by the warm-up).
    ref_p = random_parameters(args.reference_draws, seed=1, dtype=torch.float64)
    reference_spectra({k: v[:2] for k, v in ref_p.items()})
    t0 = time.perf_counter()
    ref = reference_spectra(ref_p)
    reference_rate = args.reference_draws / (time.perf_counter() - t0)

    ours64 = prosail_spectrum(**ref_p).numpy()
    ours32 = prosail_spectrum(**{k: v.float() for k, v in ref_p.items()}, fused=True)
    bands64 = prosail_s2_bands(**ref_p).numpy()

    p = random_parameters(args.batch, seed=2, dtype=torch.float32)
    one = {k: v[:1] for k, v in p.items()}
    figures: dict[str, float] = {}
    with torch.no_grad():
        for fused in (False, True):
            tag = "fused" if fused else "eager"
            figures[f"spectrum_{tag}_batch1_per_s"] = rate(
                lambda f=fused: prosail_spectrum(**one, fused=f), 1, 0.5
            )
            figures[f"spectrum_{tag}_batch{args.batch}_per_s"] = rate(
                lambda f=fused: prosail_spectrum(**p, fused=f), args.batch
            )
            figures[f"bands_{tag}_batch1_per_s"] = rate(
                lambda f=fused: prosail_s2_bands(**one, fused=f), 1, 0.5
            )
            figures[f"bands_{tag}_batch{args.batch}_per_s"] = rate(
                lambda f=fused: prosail_s2_bands(**p, fused=f), args.batch
            )

    n_pix = 1_000_000
    rng = np.random.default_rng(0)
    bands = {b: rng.uniform(0.02, 0.4, n_pix).astype(np.float32) for b in S2_BANDS}
    angles = {
        "sun_zenith": np.full(n_pix, 40.0, np.float32),
        "view_zenith": np.full(n_pix, 5.0, np.float32),
        "relative_azimuth": np.full(n_pix, 100.0, np.float32),
    }
    snap_rate = rate(lambda: snap(bands, angles), n_pix)

    full_rate = figures[f"spectrum_fused_batch{args.batch}_per_s"]
    band_rate = figures[f"bands_fused_batch{args.batch}_per_s"]
    results = {
        "prosail_spectra_per_s": full_rate,
        "prosail_bands_per_s": band_rate,
        "reference_prosail_spectra_per_s": reference_rate,
        "speedup_vs_reference": full_rate / reference_rate,
        "bands_speedup_vs_reference": band_rate / reference_rate,
        "max_abs_diff_vs_reference": float(np.abs(ours64 - ref).max()),
        "max_abs_diff_vs_reference_float32_fused": float(
            np.abs(ours32.double().numpy() - ref).max()
        ),
        "band_path_max_abs_error": float(np.abs(bands64 - s2_bands(ref)).max()),
        "band_path_mean_abs_error": float(np.abs(bands64 - s2_bands(ref)).mean()),
        "snap_pixels_per_s": snap_rate,
        **figures,
        "batch": args.batch,
    }
    report("physics", results)


if __name__ == "__main__":
    main()
