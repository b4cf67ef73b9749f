"""The error a failed quality gate raises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Failure:
    """One failed expectation: where, what, and the offending values."""

    table: str
    """Validated table, e.g. ``s2_cube.bands``; ``structure`` for the pre-check."""
    expectation: str
    """Expectation type, e.g. ``expect_column_values_to_be_between``."""
    column: str | None
    detail: str
    """Row condition, counts and sample offending values, human-readable."""
    arguments: str = ""
    """The expectation's other arguments, e.g. ``min_value=0, max_value=1``."""
    subject: str = "column"
    """What ``column`` names: a table column, or a cube ``variable``/``coordinate``."""

    def __str__(self) -> str:
        args = [f"{self.subject}={self.column!r}"] if self.column else []
        args += [self.arguments] if self.arguments else []
        return f"[{self.table}] {self.expectation}({', '.join(args)}): {self.detail}"


class QualityGateError(RuntimeError):
    """A data-quality gate failed; the message names the file, the expectations and the values."""

    def __init__(
        self,
        contract: str,
        source: str,
        failures: list[Failure],
        docs_path: Path | None = None,
        pages: list[Path] | None = None,
    ) -> None:
        self.contract = contract
        self.source = source
        self.failures = list(failures)
        self.docs_path = docs_path
        self.pages = list(pages or [])
        lines = [f"Quality gate '{contract}' failed for {source}: {len(failures)} expectation(s)"]
        lines += [f"  - {f}" for f in failures]
        if docs_path is not None:
            lines.append(f"Data Docs report: {docs_path}")
            lines += [f"  failed validation: {page}" for page in self.pages]
        else:
            lines.append("Structural pre-check: no Great Expectations run, no Data Docs written.")
        super().__init__("\n".join(lines))
