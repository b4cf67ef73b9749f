"""The ``releo`` command line: simulate sites, bring data into being, gate files."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from releo.config import DEFAULT_PARAMS, load_params
from releo.stage import stage

app = typer.Typer(help="releo: physics-informed representation learning on S2 + S1.")
ParamsOption = Annotated[Path, typer.Option("--params", "-p", help="params.yaml to read")]


@app.command()
def simulate(
    params: ParamsOption = DEFAULT_PARAMS,
    out: Annotated[Path | None, typer.Option(help="site directory (default: data_dir)")] = None,
    drop: Annotated[int, typer.Option(help="extend an existing site with data drop N")] = 0,
) -> None:
    """Simulate the default site of params.yaml (or extend it with data drop N)."""
    from releo.data.simulate import simulate_drop, simulate_site

    with stage("simulate"):
        p = load_params(params)
        target = out or p.data_dir
        if drop:
            simulate_drop(target, drop)
        else:
            simulate_site(p.site, target)
        typer.echo(f"site written to {target}")


@app.command("ensure-data")
def ensure_data_command(params: ParamsOption = DEFAULT_PARAMS) -> None:
    """Bring data/ into being: already there, DVC pull, or simulate the default site."""
    from releo.data.versioning import ensure_data

    with stage("ensure-data"):
        p = load_params(params)
        typer.echo(f"{p.data_dir}: {ensure_data(p.data_dir, p.site)}")


class Contract(StrEnum):
    s2 = "s2"
    s1 = "s1"
    reference = "reference"
    survey = "survey"
    pixel_table = "pixel-table"


@app.command()
def validate(
    contract: Annotated[Contract, typer.Argument(help="which data contract to check")],
    path: Annotated[Path, typer.Argument(help="the cube (Zarr/NetCDF) or table (CSV/Parquet)")],
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Run a Great Expectations gate on one file; exit 1 with the failures if it fails."""
    from releo import quality
    from releo.data.io import open_cube
    from releo.data.readers import read_field_survey, read_pixel_table, read_s2_l2a
    from releo.data.site import open_site

    with stage(f"validate {contract}"):
        root = load_params(params).quality.context_root if params.exists() else None
        if contract is Contract.s2:
            result = quality.check_s2_cube(read_s2_l2a(path), path, context_root=root)
        elif contract is Contract.s1:
            result = quality.check_s1_cube(open_cube(path), path, context_root=root)
        elif contract is Contract.reference:
            result = quality.check_reference_product(open_cube(path), path, context_root=root)
        elif contract is Contract.pixel_table:
            result = quality.check_pixel_table(read_pixel_table(path), path, context_root=root)
        else:
            site = open_site(load_params(params).data_dir)
            survey = read_field_survey(path, target_crs=site.crs)
            result = quality.check_field_survey(
                survey, path, site_bounds=site.bounds, period=site.period,
                site_crs=site.crs, context_root=root,
            )  # fmt: skip
        typer.echo(
            f"{path}: {contract} gate passed ({result.statistics}); docs: {result.docs_path}"
        )


if __name__ == "__main__":
    app()
