"""Configuration of the physics-informed autoencoder and the weights of its loss terms."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


def slot_geometry(power: bool) -> int:
    """Numbers of a field slot before its features: centre x, centre y (and its power)."""
    return 3 if power else 2


class ModelConfig(BaseModel):
    """Architecture of :class:`~releo.models.PhysicsAutoencoder` (learning rate lives in training).

    Defaults fit a 1 km × 10 day chunk (100 × 100 px, ~2 S2 and ~2 S1 dates) on a laptop CPU:
    a 256-feature embedding (the seeds' size) of which 2 × 16 are the exclusive S2/S1 latents,
    49 field slots of 2 features drawn as a Voronoi diagram (196 of z's features: parcels, 43
    pieces per chunk on the default site), 28 chunk-wide features, 16
    per-pixel detail channels, and 1024 query pixels per chunk per step (compiled PROSAIL
    and the encoder share the step time).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    embedding_dim: int = Field(256, ge=8, description="features per chunk embedding")
    residual_dim: int = Field(
        16, ge=1, description="exclusive (residual) latent features per modality, inside z"
    )
    s2_residual_rank: int = Field(
        2, ge=1, le=10, description="learned spectra spanning the S2 exclusive residual"
    )
    s2_residual_degree: int = Field(
        2,
        ge=0,
        le=9,
        description="polynomial degree in log-wavelength of those spectra: smooth shapes",
    )
    pixel_width: int = Field(32, ge=4, description="per-pixel features of the encoder stem")
    attention_heads: int = Field(4, ge=1, description="heads of the per-pixel temporal attention")
    pool_queries: int = Field(
        2, ge=1, description="learned queries pooling each pixel's dated tokens (date slots)"
    )
    conv_width: int = Field(64, ge=4, description="channels of the strided encoder convolutions")
    latent_grid: int = Field(
        4, ge=1, description="side of the pooled grid of the encoder's chunk-wide branch"
    )
    detail_channels: int = Field(
        16,
        ge=0,
        description="per-pixel detail channels passed to the decoder (0: embedding only)",
    )
    detail_dropout: float = Field(
        0.1, ge=0.0, le=1.0, description="share of training chunks decoded without the detail"
    )
    field_slots: int = Field(
        49,
        ge=1,
        description="field slots in z (centre, features, and a power with slot_power: parcels "
        "drawn as soft Voronoi or power cells at any resolution); a square number",
    )
    slot_features: int = Field(2, ge=1, description="features carried by each field slot")
    slot_power: bool = Field(
        False,
        description="a power per slot (power diagram, 3 numbers of geometry per slot) instead of "
        "a Voronoi diagram of the slot centres (2 numbers)",
    )
    slot_iterations: int = Field(
        5, ge=1, description="soft k-means steps of the SLIC that starts the cell fit"
    )
    cell_fit_steps: int = Field(
        100, ge=0, description="Adam steps fitting each chunk's cells to its dated S2 inputs"
    )
    context_days: int = Field(
        10,
        ge=0,
        description="days before and after a chunk's window whose observations the encoder also "
        "reads (tokens dated by day of year); the embedding still describes the window and the "
        "losses fit the window's observations only",
    )
    augment: bool = Field(
        False,
        description="train on a random rotation/flip of each batch's chunks (the 8 symmetries "
        "of the square): parcels' layouts, not their spectra, change with them",
    )
    fourier_frequencies: int = Field(6, ge=1, description="day-of-year Fourier frequencies")
    hidden_width: int = Field(128, ge=8, description="width of the decoder MLPs")
    query_pixels: int = Field(1024, ge=1, description="pixels sampled per chunk per step")
    temporal_step_days: float = Field(
        4.0, gt=0, description="spacing of the second differences of the temporal regulariser"
    )
    synthetic_batch: int = Field(
        4, ge=1, description="synthetic chunks simulated per step for the synthetic term"
    )
    synthetic_size: int = Field(16, ge=4, description="side in pixels of a synthetic chunk")
    synthetic_residual: float = Field(
        0.02,
        ge=0.0,
        description="reflectance spread of the smooth exclusive-effect spectra added to the "
        "synthetic chunks (constant term; each higher Legendre degree half as much); 0: none",
    )
    synthetic_prior: Literal["model", "snap"] = Field(
        "snap",
        description="distribution of the synthetic chunks' variables: the model's prior, or the "
        "SNAP processor's training database (ATBD truncated normals, co-distributed with LAI)",
    )
    hybrid_prior: Literal["model", "snap"] | None = Field(
        "model",
        description="distribution of the simulations the per-pixel hybrid inversion (the "
        "hybrid term's teacher) learns from, as synthetic_prior; null: no teacher",
    )
    hybrid_samples: int = Field(
        200_000, ge=1000, description="simulated spectra the hybrid inversion is fitted to"
    )
    hybrid_steps: int = Field(
        4000, ge=1, description="optimiser steps fitting the hybrid inversion"
    )
    fused_prosail: bool = Field(
        True,
        description="torch.compile-d PROSAIL: ~20x faster, ~1-2 min compilation on first use",
    )

    @property
    def slot_code_dim(self) -> int:
        """Features of z holding the field slots (centre x, y, power and features per slot)."""
        return self.field_slots * (slot_geometry(self.slot_power) + self.slot_features)

    @model_validator(mode="after")
    def _fits(self) -> ModelConfig:
        if 2 * self.residual_dim >= self.embedding_dim:
            raise ValueError("2 * residual_dim must leave room for the common latent in z")
        if round(self.field_slots**0.5) ** 2 != self.field_slots:
            raise ValueError("field_slots must be a square number (slots start on a lattice)")
        common = self.embedding_dim - 2 * self.residual_dim
        if self.slot_code_dim >= common:
            raise ValueError(
                f"field_slots x (geometry + slot_features) = {self.slot_code_dim} must leave "
                f"room for chunk-wide features in the {common} common features of z"
            )
        if self.pixel_width % self.attention_heads:
            raise ValueError("pixel_width must be a multiple of attention_heads")
        return self


class LossWeights(BaseModel):
    """Weights of the physics-informed loss terms (what Optuna tunes); total = Σ weight · term."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    s2: float = Field(1.25, ge=0, description="Gaussian NLL of the clear S2 reflectances")
    s1: float = Field(2.7, ge=0, description="Gaussian NLL of the S1 backscatter (dB)")
    prior: float = Field(0.08, ge=0, description="KL of the physical variables to their priors")
    temporal: float = Field(1.2, ge=0, description="curvature of the decoded LAI in time")
    residual: float = Field(0.07, ge=0, description="magnitude of the exclusive residuals")
    disentangle: float = Field(
        0.2, ge=0, description="squared correlation of residuals with physical variables"
    )
    synthetic: float = Field(
        0.75,
        ge=0,
        description="NLL of the prior-drawn variables of chunks simulated through the physics",
    )
    distil: float = Field(
        0.3,
        ge=0,
        description="KL from the detail path's LAI distribution to the LAI decoded from the "
        "embedding alone",
    )
    hybrid: float = Field(
        1.0,
        ge=0,
        description="KL from the per-pixel hybrid inversion's LAI to the decoded LAI at the "
        "clear S2 pixel-dates",
    )
