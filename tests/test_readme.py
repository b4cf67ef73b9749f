"""The README's commands work: each one is a valid invocation, checked without running it.

Every command of a ``bash`` block, and every inline ``releo``/``make``/``dvc`` command of the
prose, is classified by its program and checked: ``releo`` and ``mlflow`` commands parse with
their CLIs (subcommand, options and values), ``make`` targets exist (``make -n``), ``dvc``
commands parse with DVC's parser and name real stages and real ``params.yaml`` keys (the
overridden values validated by ``releo.config``), ``docker`` commands use the Dockerfile's
build arguments and run valid commands in the image, ``ray`` commands parse with Ray's CLI,
exported variables are ones releo or its tools read. A program the checker does not know fails
the test, so a new kind of command comes with its check. The commands that the suite also runs
for real: ``make test`` (CI), ``releo retrain --drop`` and ``dvc exp run --queue``/``--run-all``
(``test_ops.py``), ``releo ui`` (``test_ui.py``), ``releo simulate --drop``, ``releo validate``
(``test_cli.py``), ``releo ensure-data`` and ``dvc repro`` (``test_pipeline.py``).
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
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"(?<!`)`((?:\.venv/bin/)?(?:releo|make|dvc) [^`\n]+)`(?!`)")
GIT_COMMANDS = {"add", "commit", "push", "pull", "clone", "checkout", "diff", "log", "status"}


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def readme_commands() -> list[list[str]]:
    commands = [c for body in blocks("bash") for c in shell_commands(body)]
    prose = FENCE.sub("", README)
    for span in INLINE.findall(prose):
        for words in shell_commands(span):
            named = len(words) == 2 and Path(words[0]).name == "releo"
            commands.append([*words, "--help"] if named else words)  # "`releo decode` does"
    return commands


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


def check(words: list[str]) -> str | None:
    """Why a README command is not a valid invocation (None: it is)."""
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


def test_every_readme_command_is_a_valid_invocation():
    commands = readme_commands()
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
     ["mlflow", "server", "--prot", "1"], ["ray", "start", "--haed"], ["curl", "x"]],
)  # fmt: skip
def test_the_checker_rejects_broken_commands(command):
    assert check(command) is not None


def test_files_and_pictures_the_readme_links_exist():
    links = re.findall(r"\]\(([^)#\s]+)\)", README)
    local = [link for link in links if not re.match(r"\w+://", link)]
    assert "docs/mlflow-ui.png" in local
    missing = [link for link in local if not (REPO / link).exists()]
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


def test_the_accuracy_table_is_the_committed_evaluation():
    metrics_file = REPO / "metrics" / "evaluate.json"
    if not metrics_file.exists():
        pytest.skip("no metrics/evaluate.json yet (run `make run`)")
    metrics = json.loads(metrics_file.read_text())
    section = README.split("## Accuracy against SNAP", 1)[1].split("\n## ", 1)[0]
    cited = re.findall(r"`(\w+)` = ([-\d.]+)", section)
    assert len(cited) >= 4, section
    for key, shown in cited:
        value = metrics[key]
        digits = len(shown.split(".")[1]) if "." in shown else 0
        assert f"{value:.{digits}f}" == shown, (key, value, shown)
