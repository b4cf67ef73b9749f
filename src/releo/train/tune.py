"""Tuning the physics-loss weights: Optuna (TPE) through Ray Tune's OptunaSearch, with ASHA.

Each trial is a Tune function that builds and runs a :class:`~ray.train.torch.TorchTrainer`
(Ray Train V2's way to tune a trainer); ``TuneReportCallback`` forwards each epoch's report to
Tune, where ASHA compares trials at its rungs.

Early stopping is cooperative. Ray 2.60 leaks the placement group of a Train run whose Tune
trial is killed (ray-project/ray#54305): the next trial then waits forever for CPUs. So when
ASHA decides to stop a trial, :class:`CooperativeASHA` posts the decision on a
:class:`StopBoard` actor instead; the trial's rank 0 reads it before its next epoch and ends
the run normally, releasing its workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from releo.train.config import TuneConfig
from releo.train.ray_train import RunSpec, fit, init_ray


@ray.remote(num_cpus=0)
class StopBoard:
    """Trials that the scheduler asked to stop."""

    def __init__(self) -> None:
        self._stopped: set[str] = set()

    def stop(self, trial_id: str) -> None:
        """Ask ``trial_id`` to stop."""
        self._stopped.add(trial_id)

    def should_stop(self, trial_id: str) -> bool:
        """Whether ``trial_id`` was asked to stop."""
        return trial_id in self._stopped


def _asked_to_stop(board: Any, trial_id: str) -> bool:
    return ray.get(board.should_stop.remote(trial_id))


class CooperativeASHA(ASHAScheduler):
    """ASHA whose STOP decisions are posted to a :class:`StopBoard`.

    The trial then ends itself, instead of Tune killing it.
    """

    def __init__(self, board: Any, **kwargs: Any):
        super().__init__(stop_last_trials=False, **kwargs)
        self.board = board
        self.stopped: set[str] = set()

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """ASHA's decision, a STOP posted to the board instead of enforced."""
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP:
            if trial.trial_id not in self.stopped:
                self.stopped.add(trial.trial_id)
                ray.get(self.board.stop.remote(trial.trial_id))
            return TrialScheduler.CONTINUE
        return decision


def _trial(config: dict, *, base: RunSpec, board: Any, storage: str) -> None:
    """One Tune trial: a TorchTrainer run of the base spec with the sampled weights."""
    from ray.tune.integration.ray_train import TuneReportCallback

    trial_id = tune.get_context().get_trial_id()
    spec = replace(
        base,
        loss_weights={**base.loss_weights, **config},
        should_stop=partial(_asked_to_stop, board, trial_id),
    )
    fit(
        spec, name=f"trial_{trial_id}", storage_path=Path(storage), callbacks=[TuneReportCallback()]
    )


@dataclass
class StudyOutcome:
    """The study's trials and what they say about the weights."""

    metric: str
    """Objective, as reported by the trials (``val_<metric>``)."""
    trials: list[dict[str, Any]]
    """Per trial: ``trial_id``, ``weights``, ``objective`` (last), ``epochs``, ``stopped_early``,
    ``default`` (the default-weights trial), ``warm_start`` (one of ``warm_start``) and
    ``history`` (objective per epoch)."""
    best: dict[str, Any]
    default: dict[str, Any] | None

    @property
    def best_weights(self) -> dict[str, float]:
        """Loss weights of the best trial."""
        return self.best["weights"]

    @property
    def improvement(self) -> float:
        """Objective with the default weights minus with the best (> 0: tuning helped)."""
        return self.default["objective"] - self.best["objective"] if self.default else math.nan


def _same_weights(config: dict, other: dict) -> bool:
    return all(math.isclose(float(v), float(other[k]), rel_tol=1e-9) for k, v in config.items())


def search_weights(
    base: RunSpec,
    cfg: TuneConfig,
    *,
    storage_path: Path,
    name: str,
    callbacks: list | None = None,
    board: Any = None,
    progress: bool = False,
) -> StudyOutcome:
    """Run the study: ``cfg.num_samples`` trials of ``cfg.epochs`` epochs.

    The default weights (``base.loss_weights``) run first, then ``cfg.warm_start``, then Optuna's
    choices. The best trial has the lowest final objective among those that ran the full budget (all
    trials when none did). ``progress``: a bar over the trials' epochs on the driver.
    """
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    from releo.train.progress import TuneProgress

    init_ray(base.train)
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per study and trial
    metric = f"{base.eval_split}_{cfg.metric}"
    # ray.remote(**options) is typed as returning the class itself, without ``.remote``.
    board = board or StopBoard.remote()  # type: ignore[attr-defined]
    scheduler = CooperativeASHA(
        board,
        time_attr="epochs_done",
        max_t=cfg.epochs,
        grace_period=cfg.grace_period,
        reduction_factor=cfg.reduction_factor,
    )
    defaults = {k: float(base.loss_weights[k]) for k in cfg.search_space}
    seeded = [{**defaults, **point} for point in cfg.warm_start]
    search = OptunaSearch(
        points_to_evaluate=[defaults, *seeded],
        sampler=optuna.samplers.TPESampler(seed=cfg.seed),
    )
    spec = replace(
        base,
        train=base.train.model_copy(update={"eval_every": 1}),  # ASHA reads every epoch
        epochs=cfg.epochs,
        max_batches_per_epoch=cfg.max_batches_per_epoch,
        eval_max_batches=cfg.eval_max_batches,
    )
    storage = Path(storage_path).resolve()
    callbacks = [*(callbacks or [])]
    if progress:
        callbacks.append(TuneProgress(cfg.num_samples, cfg.epochs, metric, base.eval_split))
    trainable = tune.with_parameters(_trial, base=spec, board=board, storage=str(storage))
    # The trial function only waits on its TorchTrainer: no CPU of its own (else 2 workers
    # on 2 cores could never start), but Tune needs a non-empty bundle.
    trainable = tune.with_resources(trainable, {"cpu": 0, "memory": 2**20})
    tuner = tune.Tuner(
        trainable,
        param_space={k: tune.loguniform(lo, hi) for k, (lo, hi) in cfg.search_space.items()},
        tune_config=tune.TuneConfig(
            search_alg=search,
            scheduler=scheduler,
            metric=metric,
            mode="min",
            num_samples=cfg.num_samples,
            max_concurrent_trials=cfg.max_concurrent,
            reuse_actors=False,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), callbacks=callbacks, verbose=0
        ),
    )
    grid = tuner.fit()

    trials = []
    for i in range(len(grid)):  # ResultGrid has __getitem__ and __len__, no __iter__
        result = grid[i]
        frame = result.metrics_dataframe
        history = [] if frame is None or metric not in frame else frame[metric].tolist()
        last = result.metrics or {}
        trial_id = last.get("trial_id", "")
        config = result.config or {}
        trials.append(
            {
                "trial_id": trial_id,
                "weights": {**base.loss_weights, **config},
                "objective": float(last.get(metric, math.nan)),
                "epochs": int(last.get("epochs_done", 0)),
                "stopped_early": int(last.get("epochs_done", 0)) < cfg.epochs,
                "default": bool(config) and _same_weights(config, defaults),
                "warm_start": bool(config) and any(_same_weights(config, p) for p in seeded),
                "history": history,
                "error": None if result.error is None else str(result.error),
            }
        )
    scored = [t for t in trials if math.isfinite(t["objective"])]
    if not scored:
        raise RuntimeError(f"no trial reported {metric}: {[t['error'] for t in trials]}")
    full = [t for t in scored if t["epochs"] >= cfg.epochs] or scored
    best = min(full, key=lambda t: t["objective"])
    default = next((t for t in trials if t["default"]), None)
    return StudyOutcome(metric=metric, trials=trials, best=best, default=default)
