"""The `releo` command line as a user runs it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml
from typer.testing import CliRunner

from releo.cli import app
from releo.data.io import open_cube

REAL_SAMPLE = Path(__file__).parent / "data" / "real_s2_l2a_sample" / "test_aws_10m.nc"
runner = CliRunner()


def tiny_params(tmp_path: Path) -> Path:
    params = {
        "data_dir": str(tmp_path / "site"),
        "site": {"width_m": 200.0, "height_m": 200.0, "start_date": "2025-05-01",
                 "end_date": "2025-05-30", "drop_days": 20, "survey_points": 5},
        "quality": {"context_root": str(tmp_path / "gx")},
    }  # fmt: skip
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def test_simulate_then_drop_extends_the_site(tmp_path):
    params = tiny_params(tmp_path)
    first = runner.invoke(app, ["simulate", "--params", str(params)])
    assert first.exit_code == 0, first.output
    before = open_cube(tmp_path / "site" / "s2_l2a.zarr").time.values
    dropped = runner.invoke(app, ["simulate", "--params", str(params), "--drop", "1"])
    assert dropped.exit_code == 0, dropped.output
    after = open_cube(tmp_path / "site" / "s2_l2a.zarr").time.values
    assert (after[: len(before)] == before).all() and after[-1] > before[-1]
    assert pd.Timestamp(after[-1]) <= pd.Timestamp("2025-06-19")


def test_validate_real_s2_sample_passes_the_gate(tmp_path):
    result = runner.invoke(
        app, ["validate", "s2", str(REAL_SAMPLE), "--params", str(tiny_params(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    assert "gate passed" in result.output


def test_bad_params_name_the_file_field_and_value(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"site": {"cloudiness": 3}}))
    result = runner.invoke(app, ["simulate", "--params", str(params)])
    assert result.exit_code == 1
    assert "params.yaml" in result.output and "site.cloudiness" in result.output
    assert "3" in result.output


def test_failed_gate_exits_1_and_names_the_expectation(tmp_path):
    table = tmp_path / "pixels.csv"
    rows = {"point_id": ["p1", "p1"], "date": ["2025-05-01", "2025-05-01"], "cloud_mask": [0, 0],
            "sun_zenith": [40.0, 40.0], "view_zenith": [5.0, 5.0], "relative_azimuth": [90.0, 90.0],
            **{b: [0.1, 0.1] for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                       "B11", "B12")}}  # fmt: skip
    pd.DataFrame(rows).to_csv(table, index=False)
    result = runner.invoke(
        app, ["validate", "pixel-table", str(table), "--params", str(tiny_params(tmp_path))]
    )
    assert result.exit_code == 1
    assert "pixels.csv" in result.output and "expect_" in result.output
