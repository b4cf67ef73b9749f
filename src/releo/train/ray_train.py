"""Distributed training with Ray Train (TorchTrainer, DDP), checkpointed every epoch.

Ray runs locally by default (a light instance: no dashboard, worker logs kept out of the
driver's output, Ray's own warnings quieted through its logging configuration: see
:func:`init_ray`). Set ``RAY_ADDRESS`` (e.g. ``ray://head:10001`` or ``auto``) to train on a
cluster: every node needs releo installed, and ``train.storage_path`` must then be shared
storage (NFS, S3) so that a restarted worker finds the checkpoints.

Fault tolerance: every ``checkpoint_every`` epochs rank 0 saves model, optimiser, LR
schedule, epoch and history through ``ray.train.report``. When a worker dies, Ray restarts the
worker group (up to ``max_failures`` times) and the loop resumes after the latest checkpoint
(``ray.train.get_checkpoint()``). Each attempt's first epoch is kept in ``attempts``, so
``[0, 2]`` reads "started at 0, resumed at 2 after a failure".

Model selection: the checkpoint also carries the weights of the validated epoch with the
lowest ``train.select_metric`` (``best``), so a run that fits the observations ever closer
while its validation error grows again keeps the epoch that generalised best.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Subset

from releo.data.chunks import SiteBatchSampler
from releo.train.config import TrainConfig
from releo.train.loop import adamw_cosine, dataset_len
from releo.train.task import Task

CHECKPOINT_FILE = "state.pt"


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs: the task, its params and where the data is."""

    task: Task
    train: TrainConfig
    model: dict
    loss_weights: dict
    data_dir: Path
    index_path: Path
    eval_split: str = "val"
    sites: tuple[tuple[Path, float], ...] = ()
    """Further training sites: (site directory, chunk side in m) (``train.sites``)."""
    chunk_days: int = 10
    """Chunk duration of the further sites, days (``chunks.days``)."""
    epochs: int | None = None
    """Overrides ``train.epochs`` (tuning trials run a shorter budget)."""
    max_batches_per_epoch: int | None = None
    """Overrides ``train.max_batches_per_epoch`` when set."""
    eval_max_batches: int | None = None
    """Overrides ``train.eval_max_batches`` when set."""
    should_stop: Callable[[], bool] | None = None
    """Asked by rank 0 before each epoch: True ends the run cleanly (early stopping)."""

    @property
    def n_epochs(self) -> int:
        """Epochs to run (the spec's, else ``train.epochs``)."""
        return self.epochs or self.train.epochs

    @property
    def max_batches(self) -> int | None:
        """Training batches per epoch (None: all)."""
        return self.max_batches_per_epoch or self.train.max_batches_per_epoch

    @property
    def max_eval_batches(self) -> int | None:
        """Validation batches per epoch (None: all)."""
        return self.eval_max_batches or self.train.eval_max_batches


@dataclass
class TrainOutcome:
    """What a finished run leaves: per-epoch history, attempts and the final state."""

    history: list[dict[str, float]]
    attempts: list[int]
    state: dict[str, Any]
    """Final checkpoint: ``model`` state dict, ``optimizer``, ``scheduler``, ``epoch``."""
    path: str
    seconds: float
    stopped_early: bool = False
    best: dict[str, Any] | None = None
    """The best validated epoch: ``epoch``, ``metric``, ``value`` and its ``model`` state dict
    (None when no evaluation reported ``train.select_metric``)."""

    @property
    def selected_epoch(self) -> int:
        """The epoch whose weights the run keeps: the best validated one, else the last."""
        return int(self.best["epoch"] if self.best else self.state["epoch"])

    @property
    def selected_model(self) -> dict[str, Any]:
        """The kept weights (state dict): the best validated epoch's, else the last epoch's."""
        return self.best["model"] if self.best else self.state["model"]


RAY_LOG_LEVEL = "ERROR"
"""Level of Ray's own loggers in every process of the job (driver, workers, helper actors)."""
TRAIN_LOG_LEVEL = "WARNING"
"""Level of Ray Train's controller and worker logs (their files; a failed worker is a warning)."""


def quiet_logging() -> dict[str, Any]:
    """``ray.init`` arguments that keep Ray's internal chatter out of a stage's output.

    Without a dashboard Ray's State API is unavailable, so Ray Train's detached
    ``PlacementGroupCleaner`` logs a warning every second of a run ("Failed to query Ray Train
    Controller actor state"); other actors log their start-up details. The job's logging
    config sets the ``ray`` loggers of every process of the job to ERROR, the driver's too;
    workers' output stays in Ray's session logs (``log_to_driver=False``), where the stages'
    progress bars do not depend on it.
    """
    import ray

    return {
        "log_to_driver": False,
        "configure_logging": True,
        "logging_level": getattr(logging, RAY_LOG_LEVEL),
        "logging_config": ray.LoggingConfig(log_level=RAY_LOG_LEVEL),
    }


def init_ray(train: TrainConfig) -> None:
    """Join ``$RAY_ADDRESS``'s cluster, else start a light local Ray (no-op when connected)."""
    import ray

    # Tune's experiment banner ignores RunConfig(verbose=0) in the new output engine; the
    # legacy one honours it (an explicit setting of the variable wins).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ["RAY_ADDRESS"], **quiet_logging())
        return
    ray.init(
        num_cpus=train.ray_num_cpus or os.cpu_count(),
        include_dashboard=False,
        **quiet_logging(),
    )


class _LossModule(nn.Module):
    """Routes ``model.loss`` through ``forward`` so that DDP all-reduces its gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any, weights: Any) -> dict[str, torch.Tensor]:
        # nn.Module's __getattr__ types every attribute as a tensor or a module.
        loss = cast(Callable[..., dict[str, torch.Tensor]], self.model.loss)
        return loss(batch, weights)


class _DistributedView:
    """What ``train_one_epoch`` drives: ``loss`` goes through the (DDP) wrapper's forward."""

    def __init__(self, wrapped: nn.Module):
        self.wrapped = wrapped

    def train(self, mode: bool = True) -> _DistributedView:
        self.wrapped.train(mode)
        return self

    def parameters(self) -> Iterator[nn.Parameter]:
        return self.wrapped.parameters()

    def loss(self, batch: Any, weights: Any) -> dict[str, torch.Tensor]:
        return self.wrapped(batch, weights)


def _batch_len(batch: Any) -> int:
    """Samples in a batch: the leading size of its first tensor (or list)."""
    values = batch.values() if isinstance(batch, dict) else batch
    for value in values:
        if isinstance(value, torch.Tensor):
            return int(value.shape[0])
        if isinstance(value, list):
            return len(value)
    raise ValueError("cannot count the samples of a batch without tensors or lists")


def spread_subset(dataset: Any, n: int | None) -> Any:
    """``n`` items spread evenly over ``dataset`` (all of it when ``n`` is None or larger).

    Chunk indices run place by place through the year, so the first items would all be winter
    chunks of one place: a capped evaluation must sample the whole split.
    """
    if n is None or n >= len(dataset):
        return dataset
    return Subset(dataset, torch.linspace(0, len(dataset) - 1, n).round().long().tolist())


class _Counted:
    """Iterates a loader, counting samples (for throughput)."""

    def __init__(self, loader: DataLoader):
        self.loader, self.samples = loader, 0

    def __iter__(self) -> Iterator[Any]:
        for batch in self.loader:
            self.samples += _batch_len(batch)
            yield batch

    def __len__(self) -> int:
        return len(self.loader)


def _agree(flag: bool) -> bool:
    """Rank 0's ``flag`` on every rank: a split decision would hang the report barrier."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def _improves(metric: str | None, metrics: dict[str, float], best: dict | None) -> bool:
    """Whether ``metrics`` beat ``best`` on ``metric`` (lower is better; NaN never does)."""
    if metric is None or not math.isfinite(value := metrics.get(metric, math.nan)):
        return False
    return best is None or value < best["value"]


def _save(state: dict, directory: str) -> None:
    torch.save(state, Path(directory) / CHECKPOINT_FILE)


def load_state(checkpoint: Any) -> dict:
    """The state dict saved in a Ray checkpoint by the worker loop."""
    with checkpoint.as_directory() as directory:
        return torch.load(Path(directory) / CHECKPOINT_FILE, weights_only=False)


def _train_loader(
    spec: RunSpec, train: Any, world: int, rank: int
) -> tuple[Any, SiteBatchSampler | None]:
    """The training loader: the task's train split, shuffled (sharded over the ranks by Ray).

    With further sites (``spec.sites``), their chunks too, each batch from one site.
    """
    import ray.train.torch

    cfg, task = spec.train, spec.task
    if not spec.sites or task.site_dataset is None:
        loader = DataLoader(
            train,
            batch_size=cfg.batch_size,
            shuffle=True,
            collate_fn=task.collate,
            generator=torch.Generator().manual_seed(cfg.seed),
        )
        return ray.train.torch.prepare_data_loader(loader), None
    parts = [train] + [
        task.site_dataset(path, chunk_m, spec.chunk_days, spec.model)
        for path, chunk_m in spec.sites
    ]
    batches = SiteBatchSampler(
        [len(p) for p in parts], cfg.batch_size, seed=cfg.seed, rank=rank, world=world
    )
    loader = DataLoader(ConcatDataset(parts), batch_sampler=batches, collate_fn=task.collate)
    return ray.train.torch.prepare_data_loader(loader, add_dist_sampler=False), batches


def _worker_loop(config: dict) -> dict:
    """One Ray Train worker: resume, train, evaluate (rank 0), report and checkpoint."""
    import ray.train
    import ray.train.torch

    spec: RunSpec = config["spec"]
    cfg, task = spec.train, spec.task
    context = ray.train.get_context()
    rank = context.get_world_rank()
    torch.set_num_threads(max(1, int(cfg.worker_cpus)))
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank

    datasets = task.make_datasets(spec.data_dir, spec.index_path, spec.model)
    weights = task.loss_weights(spec.loss_weights)
    model = task.build_model(spec.model)
    loader, site_batches = _train_loader(spec, datasets["train"], context.get_world_size(), rank)
    steps = min(len(loader), spec.max_batches) if spec.max_batches else len(loader)
    optimizer, scheduler = adamw_cosine(
        model.parameters(), cfg.lr, spec.n_epochs * steps, weight_decay=cfg.weight_decay
    )

    start, history, attempts, best = 0, [], [], None
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        state = load_state(checkpoint)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history, attempts = state["epoch"] + 1, state["history"], state["attempts"]
        best = state.get("best")
    attempts = [*attempts, start]

    # DDP after loading: it broadcasts rank 0's parameters. Some parameters may sit out a step
    # (e.g. a decoder branch dropped for a batch), hence find_unused_parameters.
    wrapped = ray.train.torch.prepare_model(
        _LossModule(model), parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    view = _DistributedView(wrapped)
    evaluation = None
    if rank == 0 and spec.eval_split in datasets and dataset_len(datasets[spec.eval_split]):
        n_eval = None if spec.max_eval_batches is None else spec.max_eval_batches * cfg.batch_size
        plain = DataLoader(
            spread_subset(datasets[spec.eval_split], n_eval),
            batch_size=cfg.batch_size,
            collate_fn=task.collate,
        )
        evaluation = ray.train.torch.prepare_data_loader(plain, add_dist_sampler=False)

    stopped_early = False
    for epoch in range(start, spec.n_epochs):
        if spec.should_stop is not None and _agree(rank == 0 and spec.should_stop()):
            stopped_early = True
            break
        if site_batches is not None:
            site_batches.set_epoch(epoch)
        elif context.get_world_size() > 1:
            loader.sampler.set_epoch(epoch)  # a new shuffle per epoch across the shards
        started = time.perf_counter()
        counted = _Counted(loader)
        terms = task.train_one_epoch(
            view, counted, optimizer, weights, max_batches=spec.max_batches, scheduler=scheduler
        )
        train_s = time.perf_counter() - started
        record: dict[str, float] = {"epoch": epoch, "epochs_done": epoch + 1}
        record["train_time_s"] = train_s
        record["train_samples"] = counted.samples
        record["train_loss"] = terms.get("total", float("nan"))
        record.update({f"train_{k}": v for k, v in terms.items() if k != "total"})
        last = epoch + 1 == spec.n_epochs
        if evaluation is not None and ((epoch + 1) % cfg.eval_every == 0 or last):
            metrics = task.evaluate(model, evaluation, weights)
            record.update({f"{spec.eval_split}_{k}": v for k, v in metrics.items()})
            if cfg.select_metric is not None and _improves(cfg.select_metric, metrics, best):
                best = {
                    "epoch": epoch,
                    "metric": f"{spec.eval_split}_{cfg.select_metric}",
                    "value": metrics[cfg.select_metric],
                    "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
                }
        record["epoch_time_s"] = time.perf_counter() - started
        history.append(record)

        if (epoch + 1) % cfg.checkpoint_every == 0 or last:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "history": history,
                "attempts": attempts,
                "best": best,
            }
            with tempfile.TemporaryDirectory() as directory:
                saved = None
                if rank == 0:
                    _save(state, directory)
                    saved = ray.train.Checkpoint.from_directory(directory)
                # Every rank reports (it is a barrier); rank 0's checkpoint is the run's.
                ray.train.report(record, checkpoint=saved, checkpoint_dir_name=f"epoch_{epoch:04d}")
        else:
            ray.train.report(record)
    return {"history": history, "attempts": attempts, "stopped_early": stopped_early}


def fit(
    spec: RunSpec,
    *,
    name: str,
    storage_path: Path | None = None,
    callbacks: list | None = None,
    progress: str | None = None,
) -> TrainOutcome:
    """Train ``spec`` on ``spec.train.num_workers`` Ray workers; returns the outcome.

    ``name`` is the run folder under ``storage_path`` (default ``spec.train.storage_path``).
    A run folder that already holds checkpoints is resumed by Ray, so names must be unique
    per run unless resuming is intended. ``progress``: the label of a progress bar on the
    driver (epoch, loss, last validation metrics), None for none.
    """
    from releo.train.progress import follow_run

    cfg = spec.train
    init_ray(cfg)
    shown = [cfg.select_metric] if cfg.select_metric else []
    bar = follow_run(progress, spec.n_epochs, shown, spec.eval_split) if progress else None
    with bar or nullcontext() as reporter:
        trainer = _trainer(
            spec, name, storage_path, [*(callbacks or []), *filter(None, [reporter])]
        )
        started = time.perf_counter()
        result = trainer.fit()
        seconds = time.perf_counter() - started
    value = result.return_value or {}
    state = load_state(result.checkpoint) if result.checkpoint is not None else {}
    return TrainOutcome(
        history=value.get("history", state.get("history", [])),
        attempts=value.get("attempts", state.get("attempts", [])),
        state=state,
        path=str(result.path),
        seconds=seconds,
        stopped_early=bool(value.get("stopped_early", False)),
        best=state.get("best"),
    )


def _trainer(spec: RunSpec, name: str, storage_path: Path | None, callbacks: list) -> Any:
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    cfg = spec.train
    resources = {"CPU": cfg.worker_cpus, **({"GPU": 1} if cfg.use_gpu else {})}
    # Ray Train V2 (Ray's default) runs here, but mypy sees the V1 TorchTrainer and RunConfig
    # that ray.train replaces at import time: V1 wants a loop returning None and has no
    # logging_config.
    return TorchTrainer(
        _worker_loop,  # type: ignore[arg-type]
        train_loop_config={"spec": spec},
        scaling_config=ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=name,
            storage_path=str(Path(storage_path or cfg.storage_path).resolve()),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            # The latest checkpoint is all a resume needs; keep one more in case it is partial.
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=callbacks,
            logging_config=LoggingConfig(log_level=TRAIN_LOG_LEVEL),  # type: ignore[call-arg]
        ),
    )
