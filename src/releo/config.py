"""``params.yaml``: every knob of the pipeline, validated once into typed sections."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from releo.data.simulate.config import SimulationConfig
from releo.discover.config import DiscoverConfig
from releo.models.config import LossWeights, ModelConfig
from releo.models.pixel import BaselineConfig
from releo.products.config import ProductsConfig
from releo.tracking.config import TrackingConfig
from releo.train.config import TrainConfig, TuneConfig

DEFAULT_PARAMS = Path("params.yaml")


class ChunkConfig(BaseModel):
    """The modelling unit of the seeds: ``size_m`` × ``size_m`` × ``days`` chunks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size_m: float = Field(1000.0, gt=0, description="chunk side, m (a multiple of the pixel)")
    days: int = Field(10, ge=1, description="chunk duration, days")
    block_chunks: int = Field(1, ge=1, description="spatial split blocks, in chunks per side")
    split: dict[str, float] = Field(
        default_factory=lambda: {"train": 0.5, "val": 0.25, "test": 0.25},
        description="share of spatial blocks per split",
    )
    seed: int = Field(0, ge=0, description="seed of the block-to-split assignment")

    @model_validator(mode="after")
    def _split_names(self) -> ChunkConfig:
        if set(self.split) != {"train", "val", "test"}:
            raise ValueError(f"split must name train, val and test; got {sorted(self.split)}")
        if any(v < 0 for v in self.split.values()) or sum(self.split.values()) <= 0:
            raise ValueError("split shares must be >= 0 with a positive sum")
        return self


class QualityConfig(BaseModel):
    """Great Expectations gates."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context_root: Path = Field(Path("gx"), description="GE file context (Data Docs inside)")


class Params(BaseModel):
    """The whole ``params.yaml``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data_dir: Path = Field(Path("data"), description="raw inputs tracked by data.dvc")
    site: SimulationConfig = Field(default_factory=SimulationConfig)
    chunks: ChunkConfig = Field(default_factory=ChunkConfig)
    quality: QualityConfig = Field(default_factory=QualityConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    loss_weights: LossWeights = Field(default_factory=LossWeights)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    baseline: BaselineConfig = Field(default_factory=BaselineConfig)
    products: ProductsConfig = Field(default_factory=ProductsConfig)
    discover: DiscoverConfig = Field(default_factory=DiscoverConfig)


class ParamsError(ValueError):
    """``params.yaml`` is missing, unreadable or has an invalid field."""


def load_params(path: str | Path = DEFAULT_PARAMS) -> Params:
    """Read and validate ``params.yaml``; errors name the file, the field and the value."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as err:
        raise ParamsError(f"{path}: file not found") from err
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return Params.model_validate(raw)
    except ValidationError as err:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})"
            for e in err.errors()
        )
        raise ParamsError(f"{path}: {problems}") from err


def described(model: BaseModel, prefix: str = "") -> list[tuple[str, object, str]]:
    """Every leaf setting of ``model``: (dotted key, effective value, field description).

    ``releo params`` shows them: what the pipeline will use and what each knob means.
    """
    rows: list[tuple[str, object, str]] = []
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        key = f"{prefix}{name}"
        if isinstance(value, BaseModel):
            rows.append((key, "", field.description or (type(value).__doc__ or "").split("\n")[0]))
            rows += described(value, f"{key}.")
        else:
            shown = str(value) if isinstance(value, Path) else value
            rows.append((key, shown, field.description or ""))
    return rows
