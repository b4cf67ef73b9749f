"""`releo site build`: real products → a site directory that passes every gate.

The real Belgian S2 + S1 series (``shared/data/real_timeseries``, MIT) are the inputs; the
readers of each format have their own tests (``test_sources_*.py``).
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REAL_SERIES, make_tiny_project, run, write_geotiff
from releo.data.build import build_site, build_time
from releo.data.contracts import MASK_CLEAR, S1_INCIDENCE, S2_MASK
from releo.data.errors import DataError
from releo.data.io import open_cube, write_cube, write_table
from releo.data.meteo import check_meteo, read_meteo
from releo.data.reference import snap_reference
from releo.data.site import open_site, validate_site

SITES = sorted(REAL_SERIES.glob("worldcereal_*"))


def sources(folder: Path) -> dict:
    """The build arguments of one Belgian site folder."""
    files = {f.name.split("_")[0]: f for f in folder.glob("*.nc")}
    return {
        "s2": sorted(folder.glob("S2_L2A_*.nc")),
        "s1": [files["S1"]],
        "meteo": files["AgERA5"],
        "s1_incidence": 39.0,
        "s2_platform": "S2A",
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "data"
    build_site(
        **sources(SITES[-1]), out=out, period=("2019-03-01", "2019-07-31"),
        context_root=out.parent / "gx",
    )  # fmt: skip
    return out


def test_a_real_site_builds_and_passes_every_gate(built):
    site = open_site(built)
    assert not site.has_truth
    assert site.metadata["kind"] == "real"
    assert site.metadata["s1_incidence"] == {"source": "user", "value_deg": 39.0}
    assert site.metadata["s2_platform_stated"] == "S2A"
    assert site.s2.sizes["y"] == site.s2.sizes["x"] == 64  # 640 m at 10 m
    assert np.array_equal(site.s1.x.values, site.s2.x.values)
    assert pd.Timestamp(site.s2.time.values.min()) >= pd.Timestamp("2019-03-01")
    assert pd.Timestamp(site.s2.time.values.max()) <= pd.Timestamp("2019-08-01")
    clear = site.s2[S2_MASK].values == MASK_CLEAR
    nir = site.s2["B08"].values[clear]
    assert 0.2 < np.median(nir) < 0.6  # real vegetated farmland in spring and summer
    assert float(site.s1[S1_INCIDENCE].max()) == float(site.s1[S1_INCIDENCE].min()) == 39.0
    snap = site.reference["lai"].values
    assert np.isfinite(snap[clear]).mean() > 0.95 and np.nanmax(snap) > 3.0
    # computed date by date into scratch files: SNAP of the site's S2 in memory
    np.testing.assert_array_equal(snap, snap_reference(site.s2.load())["lai"].values)
    assert not list(built.glob(".releo-scratch-*"))  # the scratch files are gone
    assert len(site.meteo) >= 150
    results = validate_site(site, context_root=built.parent / "gx")
    assert set(results) >= {"s2", "s1", "reference", "meteo"}


def test_the_other_belgian_site_builds_whole(tmp_path):
    """Every date of the real series, with snow, cloud edges marked clear and a village's
    double-bounce σ0 (+11 dB): valid real data passes the gates."""
    for folder in SITES[:-1]:
        record = build_site(**sources(folder), out=tmp_path / folder.name)
        assert record.s2.acquisitions == 118 and record.s1.acquisitions == 159


def test_site_build_cli_and_validate_site(tmp_path):
    args = sources(SITES[-1])
    out = tmp_path / "data"
    command = [sys.executable, "-m", "releo.cli", "site", "build", "--out", str(out)]
    command += [x for p in args["s2"] for x in ("--s2", str(p))]
    command += ["--s1", str(args["s1"][0]), "--meteo", str(args["meteo"])]
    command += ["--s1-incidence", "39", "--s2-platform", "S2A"]
    command += ["--period", "2019-05-01,2019-05-31", "--bbox", "574680,5621800,575000,5622120"]
    done = run(command, tmp_path)
    assert "site build: done" in done.stderr
    meta = json.loads((out / "site.json").read_text())
    assert meta["bounds"] == [574680.0, 5621800.0, 575000.0, 5622120.0]
    checked = run([sys.executable, "-m", "releo.cli", "validate", "site", str(out)], tmp_path)
    assert "site gates passed" in checked.stdout


def test_the_build_time_is_source_date_epoch_where_set(monkeypatch):
    """The pipeline's real_site stage sets it: the same products give the same site.json."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    assert build_time() == dt.datetime(1970, 1, 2, tzinfo=dt.UTC)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(ValueError, match="SOURCE_DATE_EPOCH='yesterday'"):
        build_time()
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert build_time() > dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def test_missing_statements_are_errors_not_guesses(tmp_path):
    args = sources(SITES[-1])
    with pytest.raises(DataError, match="incidence"):
        build_site(**{**args, "s1_incidence": None}, out=tmp_path / "a")
    with pytest.raises(DataError, match="--s2-platform"):
        build_site(**{**args, "s2_platform": None}, out=tmp_path / "b")
    with pytest.raises(DataError, match="outside"):
        build_site(**args, out=tmp_path / "c", bbox=(0.0, 0.0, 100.0, 100.0))
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_a_failed_build_keeps_the_previous_site(built, tmp_path):
    before = (built / "site.json").read_bytes()
    meteo = read_meteo(sources(SITES[-1])["meteo"])
    gappy = tmp_path / "meteo.csv"
    write_table(meteo.drop(index=[40, 41]), gappy)
    with pytest.raises(DataError, match="gaps"):
        build_site(
            **{**sources(SITES[-1]), "meteo": gappy}, out=built,
            period=("2019-03-01", "2019-07-31"),
        )  # fmt: skip
    assert (built / "site.json").read_bytes() == before


def test_site_gate_catches_parts_that_disagree(built, tmp_path):
    copy = tmp_path / "moved"
    shutil.copytree(built, copy)
    s1 = open_cube(built / "s1_grd.zarr")
    write_cube(s1.assign_coords(x=s1.x + 20.0), copy / "s1_grd.zarr")
    with pytest.raises(DataError, match=r"s1_grd.zarr: x grid"):
        validate_site(open_site(copy))
    write_cube(s1.rio.write_crs("EPSG:32632"), copy / "s1_grd.zarr")
    with pytest.raises(DataError, match=r"s1_grd.zarr: crs is EPSG:32632"):
        validate_site(open_site(copy))


def test_meteo_contract_names_column_and_day(tmp_path):
    table = read_meteo(sources(SITES[-1])["meteo"])
    table.loc[10, "rainfall_mm"] = np.nan
    with pytest.raises(DataError, match=r"m.csv: column 'rainfall_mm'.*2018-08-11"):
        check_meteo(table, "m.csv")


@pytest.mark.slow
def test_dvc_repro_runs_on_a_built_real_site(built, tmp_path):
    """The whole pipeline on a real site without truth or surveys (tiny budgets, 320 m
    chunks): it selects, scores and registers on SNAP, and discovers with the real meteo."""
    project = make_tiny_project(tmp_path / "project", data=built, chunk_m=320.0)
    done = run([sys.executable, "-m", "dvc", "repro"], project)
    for name in ("chunk", "train", "embed", "decode", "evaluate", "register"):
        assert f"Running stage '{name}'" in done.stdout
    metrics = {
        name: json.loads((project / "metrics" / f"{name}.json").read_text())
        for name in ("train", "evaluate", "register", "discover")
    }
    assert all(m["site_has_truth"] is False for m in metrics.values())
    assert metrics["train"]["select_metric"] == "val_truth_free_ratio"
    evaluated = metrics["evaluate"]  # scored against SNAP: no truth, no surveys
    assert evaluated["absent"] == ["truth", "field_surveys"] and evaluated["lai_rmse_snap"] > 0
    assert metrics["register"]["metric"] == "lai_rmse_snap"
    assert metrics["discover"]["skipped"] is None  # the AgERA5 meteo drives it
    assert (project / "products").is_dir()


def write_s1_files(folder: Path, crs: str, ul: tuple[float, float], size_m: float, days):
    """σ0 GeoTIFFs in linear power, 20 m, without metadata: the builder must be told."""
    n = int(size_m // 20)
    for i, day in enumerate(days):
        for pol, level in (("VV", 0.08), ("VH", 0.015)):
            data = np.full((n, n), level * (1 + 0.1 * i), dtype=np.float32)
            write_geotiff(folder / f"S1A_{day}T172233_{pol}.tif", data, crs, ul, 20.0, 0.0)
    return folder


S1_STATED = {"quantity": "sigma0", "units": "linear", "orbit_direction": "descending"}


def test_a_site_builds_from_a_local_stac_item_collection(tmp_path):
    from test_sources_stac import ES_0400, SIZE_M, bbox_of, dump, s2_item

    item = s2_item(tmp_path, ES_0400)
    bbox = bbox_of(item)
    crs = f"EPSG:{item['properties']['proj:epsg']}"
    s1 = write_s1_files(tmp_path / "s1", crs, (bbox[0], bbox[3]), SIZE_M, ["20220224", "20220302"])
    record = build_site(
        s2=[dump(tmp_path, [item])], s1=[s1], bbox=bbox, crs=crs, out=tmp_path / "data",
        s1_incidence=37.5, s1_stated=S1_STATED, context_root=tmp_path / "gx",
    )  # fmt: skip
    assert record.s2.reader == "stac" and record.s1.reader == "files"
    assert record.s1_stated == S1_STATED
    site = open_site(tmp_path / "data")
    # Earth Search 04.00 without the offset applied: (DN − 1000) / 10000
    clear = site.s2[S2_MASK].values == MASK_CLEAR
    np.testing.assert_allclose(site.s2["B03"].values[clear], (2100 - 1000) / 1e4, rtol=1e-6)
    np.testing.assert_allclose(site.s1["VV"].values[0], 10 * np.log10(0.08), rtol=1e-5)


def test_a_site_builds_from_a_safe_folder(tmp_path):
    from test_sources_safe import NODE_0509, REAL, _node_ul, _tile, make_safe

    product = "S2A_MSIL2A_20230625T234621_N0509_R073_T01WCS_20230626T022157.SAFE"
    tile_xml = f"{product}/GRANULE/L2A_T01WCS_A041826_20230625T234624/MTD_TL.xml"
    ul = _node_ul(Path(tile_xml), *NODE_0509)
    make_safe(tmp_path / "products", product, ul=ul, size_m=40)
    crs = _tile(REAL / tile_xml)["crs"]
    s1 = write_s1_files(tmp_path / "s1", str(crs), ul, 40.0, ["20230623", "20230629"])
    record = build_site(
        s2=[tmp_path / "products"], s1=[s1], out=tmp_path / "data", s1_incidence=41.0,
        s1_stated=S1_STATED, context_root=tmp_path / "gx",
    )  # fmt: skip
    assert record.s2.reader == "safe"
    assert record.s2.attrs["processing_baseline"] == ["05.09"]
    assert validate_site(open_site(tmp_path / "data"), context_root=tmp_path / "gx")


def test_a_site_builds_from_theia_folders(tmp_path):
    from test_sources_theia import NAME_A, NAME_B, NODE, ULX, ULY, make_theia

    for name in (NAME_A, NAME_B):
        make_theia(tmp_path / "theia", name)
    ul = (ULX + NODE[1] * 5000 - 40, ULY - NODE[0] * 5000 + 40)
    s1 = write_s1_files(tmp_path / "s1", "EPSG:32631", ul, 80.0, ["20230608", "20230614"])
    record = build_site(
        s2=[tmp_path / "theia"], s1=[s1], out=tmp_path / "data", s1_incidence=36.0,
        s1_stated=S1_STATED, context_root=tmp_path / "gx",
    )  # fmt: skip
    assert record.s2.reader == "theia" and record.s2.acquisitions == 2
    assert record.s2.attrs["reflectance"] == "FRE"
