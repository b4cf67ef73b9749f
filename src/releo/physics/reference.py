"""The PyPI ``prosail`` package (scalar, numba) as the reference releo's PROSAIL is checked against.

A development dependency: imported lazily, used by the tests and the physics benchmark.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


def reference_spectra(params: Mapping[str, object]) -> np.ndarray:
    """Spectra (n, 2101) from ``prosail.run_prosail`` (PROSPECT-D, ellipsoidal LIDF, SDR).

    ``params`` maps releo's parameter names to 1-D sequences of length n.
    """
    import prosail

    columns = {k: np.asarray(v, dtype=np.float64).reshape(-1) for k, v in params.items()}
    rows = []
    for i in range(len(columns["lai"])):
        q = {k: float(v[i]) for k, v in columns.items()}
        rows.append(
            prosail.run_prosail(
                q["N"], q["cab"], q["car"], q["cbrown"], q["cw"], q["cm"], q["lai"],
                q["lidfa"], q["hspot"], q["tts"], q["tto"], q["psi"], ant=q["cant"],
                prospect_version="D", typelidf=2, factor="SDR", rsoil=q["rsoil"],
                psoil=q["psoil"],
            )
        )  # fmt: skip
    return np.stack(rows)
