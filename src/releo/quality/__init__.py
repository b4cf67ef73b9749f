"""Data-quality gates: Great Expectations 1.x suites, one per data contract.

A cube is validated through tables GE can read (per-date/per-variable summaries, per-date
acquisition facts, a one-row metadata table and a random pixel sample); survey and pixel tables
are validated as they are. A gate returns a ``GateResult`` or raises ``QualityGateError``, and
refreshes the Data Docs under ``<context_root>/uncommitted/data_docs``. Great Expectations is
imported only when a gate runs.
"""

from releo.quality.errors import Failure, QualityGateError
from releo.quality.gates import (
    GateResult,
    check_field_survey,
    check_pixel_table,
    check_reference_product,
    check_s1_cube,
    check_s2_cube,
    default_context_root,
)

__all__ = [
    "Failure",
    "GateResult",
    "QualityGateError",
    "check_field_survey",
    "check_pixel_table",
    "check_reference_product",
    "check_s1_cube",
    "check_s2_cube",
    "default_context_root",
]
