"""Heavy stages as Ray tasks: the gates by blocks of dates, embed and decode by output regions.

A product task computes and writes one region of its output cube. The driver writes the output
cube's metadata (coordinates, attributes, small variables) with the large variables left as
unwritten Zarr arrays whose chunks *are* the task regions. Each Ray task reads its inputs from the
stores itself (paths travel, not arrays), computes its region and writes it into its own chunk
files: no two tasks touch one file, so nothing is locked or merged. The driver then records the
cube's manifest and moves the cube into place atomically (:func:`releo.data.io.atomic_dir`), so a
failed stage leaves the previous cube intact.

Ray runs locally by default (``workers`` CPUs: all of the machine's when None), or on the
cluster ``$RAY_ADDRESS`` names; there every node needs releo installed and the project folder
must be shared storage (the tasks read the site and write the output by path). A task whose
worker dies is rerun (``max_retries``); it rewrites the same region, so a rerun is harmless.
"""

from __future__ import annotations

import itertools
import logging
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
import zarr

# The cube format (its encoding choices and integrity manifest) belongs to releo.data.io;
# the region writes here reuse it rather than copying it.
from releo.data.io import prepare_cube, write_manifest

FAIL_ONCE_ENV = "RELEO_FAIL_TASK_ONCE"
"""Test hook: a file path; the first Ray task to start creates it and kills its worker."""
MAX_RETRIES = 3  # reruns of a task whose worker died (node lost, out of memory, killed)


def regions(shape: Sequence[int], block: Sequence[int]) -> list[tuple[slice, ...]]:
    """Slices tiling ``shape`` by ``block`` (the last blocks cut at the edges), row-major."""
    axes = [
        [slice(a, min(a + b, n)) for a in range(0, n, b)] for n, b in zip(shape, block, strict=True)
    ]
    return list(itertools.product(*axes))


@contextmanager
def ray_session(workers: int | None = None) -> Iterator[None]:
    """Ray for one stage: the cluster at ``$RAY_ADDRESS``, else a local instance.

    The local instance has ``workers`` CPUs (None: all). Ray is quiet (its logging at ERROR,
    worker output kept out of the driver's) and shut down at the end when started here; an
    already connected session is reused and left running.
    """
    import ray

    if ray.is_initialized():
        yield
        return
    # Ray's own logging: errors only in the driver (its start-up notices and warnings, e.g.
    # about token authentication, are noise in `dvc repro`), workers' output not forwarded.
    # A failed task still raises here with its traceback.
    quiet: dict[str, Any] = {
        "logging_level": logging.ERROR,
        "logging_config": ray.LoggingConfig(log_level="ERROR"),  # the workers' ray loggers
        "log_to_driver": False,
        "configure_logging": True,
    }
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet)
    else:
        ray.init(num_cpus=workers or os.cpu_count(), include_dashboard=False, **quiet)
    try:
        yield
    finally:
        ray.shutdown()


def _run_task(fn: Callable, kwargs: dict, fail_once: str | None):
    """One Ray task: ``fn(**kwargs)`` on the task's single CPU."""
    import torch

    # Ray gives a task of num_cpus=1 one core; torch would otherwise size its pool to the node.
    torch.set_num_threads(1)
    if fail_once:
        try:
            os.close(os.open(fail_once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            pass
        else:
            os._exit(1)  # a worker crash, not an exception: Ray reruns the task
    return fn(**kwargs)


def map_tasks(
    fn: Callable, tasks: Sequence[dict], *, workers: int | None = None, in_process: bool = False
) -> list:
    """``fn(**task)`` for every task, as Ray tasks of one CPU; results in task order.

    At most ``workers`` tasks run at once on a cluster; locally the instance has ``workers``
    CPUs. ``in_process``: call ``fn`` here instead (a single small task is not worth a Ray
    start).
    """
    if in_process:
        return [fn(**task) for task in tasks]
    import ray

    fail_once = os.environ.get(FAIL_ONCE_ENV)
    remote = ray.remote(num_cpus=1, max_retries=MAX_RETRIES)(_run_task)
    limit = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    results: dict = {}
    pending: dict = {}
    queue = iter(enumerate(tasks))
    for i, task in itertools.islice(queue, limit):
        pending[remote.remote(fn, task, fail_once)] = i
    while pending:
        # Keep ``limit`` tasks in flight: the engine schedules them, this only bounds how much
        # output is pending in the object store at once.
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            results[pending.pop(ref)] = ray.get(ref)
            for i, task in itertools.islice(queue, 1):
                pending[remote.remote(fn, task, fail_once)] = i
    return [results[i] for i in range(len(tasks))]


def use_ray(n_tasks: int) -> bool:
    """Whether a stage of ``n_tasks`` regions runs on Ray.

    Always on a cluster; locally when there is more than one region.
    """
    return bool(os.environ.get("RAY_ADDRESS")) or n_tasks > 1


def create_region_cube(ds: xr.Dataset, path: Path, region_chunks: dict[str, tuple]) -> None:
    """Write the metadata of cube ``ds`` at ``path``, leaving the region variables unwritten.

    Every variable is written but those of ``region_chunks`` (lazy templates), which get Zarr
    chunks of that shape, one per task region.
    """
    prepared, encoding = prepare_cube(ds, path)
    for name, chunks in region_chunks.items():
        shape = prepared[name].shape
        encoding[name].pop("shards", None)
        encoding[name]["chunks"] = tuple(min(c, n) for c, n in zip(chunks, shape, strict=True))
    with warnings.catch_warnings():
        # as releo.data.io.write_cube: zarr's "string" dtype has no final v3 spec yet
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        prepared.to_zarr(
            path, mode="w", zarr_format=3, consolidated=False, encoding=encoding, compute=False
        )


def write_region(path: Path, name: str, region: tuple[slice, ...], values: np.ndarray) -> None:
    """Write ``values`` into ``region`` of variable ``name`` of the cube at ``path``."""
    group = zarr.open_group(str(path), mode="r+", zarr_format=3)
    array = group[name]
    if not isinstance(array, zarr.Array):
        raise TypeError(f"{path}: {name!r} is a group, not an array")
    array[region] = values.astype(array.dtype, copy=False)


def finish_cube(path: Path) -> None:
    """Record the manifest of a cube whose regions are all written (open_cube checks it)."""
    write_manifest(Path(path))
