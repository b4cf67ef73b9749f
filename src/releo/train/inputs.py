"""The gate of the ``tune`` and ``train`` stages: the site and its chunk index.

The site is checked with the Great Expectations suites of each contract, and the chunk index they
learn from with its own checks.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from releo.config import Params
from releo.data.chunks import check_no_leak
from releo.data.errors import DataError
from releo.data.site import open_site, validate_site

INDEX_COLUMNS = ("chunk_id", "split", "y0", "x0", "size_px", "start", "end", "n_s2", "n_s1")


def check_index(index: pd.DataFrame, source: Path, site_shape: tuple[int, int]) -> None:
    """Check the chunk index against the site.

    Raises:
        DataError: unless the index has its columns, unique chunks, train and val chunks with
            observations, no place in two splits, and windows inside the site grid.
    """
    missing = [c for c in INDEX_COLUMNS if c not in index.columns]
    if missing:
        raise DataError(f"{source}: missing columns {missing}; rerun the chunk stage")
    duplicated = index["chunk_id"][index["chunk_id"].duplicated()].tolist()
    if duplicated:
        raise DataError(f"{source}: duplicated chunk_id values {duplicated[:5]}")
    for split in ("train", "val"):
        part = index[index["split"] == split]
        if not ((part["n_s2"] + part["n_s1"]) > 0).any():
            raise DataError(f"{source}: no {split} chunk with an S2 or S1 observation")
    try:
        check_no_leak(index)
    except ValueError as err:
        raise DataError(f"{source}: {err}") from err
    rows, cols = site_shape
    outside = index[
        (index["y0"] + index["size_px"] > rows) | (index["x0"] + index["size_px"] > cols)
    ]
    if not outside.empty:
        raise DataError(
            f"{source}: chunks outside the {rows}x{cols} px site grid, e.g. "
            f"{outside['chunk_id'].head(3).tolist()}; the index is stale: rerun the chunk stage"
        )


def gate_training_inputs(params: Params, index_path: Path) -> dict:
    """Gate the site and the chunk index; returns the gates' seconds per part.

    Raises:
        QualityGateError: the site fails its Great Expectations suites.
        DataError: the chunk index fails its checks.
    """
    site = open_site(params.data_dir)
    gates = validate_site(site, params.quality.context_root)
    for extra in params.train.sites:  # further training sites pass the same gates
        validate_site(open_site(extra.path), params.quality.context_root)
    if not index_path.exists():
        raise DataError(f"{index_path}: not found; run the chunk stage first")
    index = pd.read_parquet(index_path)
    check_index(index, index_path, (site.s2.sizes["y"], site.s2.sizes["x"]))
    # GE gates report their seconds; plain checks (e.g. the meteo contract) a dict
    return {p: round(r.seconds, 2) for p, r in gates.items() if hasattr(r, "seconds")}
