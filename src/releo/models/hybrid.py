"""A per-pixel hybrid LAI inversion: one S2 spectrum and its geometry → LAI, learnt from PROSAIL.

The operational retrievals (the SNAP biophysical processor: Weiss & Baret, S2ToolBox ATBD; the
"hybrid" methods of Verrelst et al. 2015) fit a small network to simulations: variables drawn
from a training distribution, reflectance simulated, the network mapping one back to the other.
This one is trained the same way on releo's PROSAIL with the L2A noise model, and with the
synthetic term's smooth residual spectra added, so that it learns to look past broad effects
PROSAIL lacks. It needs no label of any site; the chunk model learns from its estimates on the
real chunks' clear pixel-dates (the ``hybrid`` loss term).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812 (the torch idiom)

from releo.models.config import ModelConfig
from releo.models.decoder import LOGIT_BOUND
from releo.models.distributions import VARIABLE_RANGES, BoundedNormal
from releo.models.forward import s2_reflectance, with_l2a_noise
from releo.models.synthetic import SYNTHETIC_PRIORS, random_geometry, residual_spectra
from releo.physics.srf import PLATFORMS

MIN_SCALE = 0.02  # logit-space spread floor: the inversion is never certain


class HybridInversion(nn.Module):
    """LAI distribution (logit-normal) from S2 bands (N, 10) and angles (N, 3, degrees)."""

    def __init__(self, width: int = 64):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(13, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
            nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 2),
        )  # fmt: skip

    def forward(self, rho: torch.Tensor, angles: torch.Tensor) -> BoundedNormal:
        """The LAI distribution (N,); reflectance is scaled so that canopies' NIR is ~1–2."""
        x = torch.cat([rho * 4.0, torch.cos(torch.deg2rad(angles))], dim=-1)
        raw = self.net(x)
        loc = LOGIT_BOUND * torch.tanh(raw[..., 0] / LOGIT_BOUND)
        return BoundedNormal(loc, F.softplus(raw[..., 1]) + MIN_SCALE, *VARIABLE_RANGES["lai"])


def simulated_spectra(
    n: int, gen: torch.Generator, prior: str, residual_scale: float, residual_degree: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` noisy PROSAIL spectra (n, 10), their angles (n, 3) and true LAI (n,).

    Variables from :data:`releo.models.synthetic.SYNTHETIC_PRIORS` [``prior``], geometry and
    platform as the synthetic chunks', plus one smooth residual spectrum each (as the synthetic
    chunks': spread ``residual_scale``, Legendre degree ``residual_degree``).
    """
    draws = SYNTHETIC_PRIORS[prior]((n,), gen)
    angles = random_geometry((n,), gen)
    platform = torch.randint(len(PLATFORMS), (n,), generator=gen)
    with torch.no_grad():
        rho = s2_reflectance(draws, angles, platform, fused=False)
    if residual_scale > 0:
        rho = rho + residual_spectra(n, 1, 1, 1, residual_scale, residual_degree, gen)
    return with_l2a_noise(rho, gen), angles, draws["lai"]


def fit_hybrid(cfg: ModelConfig, seed: int = 0) -> HybridInversion:
    """A :class:`HybridInversion` fitted by the logit-space NLL of the simulated LAI.

    ``cfg``: its ``hybrid_*`` options, and the synthetic term's residual spectra. Seeded: the
    same network everywhere. Fitted with autograd on, whatever the caller's mode (a loss
    computed without gradients).
    """
    with torch.inference_mode(False), torch.enable_grad():
        return _fit(cfg, seed)


def _fit(cfg: ModelConfig, seed: int, batch_size: int = 1024, lr: float = 3e-3) -> HybridInversion:
    if cfg.hybrid_prior is None:
        raise ValueError("model.hybrid_prior is null: no simulations to fit a teacher to")
    gen = torch.Generator().manual_seed(seed)
    rho, angles, lai = simulated_spectra(
        cfg.hybrid_samples, gen, cfg.hybrid_prior, cfg.synthetic_residual, cfg.s2_residual_degree
    )
    with torch.random.fork_rng(devices=[]):  # its own seed, the caller's random stream untouched
        torch.manual_seed(seed)
        net = HybridInversion()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.hybrid_steps)
    for _ in range(cfg.hybrid_steps):
        pick = torch.randint(cfg.hybrid_samples, (batch_size,), generator=gen)
        loss = net(rho[pick], angles[pick]).logit_nll(lai[pick], huber=1e9).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return net.eval().requires_grad_(False)
