"""``params.yaml: discover``: the SINDy library, sparsity, ensembling, smoothing and sampling."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LibraryConfig(BaseModel):
    """Candidate terms: monomials of (state, drivers) up to ``degree``.

    As pysindy's ``PolynomialLibrary`` on the state concatenated with the control inputs.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    degree: int = Field(2, ge=1, le=4, description="highest total degree of a monomial")
    include_bias: bool = Field(True, description="include the constant term")
    interaction_only: bool = Field(False, description="only products of distinct inputs")


class DiscoverConfig(BaseModel):
    """Equation discovery on residual, LAI and truth trajectories (``releo.discover``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    drivers: dict[str, str] = Field(
        default_factory=lambda: {"P": "rainfall_mm", "Tplus": "temperature_excess_c"},
        description="control inputs: symbol -> daily column of meteo.csv",
    )
    library: LibraryConfig = Field(default_factory=LibraryConfig)
    threshold: float = Field(
        0.1,
        ge=0,
        description="STLSQ threshold on each term's share of the rate: |coefficient| x RMS of "
        "the term along the paths / RMS of the observed rate",
    )
    alpha: float = Field(
        0.0, ge=0, description="STLSQ ridge penalty (0: plain least squares, which prunes best)"
    )
    n_models: int = Field(40, ge=2, description="bagged models of the ensemble")
    min_inclusion: float = Field(
        0.8, gt=0, le=1, description="inclusion probability a term needs to enter the equation"
    )
    seed: int = Field(0, ge=0, description="seed of bagging and of the observation-like noise")
    smoothing_days: float = Field(
        0.0,
        ge=0,
        description="bandwidth (days) of a local-linear Gaussian smoother in real time applied "
        "to every trajectory before fitting; 0 = none",
    )
    substeps: int = Field(4, ge=1, le=64, description="RK4 steps per day (drivers are daily)")
    bridge_iterations: int = Field(
        12, ge=1, description="refits of the state path between observations (model bridges)"
    )
    refine_iterations: int = Field(
        12, ge=0, description="sparse Gauss-Newton steps on the simulation error (0: off)"
    )
    min_dates: int = Field(6, ge=3, description="observations a trajectory needs")
    min_trajectories: int = Field(2, ge=1, description="fitted trajectories a discovery needs")
    min_clear_fraction: float = Field(
        0.5, gt=0, le=1, description="clear share of a field's pixels for an S2 observation"
    )
    min_field_pixels: int = Field(4, ge=1, description="pixels a field needs to be a trajectory")
    min_susceptibility: float = Field(
        0.2, ge=0, description="fields less susceptible to an exclusive effect are left out"
    )
    block_m: float = Field(
        100.0, gt=0, description="square blocks standing in for fields on sites without parcels"
    )
    truth_noise: bool = Field(
        True, description="add observation-like noise to the truth trajectories"
    )
    decode_pixels: int = Field(
        400, ge=1, description="pixels decoded per chunk place (same pixels in every window)"
    )
    variance_pixels: int = Field(
        48, ge=1, description="pixels per chunk for the explained-variance check (PROSAIL runs)"
    )
    fit_splits: tuple[str, ...] = Field(("train",), description="chunk splits of fitted fields")
    plot_trajectories: int = Field(4, ge=1, description="held-out trajectories drawn per target")

    @model_validator(mode="after")
    def _known_splits(self) -> DiscoverConfig:
        unknown = set(self.fit_splits) - {"train", "val", "test"}
        if unknown or not self.fit_splits:
            raise ValueError(f"fit_splits must name train/val/test splits, got {self.fit_splits}")
        return self
