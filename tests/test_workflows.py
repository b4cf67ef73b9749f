"""The CI workflows and the Dockerfile: linted (actionlint with shellcheck, hadolint, all from
the wheels of the dev extra) and cross-checked against what they call."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_errors, releo_errors, shell_commands

WORKFLOWS = REPO / ".github" / "workflows"
DOCKERFILE = REPO / "Dockerfile"
BIN = Path(sys.executable).parent


def lint(tool: str, *args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    """Run a linter of the dev extra (this interpreter's bin/ first: actionlint finds
    shellcheck there and checks the `run:` scripts with it)."""
    exe = BIN / tool
    assert exe.exists(), f"{tool} missing: install the dev extra (make setup)"
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([str(exe), *args], cwd=cwd, env=env, capture_output=True, text=True)


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def steps(data: dict) -> list[dict]:
    return [step for job in data["jobs"].values() for step in job["steps"]]


def scripts(data: dict) -> str:
    return "\n".join(step.get("run", "") for step in steps(data))


def test_actionlint_passes_on_both_workflows():
    names = sorted(p.name for p in WORKFLOWS.glob("*.yml"))
    assert names == ["ci.yml", "retrain.yml"]
    done = lint("actionlint", "-color=false", *(f".github/workflows/{n}" for n in names))
    assert done.returncode == 0, done.stdout + done.stderr


def test_actionlint_and_shellcheck_catch_a_broken_workflow(tmp_path):
    broken = (WORKFLOWS / "retrain.yml").read_text()
    broken = broken.replace("${{ inputs.drop || 0 }}", "${{ inputs.drops || 0 }}")
    broken = broken.replace(
        'if [ -n "$DVC_REMOTE_URL" ]; then push=', "if [ -n $DVC_REMOTE_URL ]; then push="
    )
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    (tmp_path / ".github" / "workflows" / "retrain.yml").write_text(broken)
    done = lint("actionlint", "-color=false", ".github/workflows/retrain.yml", cwd=tmp_path)
    assert done.returncode != 0
    assert "drops" in done.stdout  # an undefined input
    assert "SC2070" in done.stdout or "SC2086" in done.stdout  # shellcheck on the run script


def test_ci_workflow_runs_the_ci_entry_point_on_every_push_and_pull_request():
    data = workflow("ci.yml")
    assert {"push", "pull_request"} <= set(data["on"])
    assert data["on"]["push"] is None  # every branch, every path
    assert "bash .ci/run" in scripts(data)
    caches = [s["with"] for s in steps(data) if s.get("uses", "").startswith("actions/cache@")]
    venv = [c for c in caches if c["path"] == ".venv"]
    assert venv and "hashFiles('pyproject.toml', 'constraints.txt')" in venv[0]["key"]
    python = [s for s in steps(data) if s.get("uses", "").startswith("actions/setup-python@")]
    assert python[0]["with"]["python-version"] == "3.11"


def test_retrain_workflow_runs_on_a_new_data_drop_or_on_demand():
    data = workflow("retrain.yml")
    assert data["on"]["push"]["paths"] == ["data.dvc"]
    assert data["on"]["workflow_dispatch"]["inputs"]["drop"]["type"] == "number"
    assert data["permissions"]["contents"] == "write"  # dvc.lock and metrics committed back
    text = scripts(data)
    assert '--summary "$GITHUB_STEP_SUMMARY"' in text  # metrics and plots diff in the summary
    assert "git add data.dvc dvc.lock metrics" in text and "[skip ci]" in text


def releo_invocations(text: str) -> list[list[str]]:
    """The arguments of every `releo ...` command of a shell script."""
    return [c[1:] for c in shell_commands(text) if Path(c[0]).name == "releo"]


def test_the_workflows_call_real_releo_commands_and_make_targets():
    text = scripts(workflow("retrain.yml")) + scripts(workflow("ci.yml"))
    calls = releo_invocations(text)
    assert any(c[0] == "retrain" and "--pull" in c for c in calls), calls
    examples = {"$DROP": "1", "$GITHUB_STEP_SUMMARY": "summary.md"}  # what the runner sets
    for args in calls:
        # "${push[@]}" expands to --push or to nothing
        plain = [examples.get(a, a) for a in args if a != "${push[@]}"]
        for variant in (plain, [*plain, "--push"]):
            assert releo_errors(variant) is None, releo_errors(variant)
    for target in re.findall(r"^\s*make (\S+)", text, re.MULTILINE):
        assert make_errors([target]) is None


def test_hadolint_passes_on_the_dockerfile():
    done = lint("hadolint", "--no-color", "Dockerfile")
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    bad = DOCKERFILE.read_text().replace("--no-install-recommends ", "")
    bad = bad.replace("git=1:2.39.* make=4.3-*", "git make")
    (tmp_path / "Dockerfile").write_text(bad)
    done = lint("hadolint", "--no-color", "Dockerfile", cwd=tmp_path)
    assert done.returncode != 0
    assert "DL3008" in done.stdout and "DL3015" in done.stdout


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    rows = [line.strip() for line in text.splitlines() if line.strip()]
    return [tuple(r.split(None, 1)) for r in rows if not r.startswith("#")]


def dockerignored(path: str) -> bool:
    ignored = False
    for pattern in (REPO / ".dockerignore").read_text().splitlines():
        pattern = pattern.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            ignored = not negate
    return ignored


def test_dockerfile_builds_from_what_the_context_holds_and_runs_real_commands():
    rows = instructions()
    args = {v.split("=")[0]: v.split("=", 1)[1] for k, v in rows if k == "ARG"}
    assert args["DEVICE"] == "cpu" and "cuda)" in DOCKERFILE.read_text()  # the CUDA build arg
    for kind, value in rows:
        if kind == "COPY" and not value.startswith("--from"):
            *sources, _ = value.split()
            for source in sources:
                if source != ".":
                    assert (REPO / source).exists() and not dockerignored(source), source
    # What the image needs is in the context; what the stages write is not.
    for needed in ("pyproject.toml", "constraints.txt", "dvc.yaml", "params.yaml", "data.dvc",
                   "src/releo/cli.py", "pipelines/train.py", ".dvc/config"):  # fmt: skip
        assert (REPO / needed).exists() and not dockerignored(needed), needed
    for excluded in (".venv/bin/python", "data/site.json", "mlruns/mlflow.db", ".git/HEAD"):
        assert dockerignored(excluded), excluded
    # The torch pin of the image is the project's.
    assert f"torch=={args['TORCH_VERSION']}" in (REPO / "constraints.txt").read_text()
    # The default command: releo ensure-data, then dvc repro.
    cmd = dict(rows)["CMD"]
    assert "releo ensure-data && dvc repro" in cmd
    assert releo_errors(["ensure-data"]) is None
    assert dict(rows)["EXPOSE"] == "5000" and releo_errors(["ui", "--host", "0.0.0.0"]) is None


def test_dockerfile_apt_pins_exist_in_debian_bookworm():
    base = dict(instructions())["FROM"]
    assert base.endswith("-bookworm")
    release = Path("/etc/os-release")
    if shutil.which("apt-cache") is None or "bookworm" not in release.read_text():
        pytest.skip("not a Debian bookworm machine: cannot ask apt for the image's packages")
    runs = " ".join(value for kind, value in instructions() if kind == "RUN")
    pins = re.findall(r"\b([a-z0-9.+-]+)=([0-9][^\s]*)", runs)
    assert pins, "no pinned apt package"
    for package, version in pins:
        listed = subprocess.run(["apt-cache", "madison", package], capture_output=True, text=True)
        versions = [row.split("|")[1].strip() for row in listed.stdout.splitlines()]
        if not versions:
            pytest.skip(f"apt knows no {package} (run apt-get update)")
        assert any(fnmatch.fnmatch(v, version) for v in versions), (package, version, versions)


def test_dockerfile_installs_the_dependencies_of_pyproject():
    import tomllib

    code = re.search(r'python -c "(.*?)" >', DOCKERFILE.read_text()).group(1)
    listed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.split()  # fmt: skip
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert listed == [d.replace(" ", "") for d in project["dependencies"]]
    assert "-c constraints.txt -r /tmp/requirements.txt" in DOCKERFILE.read_text()
