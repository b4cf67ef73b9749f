"""DVC stage ``calibrate``: gate the surveys and embeddings, then fit the LAI calibration (the
detection limit and the spread scale) on the field surveys of the training places."""

from pathlib import Path

from releo.config import load_params
from releo.data.io import open_cube
from releo.data.site import open_site
from releo.products.calibrate import run_calibrate
from releo.products.product_gates import check_embeddings, check_site_surveys
from releo.products.stages import EMBEDDINGS
from releo.stage import stage
from releo.timings import timed


def main() -> None:
    with stage("calibrate"), timed("calibrate") as clock:
        params = load_params()
        root = params.quality.context_root
        site = open_site(params.data_dir)
        with clock.part("gates"):
            check_site_surveys(site, context_root=root)
            check_embeddings(open_cube(EMBEDDINGS), EMBEDDINGS, context_root=root)
        m = run_calibrate(params, Path.cwd())
        if m["fitted"]:
            print(
                f"{m['surveys']} surveys on {'+'.join(m['splits'])} places: spread x "
                f"{m['spread_scale']:.3g}, {m['interval']:.0%} interval coverage "
                f"{m['coverage_before']:.2f} -> {m['coverage']:.2f}; LAI < "
                f"{m['detection_limit']:g} reported as 0"
            )
        else:
            print(m["note"])


if __name__ == "__main__":
    main()
