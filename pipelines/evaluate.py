"""DVC stage ``evaluate``: gate the reference, surveys, embeddings and product, then score the
decoded LAI against truth, SNAP and field surveys (with the per-pixel baseline alongside)."""

from pathlib import Path

from releo import quality
from releo.config import load_params
from releo.data.io import open_cube
from releo.data.site import open_site
from releo.products.decode import LaiCalibration
from releo.products.evaluate import run_evaluate
from releo.products.product_gates import check_embeddings, check_lai_product, check_site_surveys
from releo.products.stages import CALIBRATION, EMBEDDINGS, LAI_CUBE
from releo.stage import stage
from releo.timings import timed


def _gate(params) -> None:
    root = params.quality.context_root
    site = open_site(params.data_dir)
    if site.reference is not None:
        quality.check_reference_product(site.reference, site.path("reference"), context_root=root)
    check_site_surveys(site, context_root=root)
    check_embeddings(open_cube(EMBEDDINGS), EMBEDDINGS, context_root=root)
    check_lai_product(open_cube(LAI_CUBE), LAI_CUBE, context_root=root)


def main() -> None:
    with stage("evaluate"), timed("evaluate") as clock:
        params = load_params()
        with clock.part("gates"):
            _gate(params)
        m = run_evaluate(params, Path.cwd(), calibration=LaiCalibration.load(CALIBRATION))
        fmt = lambda k: "n/a" if m.get(k) is None else f"{m[k]:.3f}"  # noqa: E731
        print(
            f"held-out {'+'.join(m['splits'])}: LAI RMSE vs truth {fmt('lai_rmse_truth')} "
            f"(SNAP {fmt('snap_lai_rmse_truth')}, per-pixel {fmt('baseline_lai_rmse_truth')}); "
            f"vs field {fmt('lai_rmse_field')} (SNAP {fmt('snap_lai_rmse_field')}, "
            f"per-pixel {fmt('baseline_lai_rmse_field')}); vs SNAP {fmt('lai_rmse_snap')} "
            f"(per-pixel {fmt('baseline_lai_rmse_snap')})"
        )
        if m["absent"]:
            print(f"absent from the site, not scored: {', '.join(m['absent'])}")


if __name__ == "__main__":
    main()
