"""The README's and docs/'s commands work, and their figures are the committed metrics.

README.md is the user guide, ``docs/*.md`` the results, design, benchmarks and experiment
notes. Every command of a ``bash`` block of the README and of every ``docs/*.md``, and every
inline ``releo``/``make``/``dvc`` command of their prose, is classified by its program and
checked without running it: ``releo`` and ``mlflow`` commands parse with their CLIs
(subcommand, options and values), ``make`` targets exist (``make -n``), ``dvc`` commands parse
with DVC's parser and name real stages and real ``params.yaml`` keys (the overridden values
validated by ``releo.config``), ``docker`` commands use the Dockerfile's build arguments and
run valid commands in the image, ``ray`` commands parse with Ray's CLI, exported variables are
ones releo or its tools read, ``python benchmarks/X.py`` names a script that declares the
options given. A program the checker does not know fails the test, so a new kind of command
comes with its check. The commands that the suite also runs for real: ``make test`` (CI),
``releo retrain --drop`` and ``dvc exp run --queue``/``--run-all`` (``test_ops.py``),
``releo ui`` (``test_ui.py``), ``releo simulate --drop``, ``releo validate``
(``test_cli.py``), ``releo ensure-data`` and ``dvc repro`` (``test_pipeline.py``).

The figures: every ```key` = value`` of ``docs/results.md`` is the value in the metrics file
its section's heading names, and each cell of the README's short results table is the value of
the ``metrics/evaluate.json`` key that README_RESULTS gives its row and column.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from conftest import (
    KNOWN_ENV,
    REPO,
    dvc_errors,
    make_errors,
    mlflow_errors,
    releo_errors,
    shell_commands,
)

README = (REPO / "README.md").read_text()
DOCS = {f"docs/{p.name}": p.read_text() for p in sorted((REPO / "docs").glob("*.md"))}
PAGES = {"README.md": README, **DOCS}  # every page whose commands are checked
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`((?:\.venv/bin/)?(?:releo|make|dvc) [^`\n]+)`(?!`)")
GIT_COMMANDS = {"add", "commit", "push", "pull", "clone", "checkout", "diff", "log", "status"}


# Environment variables a command line may set for itself (``NAME=value command``).
COMMAND_ENV = {*KNOWN_ENV, "OMP_NUM_THREADS"}


def blocks(language: str, text: str = README) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if lang == language]


def page_commands(text: str) -> list[list[str]]:
    commands = [c for body in blocks("bash", text) for c in shell_commands(body)]
    prose = FENCE.sub("", text)
    for span in INLINE.findall(prose):
        for words in shell_commands(span):
            named = len(words) == 2 and Path(words[0]).name == "releo"
            commands.append([*words, "--help"] if named else words)  # "`releo decode` does"
    return commands


def readme_commands() -> list[list[str]]:
    """The commands of the README and of every docs/*.md page."""
    return [c for text in PAGES.values() for c in page_commands(text)]


def docker_errors(args: list[str]) -> str | None:
    dockerfile = (REPO / "Dockerfile").read_text()
    build_args = set(re.findall(r"^ARG (\w+)", dockerfile, re.MULTILINE))
    if args[0] == "build":
        for i, word in enumerate(args):
            if word == "--build-arg":
                name = args[i + 1].split("=")[0]
                if name not in build_args:
                    return f"docker build: no ARG {name} in the Dockerfile"
        return None if args[-1] == "." else "docker build: the context is the project root"
    if args[0] == "run":
        rest, i = args[1:], 0
        while i < len(rest) and rest[i].startswith("-"):  # options, with their values
            i += 1 if "=" in rest[i] or rest[i] in ("--rm", "-it", "-d") else 2
        image, command = rest[i], rest[i + 1 :]
        if not image.startswith("releo"):
            return f"docker run: image {image!r} is not the project's"
        return check(command) if command else None
    return f"docker {args[0]}: not checked"


def ray_errors(args: list[str]) -> str | None:
    from ray.scripts.scripts import cli

    from conftest import _click_errors

    return _click_errors(cli, "ray", args)


def pip_errors(args: list[str]) -> str | None:
    """`pip install -c constraints.txt -e ".[extra]"`: the extras exist and are pinned."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = (REPO / "constraints.txt").read_text().lower()
    for word in args:
        for extra in re.findall(r"\[([\w,-]+)\]", word):
            for name in extra.split(","):
                if name not in project["optional-dependencies"]:
                    return f"pip: no extra {name!r} in pyproject.toml"
                for dep in project["optional-dependencies"][name]:
                    if f"\n{dep.lower()}==" not in f"\n{pins}":
                        return f"pip: {dep} (extra {name}) is not pinned in constraints.txt"
    return None if "-c" in args and "constraints.txt" in args else "pip: use -c constraints.txt"


def python_errors(args: list[str]) -> str | None:
    """`python benchmarks/X.py --opt v`: the script exists and declares each option."""
    if not args or not args[0].startswith("benchmarks/"):
        return f"python {args[:1]}: only the benchmark scripts are checked"
    script = REPO / args[0]
    if not script.is_file():
        return f"python: no {args[0]}"
    source = script.read_text()
    unknown = [a for a in args[1:] if a.startswith("--") and f'"{a}"' not in source]
    return f"python {args[0]}: no option {unknown}" if unknown else None


def check(words: list[str]) -> str | None:
    """Why a README or docs command is not a valid invocation (None: it is)."""
    while words and re.match(r"^\w+=", words[0]) and len(words) > 1:  # NAME=value command
        name = words[0].split("=")[0]
        if name not in COMMAND_ENV:
            return f"{name}=: not read by releo or its tools"
        words = words[1:]
    program, args = Path(words[0]).name, words[1:]
    if program == "releo":
        return releo_errors(args)
    if program == "make":
        return make_errors(args)
    if program == "dvc":
        return dvc_errors(args)
    if program == "mlflow":
        return mlflow_errors(args)
    if program == "docker":
        return docker_errors(args)
    if program == "ray":
        return ray_errors(args)
    if program == "pip":
        return pip_errors(args)
    if program == "python":
        return python_errors(args)
    if program == "export":
        names = [a.split("=")[0] for a in args]
        unknown = [n for n in names if n not in KNOWN_ENV]
        return f"export: {unknown} not read by releo or its tools" if unknown else None
    if program == "git":
        return None if args and args[0] in GIT_COMMANDS else f"git {args[:1]}: not checked"
    return f"{program}: not a command test_readme knows how to check"


def test_the_readme_starts_with_the_two_set_up_commands():
    first_two = [c for body in blocks("bash")[:2] for c in shell_commands(body)]
    assert first_two == [["make", "run"], ["make", "test"]]
    ci = (REPO / ".ci" / "run").read_text()
    assert ci.rstrip().endswith("make test")  # CI runs the README's test command


def test_the_readme_is_a_ten_minute_read():
    words = len(README.split())
    assert words <= 2500, f"README.md has {words} words: move detail to docs/"
    long = [i for i, line in enumerate(README.splitlines(), 1) if len(line) > 100]
    assert not long, f"README.md lines over 100 characters: {long}"


@pytest.mark.parametrize("page", list(PAGES))
def test_every_command_of_the_readme_and_docs_is_a_valid_invocation(page):
    commands = page_commands(PAGES[page])
    if page == "README.md":
        assert len(commands) > 20, commands
    problems = [f"{' '.join(c)}\n    -> {p}" for c in commands if (p := check(c))]
    assert not problems, "\n".join(problems)


def test_every_releo_command_is_documented():
    from typer.main import get_command

    from releo.cli import app

    documented = {c[1] for c in readme_commands() if Path(c[0]).name == "releo" and len(c) > 1}
    assert set(get_command(app).commands) <= documented


@pytest.mark.parametrize(
    "command",
    [["releo", "retrain", "--drops", "1"], ["dvc", "repro", "trian"],
     ["dvc", "exp", "run", "-S", "+loss_weights.s7=2"], ["make", "retrian"],
     ["docker", "build", "--build-arg", "GPU=1", "."], ["export", "RAY_ADRESS=x"],
     ["mlflow", "server", "--prot", "1"], ["ray", "start", "--haed"], ["curl", "x"],
     ["python", "benchmarks/rate_distortion.py", "--epoch", "10"],
     ["python", "benchmarks/rate_distorsion.py"], ["OMP_NUM_THREAD=2", "make", "bench"]],
)  # fmt: skip
def test_the_checker_rejects_broken_commands(command):
    assert check(command) is not None


@pytest.mark.parametrize("page", list(PAGES))
def test_files_and_pictures_the_pages_link_exist(page):
    links = re.findall(r"\]\(([^)#\s]+)\)", PAGES[page])
    local = [link for link in links if not re.match(r"\w+://", link)]
    if page == "README.md":
        assert {"docs/mlflow-ui.png", "docs/mlflow-registry.png", "docs/results.md"} <= set(local)
    missing = [link for link in local if not ((REPO / page).parent / link).exists()]
    assert not missing, missing


def mermaid_edges(picture: str) -> dict[str, set[str]]:
    """``a --> b``, ``a -->|label| b``, ``a -.-> b`` chains of a mermaid flowchart, by node id."""
    edges: dict[str, set[str]] = {}
    for line in picture.splitlines()[1:]:
        parts = re.split(r"-\.?->(?:\|[^|]*\|)?", line.split("%%")[0])
        hops = [m.group(1) for part in parts if (m := re.match(r"\s*(\w+)", part))]
        if len(hops) != len(parts):
            continue
        for a, b in pairwise(hops):
            edges.setdefault(a, set()).add(b)
        for node in hops:
            edges.setdefault(node, set())
    return edges


def test_the_pipeline_picture_has_every_stage_and_dependency_of_dvc_yaml():
    (picture,) = [b for b in blocks("mermaid") if b.startswith("flowchart")]
    edges = mermaid_edges(picture)

    def reachable(a: str, b: str) -> bool:
        seen, todo = set(), list(edges.get(a, ()))
        while todo:
            node = todo.pop()
            if node == b:
                return True
            if node not in seen:
                seen.add(node)
                todo.extend(edges.get(node, ()))
        return False

    dag = subprocess.run(
        [sys.executable, "-m", "dvc", "dag", "--mermaid"], cwd=REPO, capture_output=True,
        text=True, check=True,
    ).stdout  # fmt: skip
    names = dict(re.findall(r"(node\d+)\[\"([^\"]+)\"\]", dag))
    stages = {n for n in names.values() if not n.endswith(".dvc")}
    assert stages <= set(edges), f"stages missing from the picture: {stages - set(edges)}"
    for a, b in re.findall(r"(node\d+)-->(node\d+)", dag):
        if not names[a].endswith(".dvc"):
            assert reachable(names[a], names[b]), f"no path {names[a]} → {names[b]} in the picture"


def shown_as(value: float, shown: str) -> bool:
    """``shown`` is ``value`` written with as many decimals as ``shown`` has."""
    digits = len(shown.split(".")[1]) if "." in shown else 0
    return f"{value:.{digits}f}" == shown


def metric(metrics: dict, key: str):
    for part in key.split("."):
        metrics = metrics[part]
    return metrics


def test_the_results_page_is_the_committed_metrics():
    page = DOCS["docs/results.md"]
    checked = 0
    for heading, section in re.findall(r"^## ([^\n]*)\n(.*?)(?=^## |\Z)", page, re.M | re.S):
        cited = re.findall(r"`([\w.]+)` = (-?[\d.]*\d)", section)
        named = re.findall(r"`metrics/(\w+)\.json`", heading)
        if not cited:
            continue
        assert len(named) == 1, f"section {heading!r} cites figures but names no one metrics file"
        metrics_file = REPO / "metrics" / f"{named[0]}.json"
        if not metrics_file.exists():
            pytest.skip(f"no {metrics_file.name} yet (run `make run`)")
        metrics = json.loads(metrics_file.read_text())
        for key, shown in cited:
            value = metric(metrics, key)
            assert shown_as(value, shown), (heading, key, value, shown)
        checked += len(cited)
    accuracy = page.split("## Accuracy against SNAP", 1)[1].split("\n## ", 1)[0]
    assert len(re.findall(r"`\w+` = [-\d.]+", accuracy)) >= 20, accuracy
    assert checked >= 50, checked


# The README's short results table: each row label, and its cells' metrics/evaluate.json keys
# (releo, per-pixel baseline, SNAP; None: the cell is "—").
README_RESULTS = {
    "RMSE against the simulator truth": (
        "lai_rmse_truth_at_snap", "baseline_lai_rmse_truth", "snap_lai_rmse_truth"),
    "RMSE against the truth, `test` split alone": (
        "lai_rmse_truth_at_snap_test", None, "snap_lai_rmse_truth_test"),
    "RMSE against the field surveys": (
        "lai_rmse_field_at_snap", "baseline_lai_rmse_field", "snap_lai_rmse_field"),
    "bias against the field surveys": (
        "lai_bias_field_at_snap", "baseline_lai_bias_field", "snap_lai_bias_field"),
    "share of pixel-dates with a value (clouds)": (
        "lai_valid_fraction", "baseline_lai_valid_fraction", "snap_lai_valid_fraction"),
    "coverage of the 90 % interval, `test`": ("lai_coverage90_truth_at_snap_test", None, None),
}  # fmt: skip


def test_the_readme_results_table_is_the_committed_evaluation():
    metrics_file = REPO / "metrics" / "evaluate.json"
    if not metrics_file.exists():
        pytest.skip("no metrics/evaluate.json yet (run `make run`)")
    metrics = json.loads(metrics_file.read_text())
    section = README.split("## Current results", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    body = {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows[1:]}
    assert set(body) == set(README_RESULTS), "every row of the table is checked, and only those"
    for label, keys in README_RESULTS.items():
        for key, shown in zip(keys, body[label], strict=True):
            if key is None:
                assert shown == "—", (label, shown)
            else:
                assert shown_as(metrics[key], shown), (label, key, metrics[key], shown)
