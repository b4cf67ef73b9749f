"""Shared helpers of the end-to-end tests: a fresh copy of the project on a tiny site."""

from __future__ import annotations

import contextlib
import io
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TINY_SITE = {
    "width_m": 300.0,
    "height_m": 300.0,
    "start_date": "2025-04-01",
    "end_date": "2025-06-29",
    "survey_points": 10,
}
REAL_SERIES = Path(__file__).parent / "data" / "real_timeseries"
"""Real S2 + S1 series of two Belgian farmland sites (WorldCereal, MIT; README inside)."""
# What the stages write, and the MLflow/Ray homes: never copied from the working tree.
GENERATED = (
    "data/",
    "sites/",
    "chunks/",
    "metrics/",
    "tune/",
    "models/",
    "mlruns/",
    "ray_results/",
)


@pytest.fixture(autouse=True)
def _no_leaked_tracking_uri():
    """``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI``: without this, a test's
    store would capture the runs of every later test's subprocesses (``dvc repro``, …)."""
    before = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


def run(
    args: list[str], cwd: Path, check: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run a command with this interpreter's ``bin/`` first on PATH (``dvc`` stages call
    ``python``); raise with its output when ``check`` and it fails."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    full_env = {**os.environ, "PATH": path, **(env or {})}
    done = subprocess.run(args, cwd=cwd, env=full_env, capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def stage_outputs(root: Path = REPO) -> tuple[str, ...]:
    """What the stages of ``dvc.yaml`` write (outs, metrics, plots), as path prefixes."""
    stages = yaml.safe_load((root / "dvc.yaml").read_text())["stages"]
    paths = []
    for stage in stages.values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                paths.extend([entry] if isinstance(entry, str) else list(entry))
    return tuple(f"{p.rstrip('/')}/" if (root / p).is_dir() else p for p in paths)


def make_tiny_project(
    root: Path,
    site: dict | None = None,
    data: Path | None = None,
    chunk_m: float = 100.0,
    train_sites: bool = False,
) -> Path:
    """Copy the project's files (as git sees them) into ``root``, a new git repository whose
    DVC remote is ``root/remote``, shrink ``params.yaml`` to a tiny site and tiny budgets, and
    bring the site into being with ``releo ensure-data`` (simulated, ``dvc add``-ed, pushed);
    ``data``: a built site directory used instead of the simulated one; ``train_sites``: keep
    the further training sites of ``params.yaml`` (the real one, seconds more per run)."""
    listed = run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], REPO).stdout
    skip = GENERATED + stage_outputs()
    for name in listed.splitlines():
        src = REPO / name
        if src.is_file() and not name.startswith(skip):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    (root / "data.dvc").unlink(missing_ok=True)  # the tiny site is not the default one
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["site"].update(site or TINY_SITE)
    params["chunks"].update(size_m=chunk_m)
    # Tiny budgets: 2 tuning trials of 1 epoch, then 1 training epoch, each a step or two.
    params["tune"].update(
        num_samples=2, epochs=1, max_batches_per_epoch=1, eval_max_batches=1, grace_period=1
    )
    params["train"].update(epochs=1, max_batches_per_epoch=2, eval_max_batches=2)
    if not train_sites:
        params["train"]["sites"] = []
    # Compiling PROSAIL pays off over hundreds of steps, not over the two steps here.
    # Likewise a rough hybrid teacher (seconds) for the few steps that use it.
    params["model"] = {
        **(params.get("model") or {}), "fused_prosail": False, "hybrid_samples": 2000,
        "hybrid_steps": 50,
    }  # fmt: skip
    if isinstance(params.get("baseline"), dict):  # the per-pixel inversion (stage baseline)
        params["baseline"].update(steps=20)
    params["products"]["embed"].update(refine_steps=2)  # the refinement runs, briefly
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    run(["git", "init", "-q"], root)
    run(
        [sys.executable, "-m", "dvc", "remote", "modify", "local", "url", str(root / "remote")],
        root,
    )
    if data is not None:
        shutil.copytree(data, root / "data")
    run([sys.executable, "-m", "releo.cli", "ensure-data"], root)
    return root


def strip_to_real_site(root: Path, *, surveys: bool = True, meteo: bool = True) -> Path:
    """Make the simulated site of a tiny project (``make_tiny_project``) look like a real one:
    no ``truth/``, a ``site.json`` that holds only what ``releo site build`` records (a
    ``SiteRecord``: no simulator keys), and without the field surveys / meteo if asked; then
    ``dvc add`` it again. Returns the site directory."""
    import json
    from datetime import UTC, datetime

    from releo.data.io import open_cube
    from releo.data.site import SITE_FILES
    from releo.data.site_record import SiteRecord

    data = root / "data"
    shutil.rmtree(data / "truth", ignore_errors=True)
    simulated = json.loads((data / SITE_FILES["metadata"]).read_text())
    if simulated.get("kind") == "real":  # stripped before: drop the parts asked for
        simulated = SiteRecord.model_validate(simulated).model_dump(mode="json")
        names = ("xmin", "ymin", "xmax", "ymax")
        simulated["bounds"] = dict(zip(names, simulated["bounds"], strict=True))

    def source(part: str) -> dict:
        times = open_cube(data / SITE_FILES[part]).time.values
        return {
            "reader": "cube",
            "sources": [f"tests/{SITE_FILES[part]}"],
            "acquisitions": len(times),
            "first": str(times.min()),
            "last": str(times.max()),
        }

    record = SiteRecord(
        name="tiny test site without truth",
        crs=simulated["crs"],
        bounds=tuple(simulated["bounds"][k] for k in ("xmin", "ymin", "xmax", "ymax")),
        pixel_size_m=simulated["pixel_size_m"],
        period=simulated["period"],
        s2=source("s2"),
        s1=source("s1"),
        s1_incidence={"source": "product"},
        surveys=SITE_FILES["surveys"] if surveys else None,
        meteo=SITE_FILES["meteo"] if meteo else None,
        built=datetime.now(UTC),
    )
    (data / SITE_FILES["metadata"]).write_text(record.model_dump_json(indent=1))
    for part, keep in (("surveys", surveys), ("meteo", meteo)):
        if not keep:
            (data / SITE_FILES[part]).unlink()
    run([sys.executable, "-m", "dvc", "add", "--quiet", "data"], root)
    return data


def git_commit(root: Path, message: str) -> None:
    """Commit everything in the temporary project (its own repository, never this one)."""
    run(["git", "add", "-A"], root)
    identity = ["-c", "user.name=releo tests", "-c", "user.email=tests@releo.invalid"]
    run(["git", *identity, "commit", "-q", "--no-verify", "-m", message], root)


# --- Checking a command line without running it (README, workflows, Dockerfile) -------------

# Environment variables a README command may set: each is read by releo or by a tool it uses.
KNOWN_ENV = {
    "RAY_ADDRESS": "Ray: the cluster to join",
    "MLFLOW_TRACKING_URI": "releo.train.config.TrackingConfig.resolved_uri",
    "MLFLOW_S3_ENDPOINT_URL": "MLflow: S3-compatible artifact store",
    "AWS_ACCESS_KEY_ID": "boto3 (DVC S3 remote, MLflow S3 artifacts)",
    "AWS_SECRET_ACCESS_KEY": "boto3",
    "AWS_DEFAULT_REGION": "boto3",
}


def _click_errors(group, prog: str, args: list[str]) -> str | None:
    """Parse ``args`` against a click group (a subcommand and its options) without running it.
    (Typer vendors its own click: duck typing, not isinstance.)"""
    if not args:
        return None
    name, command, rest = prog, group, list(args)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(command.context_class(command, info_name=name), rest[0])
        if sub is None:
            return f"{name}: no command {rest[0]!r}"
        name, command, rest = f"{name} {rest[0]}", sub, rest[1:]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # what --help prints
            command.make_context(name, rest)
    except Exception as err:
        if type(err).__name__ == "Exit":  # --help
            return None
        if hasattr(err, "format_message"):  # a usage error: unknown option, bad value, ...
            return f"{name}: {err.format_message()}"
        raise
    return None


def releo_errors(args: list[str]) -> str | None:
    """Why ``releo ARGS`` is not a valid invocation of the releo CLI (None: it is)."""
    from typer.main import get_command

    from releo.cli import app

    return _click_errors(get_command(app), "releo", args)


def mlflow_errors(args: list[str]) -> str | None:
    from mlflow.cli import cli

    return _click_errors(cli, "mlflow", args)


def dvc_errors(args: list[str], root: Path = REPO) -> str | None:
    """Why ``dvc ARGS`` is invalid: DVC's own parser, and the stages and ``-S`` parameters it
    names exist in ``dvc.yaml`` / ``params.yaml`` (the values validated by ``releo.config``)."""
    from dvc.cli import parse_args

    from releo.config import Params

    out = io.StringIO()
    try:
        with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
            parsed = parse_args(list(args))
    except (SystemExit, Exception) as err:  # DvcParserError or argparse's exit
        return f"dvc {' '.join(args)}: {type(err).__name__} {out.getvalue().strip()[:300]}"
    stages = set(yaml.safe_load((root / "dvc.yaml").read_text())["stages"])
    for target in getattr(parsed, "targets", None) or []:
        if args[:1] in (["repro"], ["exp"]) and target not in stages:
            return f"dvc {' '.join(args)}: no stage {target!r} in dvc.yaml"
    overrides = [o for o in getattr(parsed, "set_param", None) or [] if isinstance(o, str)]
    if overrides:
        params = yaml.safe_load((root / "params.yaml").read_text())
        for override in overrides:
            problem = _apply_override(params, override)
            if problem:
                return f"dvc {' '.join(args)}: -S {override}: {problem}"
        try:
            Params.model_validate(params)
        except Exception as err:
            return f"dvc {' '.join(args)}: the overridden params.yaml is invalid: {err}"
    return None


def _apply_override(params: dict, override: str) -> str | None:
    """Apply a Hydra-style ``key=value`` (``+key=value`` adds a key) to the params dict."""
    key, _, value = override.partition("=")
    add = key.startswith("+")
    *parents, leaf = key.lstrip("+").split(".")
    node = params
    for part in parents:
        if not isinstance(node, dict) or part not in node:
            return f"no {part!r} in params.yaml"
        node = node[part]
    if not isinstance(node, dict):
        return "not a mapping"
    if leaf in node and add:
        return f"{leaf!r} exists: override it without '+'"
    if leaf not in node and not add:
        return f"no {leaf!r} in params.yaml (add it with '+')"
    node[leaf] = yaml.safe_load(value)
    return None


def make_errors(args: list[str], root: Path = REPO) -> str | None:
    """Why ``make ARGS`` is invalid: ``make -n`` (nothing run) must know every target."""
    done = subprocess.run(["make", "-n", *args], cwd=root, capture_output=True, text=True)
    return None if done.returncode == 0 else f"make {' '.join(args)}: {done.stderr.strip()}"


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of a shell script: lines joined at backslashes, split at ``&&``,
    ``||``, ``;`` and ``|``, comments dropped, each as its words."""
    commands = []
    for line in text.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                commands.append(words)
                words = []
            else:
                words.append(token)
        commands.append(words)
    return [c for c in commands if c]


def write_geotiff(
    path: Path, data, crs: str, ul: tuple[float, float], res: float, nodata=None, **tags
) -> Path:
    """One-band GeoTIFF of ``data`` with its upper-left corner at ``ul`` (tags optional)."""
    import rasterio
    from rasterio.transform import from_origin

    path.parent.mkdir(parents=True, exist_ok=True)
    with rasterio.open(
        path, "w", driver="GTiff", height=data.shape[0], width=data.shape[1], count=1,
        dtype=data.dtype, crs=crs, transform=from_origin(*ul, res, res), nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
        if tags:
            dst.update_tags(**tags)
    return path


@pytest.fixture(scope="module")
def small_site(tmp_path_factory):
    """A simulated 200 m site over 40 days and its index of 100 m × 10-day chunks."""
    from datetime import date

    from releo.data.chunks import chunk_index
    from releo.data.simulate import SimulationConfig, simulate_site
    from releo.data.site import open_site

    root = tmp_path_factory.mktemp("site")
    config = SimulationConfig(
        width_m=200, height_m=200, start_date=date(2025, 5, 1), end_date=date(2025, 6, 9)
    )
    simulate_site(config, root, progress=False)
    opened = open_site(root)
    index = chunk_index(
        opened.s2, opened.s1, size_m=100, days=10, split={"train": 2, "val": 1, "test": 1}
    )
    return root, index
