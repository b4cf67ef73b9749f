"""Deprecated name of :mod:`releo.products.product_gates` (``gates`` is :mod:`releo.quality.gates`).

Kept so that code importing ``releo.products.gates`` still runs; import from
``releo.products.product_gates`` instead.
"""

import warnings

from releo.products.product_gates import (
    check_embeddings,
    check_lai_product,
    check_site_surveys,
    embedding_summary,
    product_summary,
)

warnings.warn(
    "releo.products.gates is deprecated: import from releo.products.product_gates",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = [
    "check_embeddings",
    "check_lai_product",
    "check_site_surveys",
    "embedding_summary",
    "product_summary",
]
