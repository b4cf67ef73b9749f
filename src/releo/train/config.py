"""``params.yaml`` sections of training, tuning and tracking.

Distributed training (``train``), tuning (``tune``) and MLflow tracking (``tracking``).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from releo.models import LossWeights
from releo.tracking.config import TrackingConfig  # noqa: F401 (its former home: re-exported)
from releo.train.loop import WEIGHT_DECAY
from releo.train.metrics import TRUTH_FREE_METRICS, VALIDATION_METRICS

# Bounds of the log-uniform search of each physics-loss weight: two decades around the defaults.
DEFAULT_SEARCH_SPACE: dict[str, tuple[float, float]] = {
    "s2": (0.1, 10.0),
    "s1": (0.1, 10.0),
    "prior": (0.005, 0.5),
    "temporal": (0.1, 10.0),
    "residual": (0.01, 1.0),
    "disentangle": (0.01, 1.0),
}

# The objective must not depend on the weights being tuned: the weighted validation loss does
# (shrinking every weight shrinks it), so it cannot rank weight sets.
WEIGHT_DEPENDENT_METRICS = frozenset({"loss", *(f"loss_{k}" for k in LossWeights.model_fields)})
RANKING_METRICS = tuple(m for m in VALIDATION_METRICS if not m.startswith("lai_bias"))


def renamed_metric(name: str) -> str:
    """``name`` under the current metric names (``lai_rmse_vs_truth`` is ``lai_rmse_truth``).

    The old names still work with a :class:`DeprecationWarning`.
    """
    new = re.sub(r"_vs_(truth|snap)", r"_\1", name).replace("_at_snap_pixels", "_at_snap")
    if new != name:
        warnings.warn(
            f"metric {name!r} is now named {new!r}; the old name will stop working",
            DeprecationWarning,
            stacklevel=2,
        )
    return new


def check_validation_metric(cls, value: str | None) -> str | None:
    """A validation metric that ranks runs: lower is better and independent of the weights."""
    if value is None:
        return value
    value = renamed_metric(value)
    if value in WEIGHT_DEPENDENT_METRICS:
        raise ValueError(f"{value!r} depends on the loss weights; pick a validation metric")
    if value not in RANKING_METRICS:
        raise ValueError(f"{value!r} is not a validation error metric: one of {RANKING_METRICS}")
    return value


def check_truth_free_metric(cls, value: str) -> str:
    """A ranking validation metric that a site without the simulator's truth reports."""
    value = renamed_metric(value)
    check_validation_metric(cls, value)
    if value not in TRUTH_FREE_METRICS:
        raise ValueError(f"{value!r} needs the simulator's truth: one of {TRUTH_FREE_METRICS}")
    return value


def site_metric(metric: str | None, without_truth: str, has_truth: bool | None) -> str | None:
    """The metric a run ranks by.

    ``without_truth`` on a site known to lack the simulator's truth (``has_truth`` False) when
    ``metric`` needs it (it would be NaN there and rank nothing), else ``metric``.
    """
    if has_truth is False and metric is not None and metric not in TRUTH_FREE_METRICS:
        return without_truth
    return metric


class TrainingSite(BaseModel):
    """A further site learned from beside the pipeline's own.

    Self-supervised (the physics, no labels): all its chunks are training chunks.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: Path = Field(description="site directory (`releo site build --out`)")
    chunk_m: float = Field(gt=0, description="chunk side on that site, m (a multiple of its pixel)")


class TrainConfig(BaseModel):
    """Ray Train (TorchTrainer, DDP) run: workers, budget, optimiser, checkpoints, failures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_workers: int = Field(1, ge=1, description="Ray Train workers (DDP processes)")
    cpus_per_worker: float | None = Field(
        None,
        gt=0,
        description="CPUs reserved (and torch threads) per worker; None: this machine's cores"
        " shared among the workers",
    )
    use_gpu: bool = Field(False, description="one GPU per worker (NCCL) instead of CPU (gloo)")
    epochs: int = Field(3, ge=1, description="passes over the train split")
    sites: list[TrainingSite] = Field(
        default_factory=list,
        description="further sites trained on with the pipeline's (e.g. real ones without"
        " labels); a batch holds chunks of one site",
    )
    batch_size: int = Field(4, ge=1, description="chunks per step and per worker")
    lr: float = Field(1e-3, gt=0, description="AdamW learning rate (cosine-decayed)")
    weight_decay: float = Field(WEIGHT_DECAY, ge=0, description="AdamW weight decay")
    seed: int = Field(0, ge=0, description="seed of initialisation, shuffling and query pixels")
    max_batches_per_epoch: int | None = Field(
        None, ge=1, description="cap on steps per epoch (None: the whole train split)"
    )
    eval_max_batches: int | None = Field(
        None,
        ge=1,
        description="validation batches per evaluation, spread over the split (None: all)",
    )
    eval_every: int = Field(
        1, ge=1, description="epochs between validations (the last epoch is always validated)"
    )
    checkpoint_every: int = Field(1, ge=1, description="epochs between checkpoints")
    select_metric: str | None = Field(
        "goal_ratio",
        description="validation metric whose lowest value picks the epoch the run keeps"
        " (None, or a run that never reports it: the last epoch)",
    )
    select_metric_without_truth: str = Field(
        "truth_free_ratio",
        description="what replaces select_metric on a site without the simulator's truth when"
        " select_metric needs it",
    )
    max_failures: int = Field(
        2, ge=-1, description="worker-group failures recovered from the last checkpoint (-1: inf)"
    )
    storage_path: Path = Field(
        Path("ray_results"), description="Ray Train run folders (checkpoints); shared on clusters"
    )
    ray_num_cpus: int | None = Field(
        None, ge=1, description="CPUs of a local Ray instance (None: all); unused with RAY_ADDRESS"
    )

    _ranking_metric = field_validator("select_metric")(check_validation_metric)
    _truth_free = field_validator("select_metric_without_truth")(check_truth_free_metric)

    @property
    def worker_cpus(self) -> float:
        """CPUs reserved per worker: ``cpus_per_worker``, else the cores here per worker."""
        if self.cpus_per_worker is not None:
            return self.cpus_per_worker
        return float(max(1, (os.cpu_count() or 1) // self.num_workers))


class TuneConfig(BaseModel):
    """Optuna (TPE via Ray Tune's OptunaSearch) over the physics-loss weights, with ASHA.

    The objective is a validation metric returned by ``releo.train.loop.evaluate`` that does
    not depend on the weights themselves; by default ``goal_ratio``, the worst of LAI RMSE
    against the simulator's truth over the SNAP product's, S2 RMSE over twice the L2A noise and
    the embedding-only LAI RMSE over SNAP's, both at SNAP's pixel-dates
    (:func:`releo.train.metrics.goal_ratio`), so
    weights that buy LAI accuracy by giving up the fit to the observations lose.
    On a site without the simulator's truth a metric that needs it is replaced by
    ``metric_without_truth`` (default ``truth_free_ratio``: S2 and S1 fit to their noise, LAI
    against SNAP; :func:`releo.train.metrics.truth_free_ratio`). The
    default weights (``loss_weights``) are always the first trial, so the study reports the
    objective with the default and with the best weights under the same budget.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_samples: int = Field(4, ge=1, description="trials, the default-weights trial included")
    max_concurrent: int = Field(1, ge=1, description="trials running at once")
    epochs: int = Field(2, ge=1, description="epochs of a trial that is not stopped early")
    max_batches_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch")
    eval_max_batches: int | None = Field(
        None,
        ge=1,
        description="validation batches per evaluation, spread over the split (same each trial)",
    )
    grace_period: int = Field(1, ge=1, description="ASHA: epochs before a trial can be stopped")
    reduction_factor: int = Field(2, ge=2, description="ASHA: 1/reduction_factor survive a rung")
    metric: str = Field("goal_ratio", description="validation metric to minimise")
    metric_without_truth: str = Field(
        "truth_free_ratio",
        description="what replaces metric on a site without the simulator's truth when metric"
        " needs it",
    )
    seed: int = Field(0, ge=0, description="seed of the TPE sampler")
    warm_start: list[dict[str, float]] = Field(
        default_factory=list,
        description="weight sets tried right after the defaults (e.g. an earlier study's best);"
        " unlisted weights keep their defaults",
    )
    search_space: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_SEARCH_SPACE),
        description="log-uniform (low, high) bounds per LossWeights field; others stay fixed",
    )

    _weight_free = field_validator("metric")(check_validation_metric)
    _truth_free = field_validator("metric_without_truth")(check_truth_free_metric)

    @model_validator(mode="after")
    def _bounds(self) -> TuneConfig:
        unknown = set(self.search_space) - set(LossWeights.model_fields)
        if unknown:
            raise ValueError(f"search_space: not LossWeights fields: {sorted(unknown)}")
        for name, (low, high) in self.search_space.items():
            if not 0 < low < high:
                raise ValueError(f"search_space.{name}: need 0 < low < high, got {low}, {high}")
        for i, point in enumerate(self.warm_start):
            for name, value in point.items():
                if name not in self.search_space:
                    raise ValueError(f"warm_start[{i}].{name}: not in search_space")
                low, high = self.search_space[name]
                if not low <= value <= high:
                    raise ValueError(
                        f"warm_start[{i}].{name}: {value} outside search_space [{low}, {high}]"
                    )
        if self.grace_period > self.epochs:
            raise ValueError("grace_period must not exceed epochs")
        return self
