"""Running a unit of work (a DVC stage, a CLI command) with errors a user can act on."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from releo.config import ParamsError
from releo.data.errors import DataError


def _known_errors() -> tuple[type[BaseException], ...]:
    from releo.quality.errors import QualityGateError

    return (DataError, ParamsError, QualityGateError)


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Report known failures (bad data, bad params, a failed gate) in one clear message.

    They exit with status 1 and no traceback: the message names the file, field and value.
    Outputs are written atomically by the library, so earlier outputs stay intact.
    """
    started = time.perf_counter()
    try:
        yield
    except _known_errors() as err:
        print(f"releo {name}: FAILED\n{err}", file=sys.stderr)
        raise SystemExit(1) from err
    print(f"releo {name}: done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
