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


@app.command()
def params(
    path: Annotated[Path, typer.Argument(help="params.yaml to read")] = DEFAULT_PARAMS,
    section: Annotated[
        str | None, typer.Option(help="only this section, e.g. train or products.decode")
    ] = None,
) -> None:
    """Print the effective configuration: every knob, its value and what it means."""
    from releo.config import described

    with stage("params"):
        rows = described(load_params(path))
        if section:
            rows = [r for r in rows if r[0] == section or r[0].startswith(f"{section}.")]
            if not rows:
                raise typer.BadParameter(f"{section!r}: no such section", param_hint="--section")
        width = max(len(key) for key, _, _ in rows)
        for key, value, meaning in rows:
            shown = "" if value == "" else f"= {value}"
            typer.echo(f"{key:<{width}} {shown:<24} {meaning}".rstrip())


site_app = typer.Typer(
    help="Sites from real products: build, and validate with `releo validate site`."
)
app.add_typer(site_app, name="site")


@site_app.command("build")
def site_build(
    s2: Annotated[
        list[Path],
        typer.Option(help="S2 L2A: a STAC ItemCollection JSON, SAFE or Theia folders, or cubes"),
    ],
    s1: Annotated[
        list[Path],
        typer.Option(help="S1 backscatter: a STAC ItemCollection JSON, GeoTIFFs or NetCDF"),
    ],
    out: Annotated[Path, typer.Option(help="site directory to write (replaced if present)")],
    bbox: Annotated[
        str | None, typer.Option(help="xmin,ymin,xmax,ymax in --crs (default: the S2 extent)")
    ] = None,
    period: Annotated[
        str | None, typer.Option(help="first,last day, e.g. 2024-03-01,2024-10-31 (default: all)")
    ] = None,
    crs: Annotated[
        str | None, typer.Option(help="site CRS, e.g. EPSG:32631 (default: the S2 products')")
    ] = None,
    surveys: Annotated[
        Path | None, typer.Option(help="field-survey table (any CRS; reprojected)")
    ] = None,
    meteo: Annotated[
        Path | None,
        typer.Option(help="daily drivers: a table (date, rainfall_mm, temperature_c) or AgERA5"),
    ] = None,
    s1_incidence: Annotated[
        float | None,
        typer.Option(help="incidence angle (degrees) of S1 products that carry none"),
    ] = None,
    s1_quantity: Annotated[
        str | None, typer.Option(help="sigma0 or gamma0, for S1 files that do not say it")
    ] = None,
    s1_units: Annotated[
        str | None, typer.Option(help="linear or dB, for S1 files that do not say it")
    ] = None,
    s1_orbit_direction: Annotated[
        str | None, typer.Option(help="ascending or descending, for S1 files that do not say it")
    ] = None,
    s1_relative_orbit: Annotated[
        int | None, typer.Option(help="relative orbit (1-175) of S1 files that do not say it")
    ] = None,
    s2_platform: Annotated[
        str | None, typer.Option(help="platform (S2A/S2B) of S2 products that do not say it")
    ] = None,
    name: Annotated[str | None, typer.Option(help="site name (default: the folder's)")] = None,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Turn real S2 and S1 products into a site directory that passes every gate.

    Writes the S2 and S1 contract cubes, the SNAP LAI reference, the surveys and meteo when
    given, and site.json (sources, product ids, conversions, stated values). Version it with
    `dvc add OUT`; `dvc repro` then runs on it (params.yaml: data_dir).
    """
    from releo.data.build import build_site

    with stage("site build"):
        window = _csv(period, str, "--period")
        if window is not None and len(window) != 2:
            raise typer.BadParameter(f"{period!r}: give first,last", param_hint="--period")
        box = _csv(bbox, float, "--bbox")
        if box is not None and len(box) != 4:
            raise typer.BadParameter(f"{bbox!r}: give xmin,ymin,xmax,ymax", param_hint="--bbox")
        root = load_params(params).quality.context_root if params.exists() else None
        record = build_site(
            s2=s2, s1=s1, out=out, bbox=tuple(box) if box else None,
            period=tuple(window) if window else None, crs=crs, surveys=surveys, meteo=meteo,
            s1_incidence=s1_incidence, s2_platform=s2_platform, name=name, context_root=root,
            s1_stated={
                "quantity": s1_quantity, "units": s1_units,
                "orbit_direction": s1_orbit_direction, "relative_orbit": s1_relative_orbit,
            },
            progress=lambda msg: typer.echo(f"  {msg}", err=True),
        )  # fmt: skip
        typer.echo(
            f"{out}: site {record.name!r} in {record.crs}, {record.s2.acquisitions} S2 and "
            f"{record.s1.acquisitions} S1 dates, {record.period.start}..{record.period.end}"
        )


class Contract(StrEnum):
    """A data contract ``releo validate`` checks a file against."""

    s2 = "s2"
    s1 = "s1"
    reference = "reference"
    survey = "survey"
    pixel_table = "pixel-table"
    meteo = "meteo"
    site = "site"


@app.command()
def validate(
    contract: Annotated[Contract, typer.Argument(help="which data contract to check")],
    path: Annotated[
        Path, typer.Argument(help="the cube (Zarr/NetCDF), table (CSV/Parquet) or site directory")
    ],
    params: ParamsOption = DEFAULT_PARAMS,
    date_format: Annotated[
        str | None,
        typer.Option(help="how a table writes its dates, e.g. %d/%m/%Y (day/month is not guessed)"),
    ] = None,
) -> None:
    """Run a Great Expectations gate on one file; exit 1 with the failures if it fails."""
    from releo import quality
    from releo.data.io import open_cube
    from releo.data.meteo import check_meteo, read_meteo
    from releo.data.readers import read_field_survey, read_pixel_table, read_s2_l2a
    from releo.data.site import open_site, validate_site

    with stage(f"validate {contract}"):
        root = load_params(params).quality.context_root if params.exists() else None
        if contract is Contract.s2:
            result = quality.check_s2_cube(read_s2_l2a(path), path, context_root=root)
        elif contract is Contract.s1:
            result = quality.check_s1_cube(open_cube(path), path, context_root=root)
        elif contract is Contract.reference:
            result = quality.check_reference_product(open_cube(path), path, context_root=root)
        elif contract is Contract.pixel_table:
            table = read_pixel_table(path, date_format=date_format)
            result = quality.check_pixel_table(table, path, context_root=root)
        elif contract is Contract.site:
            results = validate_site(open_site(path), context_root=root)
            typer.echo(f"{path}: site gates passed ({', '.join(results)})")
            return
        elif contract is Contract.meteo:
            table = check_meteo(read_meteo(path), path)
            typer.echo(f"{path}: meteo contract holds ({len(table)} days)")
            return
        else:
            site = open_site(load_params(params).data_dir)
            survey = read_field_survey(path, target_crs=site.crs, date_format=date_format)
            result = quality.check_field_survey(
                survey, path, site_bounds=site.bounds, period=site.period,
                site_crs=site.crs, context_root=root,
            )  # fmt: skip
        typer.echo(
            f"{path}: {contract} gate passed ({result.statistics}); docs: {result.docs_path}"
        )


@app.command()
def retrain(
    drop: Annotated[int, typer.Option(help="simulate data drop N first and `dvc add` it")] = 0,
    pull: Annotated[bool, typer.Option(help="`dvc pull` data and stage outputs first")] = False,
    push: Annotated[bool, typer.Option(help="`dvc push` data and outputs at the end")] = False,
    rev: Annotated[str, typer.Option(help="git revision the metrics/plots diffs compare to")] = (
        "HEAD"
    ),
    summary: Annotated[
        Path | None, typer.Option(help="append the Markdown summary to this file")
    ] = None,
) -> None:
    """Retrain on new data: (drop) → dvc repro → registry decision → metrics and plots diff."""
    from releo.ops.retrain import RetrainError, summary_markdown
    from releo.ops.retrain import retrain as run_retrain

    with stage("retrain"):
        try:
            report = run_retrain(Path("."), drop=drop, pull=pull, push=push, rev=rev)
        except RetrainError as err:
            typer.echo(f"releo retrain: FAILED\n{err}", err=True)
            raise typer.Exit(1) from err
        text = summary_markdown(report)
        typer.echo(text)
        if summary is not None:  # e.g. $GITHUB_STEP_SUMMARY
            with summary.open("a", encoding="utf-8") as out:
                out.write(text)


@app.command()
def ui(
    host: Annotated[str, typer.Option(help="interface to bind (0.0.0.0: all)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port of the UI")] = 5000,
    workers: Annotated[int, typer.Option(help="server worker processes")] = 1,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Serve the MLflow UI on the project's tracking store (mlruns/mlflow.db by default)."""
    import os

    from releo.config import ParamsError
    from releo.ops.ui import RemoteStoreError, server_command
    from releo.tracking.config import TrackingConfig

    try:
        tracking = load_params(params).tracking if params.exists() else TrackingConfig()
        command = server_command(tracking, Path("."), host=host, port=port, workers=workers)
    except (ParamsError, RemoteStoreError) as err:
        typer.echo(f"releo ui: {err}", err=True)
        raise typer.Exit(1) from err
    store = command[command.index("--backend-store-uri") + 1]
    typer.echo(f"MLflow UI on http://{host}:{port} (store: {store})", err=True)
    # MLflow's job runner (GenAI judges, 8 worker processes) is of no use here: off by default.
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **os.environ}
    os.execve(command[0], command, env)


def _csv(value: str | None, kind: type, name: str) -> list | None:
    if value is None:
        return None
    try:
        return [kind(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError as err:
        raise typer.BadParameter(f"{value!r}: {err}", param_hint=name) from err


@app.command()
def decode(
    out: Annotated[Path, typer.Argument(help="product folder to write (replaced if present)")],
    dates: Annotated[
        str | None, typer.Option(help="comma-separated days, e.g. 2025-05-15,2025-06-15")
    ] = None,
    start: Annotated[str | None, typer.Option(help="first day (default: start of data)")] = None,
    end: Annotated[str | None, typer.Option(help="last day (default: end of data)")] = None,
    every: Annotated[int | None, typer.Option(help="days between dates (7: weekly)")] = None,
    resolution: Annotated[float | None, typer.Option(help="pixel size, m")] = None,
    bounds: Annotated[
        str | None, typer.Option(help="xmin,ymin,xmax,ymax in the site CRS (default: all)")
    ] = None,
    embeddings: Annotated[Path, typer.Option(help="embeddings cube")] = Path(
        "embeddings/embeddings.zarr"
    ),
    model: Annotated[Path, typer.Option(help="trained model")] = Path("models/model.pt"),
    calibration: Annotated[
        Path | None,
        typer.Option(help="LAI calibration (default: calibration/lai.json when present)"),
    ] = None,
    geotiff: Annotated[bool, typer.Option(help="a GeoTIFF per date")] = True,
    quicklooks: Annotated[bool, typer.Option(help="a PNG per date")] = True,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Decode LAI from chunk embeddings alone on any area, dates and resolution.

    Unset options come from params.yaml (products.decode). Writes OUT/lai.zarr (lai, lai_std,
    lai_low, lai_high), OUT/geotiff/, OUT/quicklooks/ and OUT/overview.png.
    """
    from releo.products.decode import LaiCalibration
    from releo.products.regions import decode_request
    from releo.stages.calibrate import CALIBRATION

    overrides = {
        "dates": _csv(dates, str, "--dates"),
        "start": start,
        "end": end,
        "step_days": every,
        "resolution_m": resolution,
        "bounds": _csv(bounds, float, "--bounds"),
        "geotiff": geotiff,
        "quicklooks": quicklooks,
    }
    with stage("decode"):
        base = load_params(params).products.decode if params.exists() else None
        if calibration is None and CALIBRATION.exists():
            calibration = CALIBRATION
        summary = decode_request(
            base, overrides, embeddings, model, out, LaiCalibration.load(calibration)
        )
        typer.echo(
            f"{out}: {summary['dates']} date(s) {summary['first_date']}..{summary['last_date']} "
            f"on {summary['grid']['ny']}x{summary['grid']['nx']} px at "
            f"{summary['grid']['resolution_m']:g} m, {summary['valid_fraction']:.1%} decoded"
        )


@app.command()
def lai(
    table: Annotated[Path, typer.Argument(help="pixel time-series table (CSV/Parquet)")],
    out: Annotated[
        Path | None, typer.Option(help="output table (default: <table stem>_lai.<ext>)")
    ] = None,
    columns: Annotated[
        Path | None,
        typer.Option(help="YAML/JSON mapping of canonical names to the table's columns"),
    ] = None,
    fine_tune_epochs: Annotated[
        int, typer.Option(min=0, help="self-supervised epochs on the table's own series first")
    ] = 0,
    model: Annotated[
        Path, typer.Option(help="trained chunk model, or a per-pixel inversion model file")
    ] = Path("models/model.pt"),
    window_days: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="deprecated: the series is read in the model's windows (params.yaml "
            "chunks.days); N overrides them with windows the model was not trained on",
        ),
    ] = None,
    lr: Annotated[float, typer.Option(min=0.0, help="fine-tuning learning rate")] = 3e-4,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """LAI (and its σ) at every row of a pixel time-series table, from each point's series.

    Each point's series is read as the model's chunks: windows of the model's chunk days
    (params.yaml chunks.days, 10) counted from the table's first date, each with the model's
    context (model.context_days of acquisitions either side); every row, cloudy rows and
    requested dates (empty bands, cloud_mask 1) included, gets the LAI of its window at its
    date. Writes the table back with `lai` and `lai_std` columns. See README: pixel tables.
    """
    from releo.products.pixel_table import run_lai

    with stage("lai"):
        loaded = load_params(params) if params.exists() else None
        root = loaded.quality.context_root if loaded is not None else None
        chunk_days = loaded.chunks.days if loaded is not None else None
        if window_days is not None:
            typer.echo(
                "--window-days is deprecated: releo lai reads each series in the model's "
                f"windows (params.yaml chunks.days) with its context; {window_days}-day "
                "windows are read as asked",
                err=True,
            )
        summary = run_lai(
            table, out, columns=columns, model_path=model, fine_tune_epochs=fine_tune_epochs,
            lr=lr, window_days=window_days, chunk_days=chunk_days, context_root=root,
            progress=True, log=typer.echo,
        )  # fmt: skip
        read = (
            f"; {summary['window_days']}-day windows, ±{summary['context_days']} days of context"
            if summary["window_days"] is not None
            else ""
        )
        typer.echo(
            f"{summary['out']}: LAI at {summary['lai_rows']} of {summary['rows']} rows of "
            f"{summary['points']} points ({summary['clear_s2_rows']} clear S2, "
            f"{summary['s1_rows']} S1{read}) in {summary['seconds']:g} s"
        )


if __name__ == "__main__":
    app()
