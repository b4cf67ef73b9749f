"""params.yaml and the code agree: one source for every default of the science."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import REPO, run
from releo.config import Params, described, load_params


def test_science_defaults_have_one_source():
    """The model and the loss weights the pipeline trains with are the code's defaults, so
    tests, `releo lai --fine-tune-epochs` and the pipeline cannot train differently."""
    code = {k: v for k, v, _ in described(Params())}
    used = {k: v for k, v, _ in described(load_params(REPO / "params.yaml"))}
    for key, value in used.items():
        if key.startswith(("model.", "loss_weights.")):
            assert code[key] == value, f"params.yaml {key} = {value}, code default {code[key]}"


def test_releo_params_prints_every_knob_with_its_meaning(tmp_path: Path):
    done = run([sys.executable, "-m", "releo.cli", "params", str(REPO / "params.yaml")], tmp_path)
    lines = done.stdout.splitlines()
    assert len(lines) == len(described(Params()))
    weights = next(line for line in lines if line.startswith("loss_weights.s1 "))
    assert "= 2.7" in weights and "S1 backscatter" in weights
    one = run(
        [sys.executable, "-m", "releo.cli", "params", str(REPO / "params.yaml"), "--section",
         "train"], tmp_path,
    )  # fmt: skip
    assert all(line.startswith("train") for line in one.stdout.splitlines())
