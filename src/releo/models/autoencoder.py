"""The physics-informed autoencoder: encoder, latent decoder, physical decoders and losses."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

import torch
from torch import nn

from releo.models.config import LossWeights, ModelConfig, slot_geometry
from releo.models.decoder import LatentDecoder
from releo.models.distributions import VARIABLE_RANGES, VARIABLES, BoundedNormal, prior_logit
from releo.models.encoder import ChunkEncoder, fitted
from releo.models.forward import s1_backscatter_db, s2_noise_sigma, s2_reflectance
from releo.models.hybrid import HybridInversion, fit_hybrid
from releo.models.slots import pixel_xy
from releo.models.synthetic import synthetic_chunks

LOSS_TERMS: tuple[str, ...] = (
    *("s2", "s1", "prior", "temporal", "residual", "disentangle", "synthetic", "distil"),
    "hybrid",
)
S2_RESIDUAL_UNIT, S1_RESIDUAL_UNIT = 0.01, 1.0  # reflectance, dB: scales of the penalty


def sum_terms(terms: Iterable[torch.Tensor]) -> torch.Tensor:
    """``sum(terms)`` (from 0) of at least one tensor; a ValueError for none."""
    total = sum(terms)
    if not isinstance(total, torch.Tensor):
        raise ValueError("no loss terms to sum")
    return total


def gather_pixels(cube: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Values (B, Q, *lead) of ``cube`` (B, *lead, H, W) at flat pixel indices ``idx`` (B, Q)."""
    flat = cube.flatten(-2)
    index = idx.reshape(idx.shape[0], *([1] * (flat.dim() - 2)), idx.shape[1])
    out = flat.gather(-1, index.expand(*flat.shape[:-1], idx.shape[1]))
    return out.movedim(-1, 1)


def correlation_penalty(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean squared Pearson correlation between the columns of a (n, p) and b (n, q)."""
    if a.shape[0] < 3:
        return a.new_zeros(())
    a = (a - a.mean(0)) / (a.std(0) + 1e-6)
    b = (b - b.mean(0)) / (b.std(0) + 1e-6)
    return ((a.T @ b) / (a.shape[0] - 1)).pow(2).mean()


SPATIAL_INPUTS = ("s2", "s2_mask", "s1", "s1_incidence")


def transformed(batch: dict, quarter_turns: int, flip: bool) -> dict:
    """``batch`` with its chunks' images rotated by ``quarter_turns`` × 90° (then mirrored).

    One of the 8 symmetries of the square, the same for every chunk and date.
    """
    out = dict(batch)
    for key in SPATIAL_INPUTS:
        image = batch[key].rot90(quarter_turns, dims=(-2, -1))
        out[key] = (image.flip(-1) if flip else image).contiguous()
    return out


def reshape_dists(dists: dict[str, BoundedNormal], shape: torch.Size) -> dict[str, BoundedNormal]:
    """Every distribution of ``dists`` with its parameters reshaped to ``shape``."""
    return {
        k: BoundedNormal(d.loc.reshape(shape), d.scale.reshape(shape), d.low, d.high)
        for k, d in dists.items()
    }


def normalised(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Physical variables scaled to [0, 1] by their ranges, stacked on the last dim."""
    cols = []
    for name in VARIABLES:
        lo, hi = VARIABLE_RANGES[name]
        cols.append((values[name] - lo) / (hi - lo))
    return torch.stack(cols, dim=-1)


class PhysicsAutoencoder(nn.Module):
    """Chunk → embedding z → physical variables anywhere in (x, y, t) → S2 and S1 via physics.

    The likelihood noise has a fixed sensor part (the L2A noise model for S2) plus a learned
    per-band / per-polarisation model-error part, so early training is not dominated by a
    badly scaled likelihood and the final σ says how well physics + residuals fit.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = ChunkEncoder(cfg)
        self.decoder = LatentDecoder(cfg)
        self.s2_log_sigma = nn.Parameter(torch.full((10,), math.log(0.02)))
        self.s1_log_sigma = nn.Parameter(torch.full((2,), math.log(2.0)))
        # The hybrid term's teacher: fitted to simulations on the first loss that needs it,
        # never trained by the loss; saved with the model so a resumed run does not refit it.
        self.hybrid: HybridInversion | None = None
        if cfg.hybrid_prior is not None:
            self.hybrid = HybridInversion().requires_grad_(False)
            self.register_buffer("hybrid_fitted", torch.zeros((), dtype=torch.bool))

    # -- encoding / decoding -------------------------------------------------------------------
    def encode_with_detail(self, batch: dict) -> tuple[torch.Tensor, dict | None]:
        """Embedding (B, embedding_dim) and the per-pixel detail (or None)."""
        z, detail = self.encoder(batch)
        return z, (None if detail is None else {"map": detail})

    def encode_with_context(self, batch: dict) -> tuple[torch.Tensor, dict | None]:
        """Deprecated name of :meth:`encode_with_detail`."""
        warnings.warn(
            "encode_with_context is now encode_with_detail", DeprecationWarning, stacklevel=2
        )
        return self.encode_with_detail(batch)

    def encode(self, batch: dict) -> torch.Tensor:
        """One embedding per chunk, (B, embedding_dim)."""
        return self.encode_with_detail(batch)[0]

    def decode(
        self,
        z: torch.Tensor,
        x: torch.Tensor,
        y: torch.Tensor,
        t: torch.Tensor,
        detail: dict | None = None,
    ) -> dict[str, BoundedNormal]:
        """Distributions of the physical variables at chunk-relative x, y and day-of-year t.

        x, y ∈ [0, 1] (pixel centres at (i + 0.5) / size); x, y, t broadcast to (B, …).

        ``detail`` is ``encode_with_detail``'s: without it the decoder works from z alone.
        """
        x, y, t = torch.broadcast_tensors(x, y, t)
        shape = x.shape
        flat = [v.reshape(shape[0], -1).to(z.dtype) for v in (x, y, t)]
        space = self.decoder.space_features(z, flat[0], flat[1], detail)
        return reshape_dists(self.decoder.variables(space, flat[2]), shape)

    # -- training loss -------------------------------------------------------------------------
    def _sample_pixels(
        self, b: int, h: int, w: int, device: torch.device
    ) -> tuple[torch.Tensor, ...]:
        q = min(self.cfg.query_pixels, h * w)
        idx = torch.stack([torch.randperm(h * w, device=device)[:q] for _ in range(b)])
        return idx, *pixel_xy(idx, h, w)

    @staticmethod
    def _over_dates(space: torch.Tensor, n_t: int) -> torch.Tensor:
        """Space features (B, Q, F) repeated for each of ``n_t`` dates: (B, Q·n_t, F)."""
        b, q = space.shape[:2]
        return space[:, :, None].expand(-1, -1, n_t, -1).reshape(b, q * n_t, -1)

    def _observed_queries(self, batch, space, idx, modality: str, usable: torch.Tensor):
        """Query points at the sampled pixels × the modality's dates, kept where observed.

        Returns (sel, t, space_t, dists), or None when the batch observed nothing usable.
        """
        b, q = idx.shape
        n_t = batch[modality].shape[1]
        sel = gather_pixels(usable, idx).reshape(b, q * n_t)  # (B, Q·T) usable observations
        if n_t == 0 or not bool(sel.any()):
            return None
        t = batch[f"{modality}_doy"][:, None].expand(b, q, n_t).reshape(b, q * n_t)
        space_t = self._over_dates(space, n_t)
        return sel, t, space_t, self.decoder.variables(space_t, t)

    @staticmethod
    def _fit_terms(obs, pred, var, residual, unit, dists, sel) -> tuple[torch.Tensor, ...]:
        """Gaussian NLL of the observations, residual magnitude, residual/physics dependence."""
        nll = 0.5 * ((obs - pred) ** 2 / var + torch.log(var))
        magnitude = (residual / unit).pow(2).mean(-1).mean()
        medians = normalised({k: d.median[sel] for k, d in dists.items()}).detach()
        return nll.sum(-1).mean(), magnitude, correlation_penalty(residual, medians)

    def _teacher(self) -> HybridInversion:
        """The fitted hybrid inversion (fitted here, seeded, the first time)."""
        if self.hybrid is None:
            raise ValueError("the hybrid term needs model.hybrid_prior (it is null)")
        if not bool(self.get_buffer("hybrid_fitted")):
            self.hybrid.load_state_dict(fit_hybrid(self.cfg).state_dict())
            self.get_buffer("hybrid_fitted").fill_(True)
        return self.hybrid.eval()

    def _s2_term(
        self, batch, z, space, idx, hybrid: bool = False, alone: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, ...]:
        """S2 NLL, residual magnitude and dependence, and the hybrid term (0 unless ``hybrid``).

        The hybrid term: KL from the teacher's LAI at each clear observed spectrum to the
        decoded LAI there, so the decoder's spread holds the teacher's own ambiguity and its miss.
        With ``alone`` (the space features without the detail) it is summed over both decoding
        modes: the products decode from the embedding alone, and learning the teacher only
        through the detail path and the distillation leaves them short of it.
        """
        b, q = idx.shape
        n_t = batch["s2"].shape[1]
        queries = self._observed_queries(batch, space, idx, "s2", fitted(batch, "s2"))
        if queries is None:
            zero = z.sum() * 0
            return zero, zero, zero, zero
        sel, t, space_t, dists = queries
        values = {k: d.rsample()[sel] for k, d in dists.items()}
        angles = batch["s2_angles"][:, None].expand(b, q, n_t, 3).reshape(b, q * n_t, 3)
        platform = batch["s2_platform"][:, None].expand(b, q, n_t).reshape(b, q * n_t)
        physics = s2_reflectance(values, angles[sel], platform[sel], fused=self.cfg.fused_prosail)
        residual = self.decoder.residuals(z, space_t, t, "s2")[sel]
        pred = physics + residual
        obs = gather_pixels(batch["s2"], idx).reshape(b, q * n_t, 10)[sel]
        noise = s2_noise_sigma(pred.detach())
        var = noise**2 + torch.exp(2 * self.s2_log_sigma)
        teach = z.sum() * 0
        if hybrid:
            with torch.no_grad():
                teacher = self._teacher()(obs.float(), angles[sel].float())
            modes = [dists["lai"]]
            if alone is not None:
                modes.append(self.decoder.variables(self._over_dates(alone, n_t), t)["lai"])
            teach = sum_terms(
                BoundedNormal(lai.loc[sel], lai.scale[sel], lai.low, lai.high)
                .kl_from(teacher)
                .mean()
                for lai in modes
            )
        fit = self._fit_terms(obs, pred, var, residual, S2_RESIDUAL_UNIT, dists, sel)
        return (*fit, teach)

    def _s1_term(self, batch, z, space, idx) -> tuple[torch.Tensor, ...]:
        b, q = idx.shape
        n_t = batch["s1"].shape[1]
        queries = self._observed_queries(batch, space, idx, "s1", fitted(batch, "s1"))
        if queries is None:
            zero = z.sum() * 0
            return zero, zero, zero
        sel, t, space_t, dists = queries
        incidence = gather_pixels(batch["s1_incidence"], idx).reshape(b, q * n_t)[sel]
        physics = s1_backscatter_db(
            dists["lai"].rsample()[sel], dists["soil_moisture"].rsample()[sel], incidence
        )
        residual = self.decoder.residuals(z, space_t, t, "s1")[sel]
        pred = physics + residual
        obs = gather_pixels(batch["s1"], idx).reshape(b, q * n_t, 2)[sel]
        var = torch.exp(2 * self.s1_log_sigma)
        return self._fit_terms(obs, pred, var, residual, S1_RESIDUAL_UNIT, dists, sel)

    @staticmethod
    def _window_dates(batch: dict, like: torch.Tensor) -> torch.Tensor:
        """Random days of year (B, N) inside each chunk's window, shaped like ``like``."""
        first, last = batch["window_doy"][:, :1], batch["window_doy"][:, 1:]
        noise = torch.rand(like.shape, dtype=like.dtype, device=like.device)
        return first + noise * (last - first + 1)

    def _prior_and_temporal(self, batch, space) -> tuple[torch.Tensor, torch.Tensor]:
        # Random dates in the window (under clouds, between acquisitions): the prior and the
        # temporal regularity constrain the decoder where no observation does.
        q = space.shape[1]
        t = self._window_dates(batch, space[..., 0])
        step = self.cfg.temporal_step_days
        times = torch.cat([t - step, t, t + step], dim=1)
        dists = self.decoder.variables(torch.cat([space] * 3, dim=1), times)
        kl = sum_terms(d.kl_to_prior(prior_logit(k))[:, q : 2 * q].mean() for k, d in dists.items())
        lai = dists["lai"].median
        curvature = lai[:, 2 * q :] - 2 * lai[:, q : 2 * q] + lai[:, :q]
        return kl, curvature.pow(2).mean()

    def _encode_for_loss(self, batch: dict) -> tuple[torch.Tensor, dict | None]:
        z, detail = self.encode_with_detail(batch)
        if detail is not None and self.training and self.cfg.detail_dropout > 0:
            # Some chunks decode from the embedding alone, so that mode stays usable.
            keep = torch.rand(z.shape[0], device=z.device) >= self.cfg.detail_dropout
            detail["present"] = keep
        return z, detail

    def _synthetic_term(self) -> torch.Tensor:
        """NLL of the true variables of simulated chunks under the decoded distributions."""
        size = self.cfg.synthetic_size
        device = self.s2_log_sigma.device
        batch, truth = synthetic_chunks(
            self.cfg.synthetic_batch, size, n_s2=2, n_s1=2, device=device,
            residual_scale=self.cfg.synthetic_residual,
            residual_degree=self.cfg.s2_residual_degree, prior=self.cfg.synthetic_prior,
        )  # fmt: skip
        z, detail = self._encode_for_loss(batch)
        b = z.shape[0]
        idx = torch.arange(size * size, device=device).expand(b, -1)
        x, y = pixel_xy(idx, size, size, z.dtype)
        space = self.decoder.space_features(z, x, y, detail)
        dists = self.decoder.variables(space, self._window_dates(batch, x))
        return sum_terms(d.logit_nll(truth[k].reshape(b, -1)).mean() for k, d in dists.items())

    def _distil_term(self, batch, x, space, alone, detail) -> torch.Tensor:
        """KL from the LAI decoded with the per-pixel detail to the LAI decoded from z alone.

        The distribution decoded with the detail is the (detached) teacher. The KL is taken at
        random dates of the window, on the chunks that had the detail. The KL, not the NLL of the
        teacher's median, so that the embedding-only spread holds the teacher's own uncertainty as
        well as its miss of it.
        """
        if detail is None:
            return space.sum() * 0
        present = detail.get("present", space.new_ones(space.shape[0], dtype=torch.bool))
        t = self._window_dates(batch, x)
        with torch.no_grad():
            teacher = self.decoder.variables(space, t)["lai"]
        kl = self.decoder.variables(alone, t)["lai"].kl_from(teacher).mean(-1)
        weight = present.to(kl.dtype)
        return (kl * weight).sum() / weight.sum().clamp(min=1.0)

    def _chunk_terms(
        self, batch: dict, z: torch.Tensor, detail: dict | None, teach: bool
    ) -> tuple[dict[str, torch.Tensor], tuple]:
        """The terms of the chunks' own observations (all but ``synthetic`` and ``distil``).

        Also returns the query pixels and their space features (idx, x, y, space, alone).
        """
        s2: torch.Tensor = batch["s2"]
        b, h, w = s2.shape[0], *s2.shape[-2:]
        idx, x, y = self._sample_pixels(b, h, w, z.device)
        x, y = x.to(z.dtype), y.to(z.dtype)
        space = self.decoder.space_features(z, x, y, detail)
        alone = None if detail is None else self.decoder.space_features(z, x, y, None)
        teach = teach and self.hybrid is not None
        s2_nll, s2_res, s2_dep, hybrid = self._s2_term(batch, z, space, idx, teach, alone)
        s1_nll, s1_res, s1_dep = self._s1_term(batch, z, space, idx)
        kl, temporal = self._prior_and_temporal(batch, space)
        terms = {
            "s2": s2_nll,
            "s1": s1_nll,
            "prior": kl,
            "temporal": temporal,
            "residual": s2_res + s1_res,
            "disentangle": s2_dep + s1_dep,
            "hybrid": hybrid,
        }
        return terms, (idx, x, y, space, alone)

    def loss(self, batch: dict, weights: LossWeights) -> dict[str, torch.Tensor]:
        """Every loss term, plus ``total`` = Σ weight · term.

        The terms are computed on a random subset of ``query_pixels`` pixels per chunk.
        """
        if self.training and self.cfg.augment:
            turns, flip = int(torch.randint(4, ()).item()), bool(torch.randint(2, ()).item())
            batch = transformed(batch, turns, flip)
        z, detail = self._encode_for_loss(batch)
        terms, (_, x, _, space, alone) = self._chunk_terms(batch, z, detail, weights.hybrid > 0)
        terms["synthetic"] = self._synthetic_term() if weights.synthetic > 0 else z.sum() * 0
        terms["distil"] = (
            self._distil_term(batch, x, space, alone, detail) if weights.distil > 0 else z.sum() * 0
        )
        terms = {k: terms[k] for k in LOSS_TERMS}
        terms["total"] = sum(getattr(weights, k) * v for k, v in terms.items())
        return terms

    def refine(
        self, batch: dict, z: torch.Tensor, weights: LossWeights, steps: int, lr: float
    ) -> tuple[torch.Tensor, list[float]]:
        """The embeddings ``z`` of ``batch`` refined by ``steps`` Adam steps on its own loss.

        Semi-amortised inference (Kim et al. 2018, "Semi-Amortized Variational Autoencoders"):
        the encoder's z starts a gradient descent of the chunks' observation terms (physics
        fit, priors, temporal regularity and the hybrid teacher at the clear S2 spectra),
        decoded from z alone as the products are, the model fixed. The slot centres, the
        parcels' layout the encoder fitted, stay. Seeded, so the same chunks give the same z.

        Returns:
            The refined z and the total loss at each step.
        """
        if steps == 0:
            return z, []
        geometry = slot_geometry(self.cfg.slot_power)
        free = torch.ones_like(z[:1])
        per_slot = free[:, : self.cfg.slot_code_dim].view(1, self.cfg.field_slots, -1)
        per_slot[..., :geometry] = 0  # a view: the slot centres (and powers) stay fixed
        frozen = [p for p in self.parameters() if p.requires_grad]
        z = z.detach().clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        losses = []
        try:
            for p in frozen:
                p.requires_grad_(False)
            with torch.random.fork_rng(devices=[]), torch.enable_grad():
                torch.manual_seed(0)
                for _ in range(steps):
                    terms, _ = self._chunk_terms(batch, z, None, weights.hybrid > 0)
                    total = sum(getattr(weights, k) * v for k, v in terms.items())
                    optimizer.zero_grad(set_to_none=True)
                    total.backward()
                    z.grad.mul_(free)  # type: ignore[union-attr]
                    optimizer.step()
                    losses.append(float(total.detach()))
        finally:
            for p in frozen:
                p.requires_grad_(True)
        return z.detach(), losses


def build_model(cfg: ModelConfig) -> PhysicsAutoencoder:
    """A freshly initialised :class:`PhysicsAutoencoder` for ``cfg``."""
    return PhysicsAutoencoder(cfg)
