"""Human-readable outputs of discovery.

The equations (Markdown with LaTeX), plots of simulated against observed held-out trajectories
(PNG), and the same as small CSV tables for ``dvc plots``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from releo.data.io import atomic_file
from releo.discover.sindy import Discovery, predict
from releo.discover.trajectories import Drivers, Trajectory

TEX_SYMBOLS = {
    "Tplus": "T^{+}",
    "P": "P",
    "lai": r"\mathrm{LAI}",
    "res_s2": r"\ell_{\mathrm{S2}}",
    "res_s1": r"\ell_{\mathrm{S1}}",
}


def tex_symbol(name: str) -> str:
    """The LaTeX symbol of a state or driver name."""
    return TEX_SYMBOLS.get(name, name if len(name) == 1 else rf"\mathrm{{{name}}}")


def tex_term(label: str) -> str:
    r"""``P*b`` → ``P\,b``; ``b^2`` → ``b^{2}``; ``1`` → ``1``."""
    if label == "1":
        return "1"
    parts = []
    for factor in label.split("*"):
        symbol, _, power = factor.partition("^")
        tex = tex_symbol(symbol)
        if power:  # braces: T^{+} squared must not be a double superscript
            tex = f"{{{tex}}}^{{{power}}}" if "^" in tex else f"{tex}^{{{power}}}"
        parts.append(tex)
    return r"\,".join(parts)


def _number(value: float, std: float) -> str:
    digits = max(2, int(np.ceil(-np.log10(std))) + 1) if std > 0 else 4
    digits = min(digits, 8)
    if std > 0:
        return f"({abs(value):.{digits}f} \\pm {std:.{digits}f})"
    return f"{abs(value):.4g}"


def tex_equation(result: Discovery) -> str:
    """The selected terms with their uncertainty as a display equation."""
    lhs = rf"\frac{{d{tex_symbol(result.state)}}}{{dt}}"
    pieces = []
    for term in result.terms:
        if not term.selected:
            continue
        sign = "-" if term.coefficient < 0 else "+"
        body = _number(term.coefficient, term.std)
        suffix = "" if term.label == "1" else r"\," + tex_term(term.label)
        pieces.append(f"{sign} {body}{suffix}")
    rhs = " ".join(pieces).removeprefix("+ ") if pieces else "0"
    return f"$$ {lhs} = {rhs} $$"


def _fmt(value) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def equation_section(name: str, entry: dict, result: Discovery | None) -> str:
    """One target: what it is, its equation, the coefficient table and the fit quality."""
    lines = [f"## {name}", "", entry.get("description", ""), ""]
    if result is None:
        lines += [f"_Not fitted: {entry.get('note', 'no usable trajectories')}._", ""]
        return "\n".join(lines)
    planted = entry.get("planted_terms") or {}
    lines += [tex_equation(result), "", f"Plain text: `{result.equation()}`", ""]
    if entry.get("planted_equation"):
        lines += [f"Planted: `{entry['planted_equation']}`", ""]
    header = "| term | coefficient | ± std | inclusion probability |"
    rule = "|---|---|---|---|"
    if planted:
        header += " planted |"
        rule += "---|"
    lines += [header, rule]
    for term in result.terms:
        if not (term.selected or term.inclusion > 0 or term.label in planted):
            continue
        row = f"| ${tex_term(term.label)}$ | {term.coefficient:.6g} | {term.std:.2g} | "
        row += f"{term.inclusion:.2f} |"
        if planted:
            row += f" {planted.get(term.label, 0):g} |"
        lines.append(row)
    skill = result.skill
    lines += [
        "",
        "| fit quality | fitted trajectories | held-out trajectories |",
        "|---|---|---|",
        f"| trajectories | {_fmt(skill.get('n_trajectories_fit'))} | "
        f"{_fmt(skill.get('n_trajectories_heldout'))} |",
        f"| simulation R² (free run from the first observation) | "
        f"{_fmt(skill.get('sim_r2_fit'))} | {_fmt(skill.get('sim_r2_heldout'))} |",
        f"| simulation R² within fields (dynamics only) | "
        f"{_fmt(skill.get('sim_r2_within_fit'))} | {_fmt(skill.get('sim_r2_within_heldout'))} |",
        f"| simulation RMSE | {_fmt(skill.get('sim_rmse_fit'))} | "
        f"{_fmt(skill.get('sim_rmse_heldout'))} |",
        f"| increment R² (one observation interval ahead) | "
        f"{_fmt(skill.get('increment_r2_fit'))} | |",
        "",
    ]
    comparison = entry.get("comparison")
    if comparison:
        lines += [
            f"Against the planted equation: structure F1 {_fmt(comparison['structure_f1'])}, "
            f"largest coefficient error {_fmt(comparison['max_coef_rel_error'])} "
            f"(relative), missing {comparison['missing_terms'] or 'none'}, "
            f"extra {comparison['extra_terms'] or 'none'}.",
            "",
        ]
    baseline = entry.get("baseline")
    if baseline:
        lines += [
            "Pointwise-derivative baseline (pysindy FiniteDifference on the observation "
            f"dates): `{baseline['equation']}` — structure F1 "
            f"{_fmt(baseline['structure_f1'])}.",
            "",
        ]
    for note in entry.get("notes", []):
        lines.append(f"- {note}")
    return "\n".join(lines) + "\n"


def write_equations(path: Path, header: str, sections: Sequence[str]) -> None:
    """Write ``equations.md`` (``header`` then ``sections``), atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(header + "\n" + "\n".join(sections), encoding="utf-8")


def simulated_table(
    result: Discovery, trajectories: Sequence[Trajectory], drivers: Drivers, substeps: int
) -> pd.DataFrame:
    """Observed and simulated values of ``trajectories`` at their observation dates."""
    rows = []
    for traj, sim in zip(
        trajectories, predict(result, trajectories, drivers, substeps), strict=True
    ):
        for day, obs, value in zip(traj.days, traj.values, sim, strict=True):
            rows.append(
                {
                    "trajectory": traj.name,
                    "day": int(day),
                    "date": str(drivers.dates[day]),
                    "observed": float(obs),
                    "simulated": float(value),
                }
            )
    return pd.DataFrame(rows, columns=["trajectory", "day", "date", "observed", "simulated"])


def plot_trajectories(
    path: Path,
    title: str,
    result: Discovery,
    trajectories: Sequence[Trajectory],
    drivers: Drivers,
    substeps: int,
) -> None:
    """Daily free runs (lines) against the observations (points) of a few trajectories."""
    import matplotlib

    matplotlib.use("Agg")  # headless: stages run in CI and on servers
    import matplotlib.pyplot as plt

    n = len(trajectories)
    fig, axes = plt.subplots(n, 1, figsize=(8, 2.2 * n + 0.6), sharex=True, squeeze=False)
    daily = [daily_from(t, np.arange(t.days[0], t.days[-1] + 1)) for t in trajectories]
    runs = predict(result, daily, drivers, substeps)
    for ax, traj, day, run in zip(axes[:, 0], trajectories, daily, runs, strict=True):
        ax.plot(drivers.dates[day.days], run, lw=1.2, label="simulated (free run)")
        ax.plot(drivers.dates[traj.days], traj.values, "o", ms=3, label="observed")
        ax.set_ylabel(traj.name, fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="upper right")
    axes[0, 0].set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_file(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def daily_from(traj: Trajectory, days: np.ndarray) -> Trajectory:
    """A trajectory on every day from its first observation (its first value kept)."""
    values = np.full(days.size, traj.values[0])
    return Trajectory(traj.name, days, values, traj.group)
