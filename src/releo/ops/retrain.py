"""Retraining on a new data drop, as CI runs it and as ``releo retrain`` runs it locally.

One flow: (pull the data and the cached stage outputs) → (add a simulated data drop and
``dvc add`` it, updating ``data.dvc``) → ``dvc repro`` (the ``register`` stage compares the
new model with the registered ``champion`` on the held-out metrics and promotes it or not) →
read that decision from ``metrics/register.json`` → ``dvc metrics diff`` and ``dvc plots
diff`` against a git revision (the previous commit by default) → (``dvc push``) → a Markdown
summary (the GitHub run summary in CI).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from releo.config import load_params

REGISTER_METRICS = Path("metrics/register.json")
PLOTS_DIR = Path("dvc_plots")  # DVC's own default output folder of `dvc plots`
DECISION_KEYS = ("model_name", "version", "alias", "promoted")


class RetrainError(RuntimeError):
    """A step of the retraining flow failed; the message names the command and its output."""


def _env() -> dict[str, str]:
    """The environment of DVC and its stages, with this interpreter's ``bin/`` first on PATH.

    The stages' ``python`` is then the project's.
    """
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}


def dvc(
    *args: str, cwd: Path, check: bool = True, echo: Callable[[str], Any] | None = None
) -> subprocess.CompletedProcess:
    """Run ``dvc ARGS`` in ``cwd``.

    With ``echo``, its output lines are passed on as they come (``dvc repro`` runs for minutes).
    Raises :class:`RetrainError` when ``check`` and it fails.
    """
    command = [sys.executable, "-m", "dvc", *args]
    if echo is None:
        done = subprocess.run(
            command, cwd=cwd, env=_env(), capture_output=True, text=True, check=False
        )
    else:
        lines = []
        with subprocess.Popen(
            command, cwd=cwd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1,
        ) as proc:  # fmt: skip
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                echo(line.rstrip("\n"))
        done = subprocess.CompletedProcess(command, proc.returncode, "".join(lines), "")
    if check and done.returncode != 0:
        raise RetrainError(
            f"dvc {' '.join(args)} failed (exit {done.returncode}):\n{done.stdout}{done.stderr}"
        )
    return done


def _git_rev_exists(root: Path, rev: str) -> bool:
    done = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"],
        cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    return done.returncode == 0


def _data_md5(root: Path) -> str | None:
    """The md5 of the data that ``data.dvc`` names (None when untracked)."""
    from releo.tracking.runs import data_md5

    md5 = data_md5(root)
    return None if md5 == "untracked" else md5


@dataclass(frozen=True)
class RegistryDecision:
    """What the ``register`` stage decided (``metrics/register.json``).

    The new version of ``model_name``, its ``alias`` (champion or challenger), whether it was
    ``promoted``, and the held-out ``metric`` (lower is better) of the new model and of the champion
    before.
    """

    model_name: str
    version: int
    alias: str
    promoted: bool
    metric: str = "lai_rmse_field"
    value: float | None = None
    champion_before: float | None = None
    champion_version_before: int | None = None

    def sentence(self) -> str:
        """The decision in one sentence."""
        new = f"{self.metric} {_fmt(self.value)}"
        if self.champion_before is None:
            return (
                f"`{self.model_name}` v{self.version} → `{self.alias}` ({new}; no champion "
                f"before{'' if self.promoted else ' with a comparable value'})"
            )
        champion = f"the champion's {_fmt(self.champion_before)}"
        if self.champion_version_before is not None:
            champion += f" (v{self.champion_version_before})"
        verdict = "beats" if self.promoted else "does not beat"
        return f"`{self.model_name}` v{self.version} → `{self.alias}`: {new} {verdict} {champion}"


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.4g}"


def read_decision(path: Path) -> RegistryDecision | None:
    """The registry decision of the last ``register`` run; None when the file is absent.

    Raises :class:`RetrainError` when the file does not hold the contract's keys.
    """
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise RetrainError(f"{path}: not valid JSON: {err}") from err
    metric = str(raw.get("metric", "lai_rmse_field"))
    missing = [k for k in (*DECISION_KEYS, metric, f"champion_{metric}_before") if k not in raw]
    if missing:
        raise RetrainError(f"{path}: missing {missing} (has {sorted(raw)})")

    def number(key: str) -> float | None:
        value = raw.get(key)
        return None if value is None else float(value)

    before_version = raw.get("champion_version_before")
    return RegistryDecision(
        model_name=str(raw["model_name"]),
        version=int(raw["version"]),
        alias=str(raw["alias"]),
        promoted=bool(raw["promoted"]),
        metric=metric,
        value=number(metric),
        champion_before=number(f"champion_{metric}_before"),
        champion_version_before=None if before_version is None else int(before_version),
    )


@dataclass(frozen=True)
class PlotSeries:
    """One line of a ``dvc plots diff`` plot at one revision, summarised."""

    plot: str
    series: str
    rev: str
    points: int
    last: float | None
    best: float | None  # the minimum: every plotted curve here is a loss or an error


def plot_series(plots_json: dict) -> list[PlotSeries]:
    """Summarise ``dvc plots diff --json``.

    Per plot, y series and revision: the number of points, the last value and the minimum.
    """
    rows = []
    for name, items in (plots_json.get("data") or {}).items():
        for item in items:
            content = item.get("content") or {}
            values = (content.get("data") or {}).get("values") or []
            y_field = _y_field(content)
            groups: dict[tuple[str, str], list[float]] = {}
            for point in values:
                key = "dvc_inferred_y_value" if "dvc_inferred_y_value" in point else y_field
                series = str(point.get("field", y_field))
                try:
                    value = float(point[key])
                except (KeyError, TypeError, ValueError):
                    continue
                groups.setdefault((series, str(point.get("rev", "?"))), []).append(value)
            for (series, rev), ys in groups.items():
                finite = [y for y in ys if math.isfinite(y)]
                rows.append(
                    PlotSeries(name, series, rev, len(ys), ys[-1], min(finite) if finite else None)
                )
    return rows


def _y_field(content: dict) -> str:
    for layer in content.get("layer") or []:
        field_name = ((layer.get("encoding") or {}).get("y") or {}).get("field")
        if field_name:
            return str(field_name)
    return str(((content.get("encoding") or {}).get("y") or {}).get("field", "y"))


@dataclass
class RetrainReport:
    """What one retraining did and found."""

    rev: str | None  # the git revision the diffs compare against (None: no such commit)
    drop: int = 0
    data_md5_before: str | None = None
    data_md5_after: str | None = None
    stages_run: list[str] = field(default_factory=list)
    decision: RegistryDecision | None = None
    metrics_diff: dict = field(default_factory=dict)  # `dvc metrics diff --json`
    metrics_diff_md: str = ""
    plots: list[PlotSeries] = field(default_factory=list)
    plots_html: Path | None = None
    pushed: bool = False

    @property
    def data_changed(self) -> bool:
        """Whether the data drop changed ``data/``."""
        return self.data_md5_before != self.data_md5_after


def retrain(
    root: str | os.PathLike[str] = ".",
    *,
    drop: int = 0,
    pull: bool = False,
    push: bool = False,
    rev: str = "HEAD",
    echo: Callable[[str], Any] = print,
) -> RetrainReport:
    """Run the retraining flow in the project at ``root`` (see the module docstring).

    ``drop``: simulate data drop N first (the default site's next dates) and ``dvc add`` it.
    ``pull``/``push``: fetch from / send to the DVC remote (data and cached stage outputs).
    ``rev``: the git revision ``dvc metrics diff``/``dvc plots diff`` compare against.
    """
    from releo.data.simulate import simulate_drop
    from releo.data.versioning import ensure_data

    root = Path(root).resolve()
    params = load_params(root / "params.yaml")
    data_dir = params.data_dir
    report = RetrainReport(rev=rev if _git_rev_exists(root, rev) else None, drop=drop)
    report.data_md5_before = _data_md5(root)

    if pull:
        echo("== dvc pull (data and cached stage outputs)")
        pulled = dvc("pull", "--allow-missing", cwd=root, check=False)
        if pulled.returncode != 0:  # a fresh remote: ensure-data simulates the default site
            echo(f"dvc pull incomplete:\n{pulled.stdout}{pulled.stderr}")
        echo(f"{data_dir}: {ensure_data(data_dir, params.site, repo=root)}")
    if drop:
        echo(f"== data drop {drop}")
        simulate_drop(root / data_dir, drop, progress=False)
        dvc("add", "--quiet", str(data_dir), cwd=root)
    report.data_md5_after = _data_md5(root)

    echo("== dvc repro")
    repro = dvc("repro", cwd=root, echo=echo)
    report.stages_run = [
        line.split("'")[1] for line in repro.stdout.splitlines() if line.startswith("Running stage")
    ]
    if "register" in report.stages_run:  # else the file holds an earlier decision
        report.decision = read_decision(root / REGISTER_METRICS)

    if report.rev is not None:
        diff = dvc("metrics", "diff", report.rev, "--json", cwd=root)
        report.metrics_diff = json.loads(diff.stdout or "{}")
        report.metrics_diff_md = dvc("metrics", "diff", report.rev, "--md", cwd=root).stdout
        plots = dvc("plots", "diff", report.rev, "--json", cwd=root, check=False)
        if plots.returncode == 0 and plots.stdout.strip():
            report.plots = plot_series(json.loads(plots.stdout))
        html = dvc("plots", "diff", report.rev, "-o", str(PLOTS_DIR), cwd=root, check=False)
        if html.returncode == 0 and (root / PLOTS_DIR / "index.html").exists():
            report.plots_html = PLOTS_DIR / "index.html"

    if push:
        echo("== dvc push")
        dvc("push", cwd=root)
        report.pushed = True
    return report


def summary_markdown(report: RetrainReport) -> str:
    """The run summary: data, stages, the registry decision, the metrics and plots diffs."""
    lines = ["## releo retrain", ""]
    if report.data_changed:
        what = f" (data drop {report.drop} added)" if report.drop else ""
        lines.append(
            f"- **Data**: `data.dvc` md5 `{report.data_md5_before}` → "
            f"`{report.data_md5_after}`{what}"
        )
    else:
        lines.append(f"- **Data**: unchanged (`data.dvc` md5 `{report.data_md5_after}`)")
    stages = ", ".join(f"`{s}`" for s in report.stages_run) or "none: everything up to date"
    lines.append(f"- **Stages run**: {stages}")
    if report.decision is None:
        lines.append("- **Registry**: no new decision (the `register` stage did not run)")
    else:
        lines.append(f"- **Registry**: {report.decision.sentence()}")
    if report.pushed:
        lines.append("- **DVC remote**: data and stage outputs pushed")
    lines.append("")
    if report.rev is None:
        lines.append("No git revision to compare with: no metrics or plots diff.")
        return "\n".join(lines) + "\n"
    lines += [f"### `dvc metrics diff {report.rev}`", ""]
    lines.append(report.metrics_diff_md.strip() or "No metric changed.")
    lines += ["", f"### `dvc plots diff {report.rev}`", ""]
    if report.plots:
        lines += [
            "| plot | series | revision | points | last | min |",
            "|---|---|---|---|---|---|",
        ]
        lines += [
            f"| {p.plot} | {p.series} | {p.rev} | {p.points} | {_fmt(p.last)} | {_fmt(p.best)} |"
            for p in report.plots
        ]
    else:
        lines.append("No plot data.")
    if report.plots_html is not None:
        lines += ["", f"The rendered plots: `{report.plots_html}`."]
    return "\n".join(lines) + "\n"
