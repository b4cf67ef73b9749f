"""Physics-informed multi-modal autoencoder: chunk embeddings decoded through PROSAIL and WCM.

- Encoder (:mod:`.encoder`): per date, S2 (10 bands zeroed where cloudy + clear mask + sun/view
  geometry) and S1 (VV, VH, incidence) pass through spatial convolution stems shared over
  time; each pixel's dated tokens (day-of-year Fourier encoding, modality embedding, plus an
  always-visible "empty" token so overcast or S1-less pixels still work) are pooled by masked
  multi-head attention; the fused map is pooled into ``field_slots`` slots over Voronoi cells
  fitted to the chunk's dated S2 inputs (centre, features: :mod:`.slots`) and strided
  convolutions add chunk-wide features: together one embedding z.
- Latent decoder (:mod:`.decoder`): the slots, drawn as a soft Voronoi diagram at any (x, y)
  (edges sharp at any resolution), and the chunk-wide features, joined with day-of-year
  Fourier features of any t → a :class:`BoundedNormal` (logit-normal in the variable's range)
  per physical variable. Optional per-pixel ``detail``: features of the encoder
  (``detail_channels``) for 10 m detail; without it, decoding uses z alone.
- Physical decoders (:mod:`.forward`): PROSAIL at each acquisition's geometry → S2 bands; the
  Water Cloud Model at each pixel's incidence → S1 dB.
- Exclusive residuals: the last 2 × ``residual_dim`` features of z feed two small networks
  whose bounded outputs are added to S2 reflectance and S1 dB.
- Losses (:meth:`PhysicsAutoencoder.loss`): Gaussian NLL of clear S2 (L2A noise model + learned
  model error) and S1, KL to priors, LAI curvature in time, residual magnitude, squared
  correlation of residuals with the physical variables, the synthetic term on simulated
  chunks, and the distillation of the detail path's LAI into the embedding-only decoding.
"""

from releo.models.autoencoder import LOSS_TERMS, PhysicsAutoencoder, build_model
from releo.models.config import LossWeights, ModelConfig
from releo.models.distributions import VARIABLE_RANGES, VARIABLES, BoundedNormal

__all__ = [
    "LOSS_TERMS",
    "VARIABLES",
    "VARIABLE_RANGES",
    "BoundedNormal",
    "LossWeights",
    "ModelConfig",
    "PhysicsAutoencoder",
    "build_model",
]
