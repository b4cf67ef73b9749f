"""DVC stage ``decode``: gate the embeddings, then decode LAI on the grid and dates of params."""

from pathlib import Path

from releo.config import load_params
from releo.data.io import open_cube
from releo.products.decode import LaiCalibration
from releo.products.product_gates import check_embeddings
from releo.products.stages import CALIBRATION, EMBEDDINGS, run_decode
from releo.stage import stage
from releo.timings import timed


def main() -> None:
    with stage("decode"), timed("decode") as clock:
        params = load_params()
        with clock.part("gates"):
            check_embeddings(
                open_cube(EMBEDDINGS), EMBEDDINGS, context_root=params.quality.context_root
            )
        metrics = run_decode(params, Path.cwd(), LaiCalibration.load(CALIBRATION))
        print(
            f"{metrics['dates']} dates {metrics['first_date']}..{metrics['last_date']} on "
            f"{metrics['grid']['ny']}x{metrics['grid']['nx']} px: "
            f"{metrics['valid_fraction']:.1%} decoded in {metrics['tasks']} task(s), "
            f"{clock.values.get('pixel_dates_per_s', 0):,.0f} pixel-dates/s"
        )


if __name__ == "__main__":
    main()
