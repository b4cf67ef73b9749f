"""What the ``tune`` and ``train`` stages share: their run spec, logged datasets and run names.

Also which site they rank on (:func:`site_has_truth`) and the line that says so
(:func:`announce`).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from releo import tracking
from releo.config import Params
from releo.data.chunks import INDEX
from releo.data.site import SITE_FILES
from releo.train.config import TrainConfig
from releo.train.ray_train import RunSpec
from releo.train.task import Task, physics_task


def run_spec(
    params: Params, root: Path, weights: dict, task: Task | None, train: TrainConfig | None = None
) -> RunSpec:
    """The Ray run of ``params`` under ``root`` with the loss ``weights`` (physics task default)."""
    return RunSpec(
        task=task or physics_task(),
        train=train or params.train,
        model=params.model.model_dump(),
        loss_weights=weights,
        data_dir=(root / params.data_dir).resolve(),
        index_path=(root / INDEX).resolve(),
        sites=tuple(((root / s.path).resolve(), s.chunk_m) for s in params.train.sites),
        chunk_days=params.chunks.days,
    )


def log_chunks(root: Path) -> None:
    """The train and val chunk index as MLflow dataset inputs of the active run."""
    index = pd.read_parquet(root / INDEX)
    source = str((root / INDEX).resolve())
    for split, context in (("train", "training"), ("val", "validation")):
        part = index[index["split"] == split].reset_index(drop=True)
        tracking.log_dataset(part, f"chunks-{split}", context, source=source)


def stamp() -> str:
    """The local time as a run name's suffix."""
    return time.strftime("%Y%m%d-%H%M%S")


def site_has_truth(params: Params, root: Path) -> bool | None:
    """Whether the site of ``params.data_dir`` carries the simulator's truth.

    As ``Site.has_truth``, without opening the cubes; None where no site is there (a task that
    brings its own data).
    """
    data = root / params.data_dir
    if not (data / SITE_FILES["s2"]).exists():
        return None
    return (data / SITE_FILES["truth"]).exists()


def announce(stage: str, configured: str | None, used: str | None, has_truth: bool | None) -> None:
    """Say which metric ranks the runs (it is also in the stage's metrics and MLflow)."""
    site = {True: "site with truth", False: "site without truth", None: "no site"}[has_truth]
    why = f", as {configured} needs the simulator's truth" if used != configured else ""
    print(f"{stage}: ranking by {used} ({site}{why})")
