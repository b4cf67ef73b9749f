"""DVC stage ``decode``: gate the embeddings, then decode LAI on the grid and dates of params.

Writes ``products/`` (the LAI cube, a GeoTIFF and a PNG per date, the overview; the layout of
:mod:`releo.products.export`) and ``metrics/decode.json``, through
:func:`releo.products.regions.decode_to_folder`.
"""

from __future__ import annotations

from pathlib import Path

from releo.config import Params, load_params
from releo.data.io import open_cube, write_json
from releo.products.decode import LaiCalibration
from releo.products.product_gates import check_embeddings
from releo.products.regions import LAI_CUBE_NAME, decode_to_folder
from releo.stage import stage
from releo.stages.calibrate import CALIBRATION
from releo.stages.embed import EMBEDDINGS
from releo.stages.train import MODEL
from releo.timings import timed

PRODUCTS = Path("products")
LAI_CUBE = PRODUCTS / LAI_CUBE_NAME
DECODE_METRICS = Path("metrics/decode.json")


def run_decode(
    params: Params, root: Path = Path(), calibration: LaiCalibration | None = None
) -> dict:
    """Stage ``decode``: the product of ``products.decode`` into ``products/``."""
    root = Path(root)
    metrics = decode_to_folder(
        params.products.decode, root / EMBEDDINGS, root / MODEL, root / PRODUCTS, calibration
    )
    write_json(metrics, root / DECODE_METRICS)
    return metrics


def main() -> None:
    """Run the stage in the project of the working directory."""
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
