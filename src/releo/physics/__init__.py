"""Physical models: PROSAIL (PROSPECT-D + 4SAIL), S2 SRFs, Water Cloud Model, SNAP LAI."""

from releo.physics.prosail import (
    PARAMETER_RANGES,
    PARAMETERS,
    check_parameters,
    prosail_s2_bands,
    prosail_spectrum,
    random_parameters,
)
from releo.physics.snap import SnapLAI, snap_lai
from releo.physics.spectra import WAVELENGTHS_NM
from releo.physics.srf import s2_bands, spectral_response
from releo.physics.wcm import (
    WCM_DEFAULTS,
    WCMParameters,
    db_to_linear,
    linear_to_db,
    water_cloud_model,
    wcm_backscatter_db,
)

__all__ = [
    "PARAMETERS",
    "PARAMETER_RANGES",
    "WAVELENGTHS_NM",
    "WCM_DEFAULTS",
    "SnapLAI",
    "WCMParameters",
    "check_parameters",
    "db_to_linear",
    "linear_to_db",
    "prosail_s2_bands",
    "prosail_spectrum",
    "random_parameters",
    "s2_bands",
    "snap_lai",
    "spectral_response",
    "water_cloud_model",
    "wcm_backscatter_db",
]
