"""``params.yaml: products``: the embed, decode, evaluate and register stages."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Split = Literal["train", "val", "test"]
"""A chunk split of the site's index."""

Workers = Annotated[
    int | None,
    Field(
        ge=1,
        description="Ray tasks run at once (None: every core of the machine, or of"
        " the $RAY_ADDRESS cluster)",
    ),
]
"""How many Ray tasks a stage runs at once."""


def _calibration_splits() -> list[Split]:
    return ["val"]


def _evaluation_splits() -> list[Split]:
    return ["val", "test"]


RefineTerm = Literal["s2", "s1", "prior", "temporal", "residual", "disentangle", "hybrid"]
"""The loss terms of a chunk's own observations (what refining its embedding can descend)."""


class EmbedConfig(BaseModel):
    """Embeddings of every chunk of the site (stage ``embed``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dtype: Literal["float16", "float32"] = Field("float16", description="stored precision")
    batch_size: int = Field(8, ge=1, description="chunks encoded at once")
    refine_steps: int = Field(
        30,
        ge=0,
        description="Adam steps refining each encoder embedding on its chunk's own loss, "
        "decoded from the embedding alone (0: the encoder's embedding)",
    )
    refine_lr: float = Field(0.05, gt=0, description="learning rate of those steps")
    refine_terms: list[RefineTerm] = Field(
        ["hybrid", "prior", "temporal"],
        min_length=1,
        description="the chunk's loss terms those steps descend, at the weights it was trained "
        "with (the physics fits s2, s1 too, with residual and disentangle: better on the "
        "simulator, worse on real data, where the physics misses)",
    )
    workers: Workers = None


class DecodeConfig(BaseModel):
    """LAI decoded from the embeddings alone on a grid and dates (stage ``decode``).

    Dates: ``dates`` when given, else every ``step_days`` from ``start`` to ``end`` (default:
    the first and last day of the data). Grid: ``resolution_m`` pixels over ``bounds``
    (xmin, ymin, xmax, ymax in the site CRS; default: the area the chunks cover).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    resolution_m: float = Field(10.0, gt=0, description="pixel size of the decoded grid, m")
    step_days: int = Field(7, ge=1, description="days between decoded dates (7: weekly)")
    start: date | None = Field(None, description="first decoded day (None: start of the data)")
    end: date | None = Field(None, description="last decoded day (None: end of the data)")
    dates: list[date] | None = Field(None, description="explicit dates (overrides the step)")
    bounds: tuple[float, float, float, float] | None = Field(
        None, description="xmin, ymin, xmax, ymax in the site CRS (None: the chunks' area)"
    )
    interval: float = Field(0.9, gt=0, lt=1, description="central interval of lai_low/high")
    blend_days: float | None = Field(
        None,
        ge=0,
        description="days about a window boundary where the two windows' LAI are blended"
        " (None: the window length, linear between window centres; 0: none, a staircase)",
    )
    batch_queries: int = Field(65536, ge=1, description="pixel-dates decoded per model call")
    compile: bool = Field(
        True,
        description="fuse the decoder's elementwise work with torch.compile, for requests"
        " of 16 M pixel-dates or more (~10-20 s once per worker, then ~1.5-2x faster)",
    )
    workers: Workers = None
    geotiff: bool = Field(True, description="one GeoTIFF (lai, lai_std) per date")
    quicklooks: bool = Field(True, description="one PNG per date")
    overview_panels: int = Field(12, ge=1, description="dates shown in overview.png")
    lai_max_display: float = Field(7.0, gt=0, description="top of the quick-look colour scale")

    @model_validator(mode="after")
    def _period(self) -> DecodeConfig:
        if self.start and self.end and self.start > self.end:
            raise ValueError(f"start {self.start} is after end {self.end}")
        if self.dates is not None and not self.dates:
            raise ValueError("dates is empty: give at least one date or null")
        if self.bounds is not None:
            xmin, ymin, xmax, ymax = self.bounds
            if not (xmin < xmax and ymin < ymax):
                raise ValueError(f"bounds must be xmin, ymin, xmax, ymax; got {self.bounds}")
        return self


class CalibrateConfig(BaseModel):
    """Calibration of the decoded LAI distributions (stage ``calibrate``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    splits: list[Split] = Field(
        default_factory=_calibration_splits,
        description="places whose field surveys fit the spread: not the training places, where"
        " the model's errors are smaller (score the calibration on the others, e.g. test)",
    )
    detection_limit: float = Field(
        0.08, ge=0, lt=1, description="LAI below it is reported as 0 (bare soil)"
    )
    min_surveys: int = Field(
        20, ge=1, description="fewer surveys on those places: the spread is left as decoded"
    )


class EvaluateConfig(BaseModel):
    """Scores of the decoded LAI against truth, SNAP and field surveys (stage ``evaluate``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    splits: list[Split] = Field(
        default_factory=_evaluation_splits, description="held-out splits scored"
    )
    field_max_days: int = Field(
        5, ge=0, description="SNAP/baseline: nearest valid date within ± this many days"
    )
    baseline_model: Path | None = Field(
        None, description="per-pixel inversion model file (None or missing: trained here)"
    )
    scatter_points: int = Field(2000, ge=10, description="pixel-dates in the scatter table")
    sample_fields: int = Field(4, ge=0, description="fields in the time-series plots")
    seam_pixels: int = Field(
        2000, ge=0, description="held-out pixels whose daily series score the window seams"
    )
    max_pixels: int | None = Field(
        100_000, ge=1, description="held-out pixels scored at every date; above: a sample"
    )
    seed: int = Field(0, ge=0, description="seed of the samples (scored pixels, scatter, seams)")
    workers: Workers = None


class RegisterConfig(BaseModel):
    """MLflow registry: the decoder as a pyfunc model, champion if it beats the current one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_name: str = Field("releo-lai", min_length=1, description="registered model name")
    metric: str = Field("lai_rmse_field", description="metrics/evaluate.json key to compare")
    fallback_metrics: list[str] = Field(
        default_factory=lambda: ["lai_rmse_snap"],
        description="compared instead, the first with a value, where the site lacks metric's"
        " reference (lai_rmse_field: no field surveys)",
    )
    lower_is_better: bool = Field(True, description="direction of the comparison")
    champion_alias: str = Field("champion", min_length=1)
    challenger_alias: str = Field("challenger", min_length=1)


class ProductsConfig(BaseModel):
    """The product stages after ``train``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    embed: EmbedConfig = Field(default_factory=EmbedConfig)
    calibrate: CalibrateConfig = Field(default_factory=CalibrateConfig)
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    registry: RegisterConfig = Field(default_factory=RegisterConfig)
