"""Bringing ``data/`` into being on a fresh clone: DVC pull, or the deterministic simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from releo.data.errors import DataError
from releo.data.simulate.config import SimulationConfig
from releo.data.site import SITE_FILES


def _dvc(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, check=False
    )


def site_present(data_dir: Path) -> bool:
    """Whether ``data_dir`` holds a site's S2 and S1 cubes."""
    return all((data_dir / SITE_FILES[p]).exists() for p in ("s2", "s1"))


def ensure_data(data_dir: Path, site: SimulationConfig, repo: Path = Path(".")) -> str:
    """Make ``data_dir`` hold the site that ``data.dvc`` names; returns what was done.

    ``present``: nothing to do. ``pulled``: fetched from the DVC remote. ``simulated``: the
    remote had nothing (a fresh machine), so the deterministic simulator rebuilt the default
    site; it is then added to the DVC cache (``data.dvc`` is unchanged when the bytes are the
    same) and pushed to the default remote so the next clone can pull it.
    """
    from releo.data.simulate import simulate_site

    dvc_file = repo / f"{data_dir}.dvc"
    if site_present(repo / data_dir):
        if not dvc_file.exists():
            _track(data_dir, dvc_file, repo)
        return "present"
    pulled = dvc_file.exists() and _dvc("pull", "--quiet", str(dvc_file), cwd=repo).returncode == 0
    if pulled and site_present(repo / data_dir):
        return "pulled"
    simulate_site(site, repo / data_dir)
    _track(data_dir, dvc_file, repo)
    return "simulated"


def _track(data_dir: Path, dvc_file: Path, repo: Path) -> None:
    """``dvc add`` the site (a no-op for data.dvc when the bytes are the ones it names), push."""
    if not (repo / ".dvc").is_dir():
        return
    before = dvc_file.read_text() if dvc_file.exists() else None
    added = _dvc("add", "--quiet", str(data_dir), cwd=repo)
    if added.returncode != 0:
        raise DataError(f"dvc add {data_dir} failed:\n{added.stdout}{added.stderr}")
    if before is not None and dvc_file.read_text() != before:
        print(
            f"warning: the simulated {data_dir}/ differs from the one {dvc_file} recorded; "
            f"{dvc_file} now names the new data (commit it to keep it)",
            file=sys.stderr,
        )
    _dvc("push", "--quiet", str(dvc_file), cwd=repo)  # best effort: a remote may be absent
