"""The gates, embed, decode and evaluate as Ray tasks (blocks of dates; regions of the output
cubes; blocks of the site), on a local 2-worker Ray: the same values as one process, bit for
bit, whatever the regions, and a task whose worker dies is rerun."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
import ray
import torch

from releo.config import ChunkConfig, Params
from releo.data.chunks import INDEX, ChunkDataset, chunk_index
from releo.data.io import open_cube, write_table
from releo.data.simulate import SimulationConfig, simulate_site
from releo.data.site import open_site
from releo.distributed import FAIL_ONCE_ENV, ray_session, regions
from releo.models import build_model
from releo.models.distributions import BoundedNormal
from releo.products.config import DecodeConfig, EmbedConfig, ProductsConfig
from releo.products.decode import LAI_VARIABLES, LaiCalibration, decode_grid, decode_lai
from releo.products.embed import embeddings_cube, encode_chunks, load_autoencoder
from releo.products.grid import ChunkLayout, Grid
from releo.products.regions import (
    LAI_CUBE_NAME,
    decode_to_folder,
    embeddings_under,
    held_out_by_regions,
    request_dates,
)
from releo.stages.embed import EMBEDDINGS, run_embed
from releo.stages.train import MODEL
from test_products import TINY

SITE = SimulationConfig(
    width_m=200, height_m=200, start_date=date(2025, 5, 1), end_date=date(2025, 6, 9),
    survey_campaigns=1, survey_points=4,
)  # fmt: skip
CALIBRATION = LaiCalibration(spread_scale=1.3, detection_limit=0.1)
DECODE = DecodeConfig(step_days=3, geotiff=False, quicklooks=False, overview_panels=2)


def test_regions_tile_the_shape():
    tiles = regions((5, 3), (2, 2))
    assert len(tiles) == 6 and tiles[-1] == (slice(4, 5), slice(2, 3))
    covered = np.zeros((5, 3), int)
    for t in tiles:
        covered[t] += 1
    assert (covered == 1).all()


def test_ray_session_is_quiet_and_shut_down(capfd):
    assert not ray.is_initialized()
    with ray_session(2):
        assert ray.cluster_resources()["CPU"] == 2
    assert not ray.is_initialized()
    out, err = capfd.readouterr()
    assert "INFO" not in err + out and "WARNING" not in err + out, err + out


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A tiny site (2 x 2 chunks, 4 windows), its index and an untrained tiny model; a local
    Ray of 2 CPUs that the stages join (and leave running)."""
    root = tmp_path_factory.mktemp("distributed")
    simulate_site(SITE, root / "data", progress=False)
    site = open_site(root / "data")
    index = chunk_index(
        site.s2, site.s1, size_m=100.0, days=10, split={"train": 2, "val": 1, "test": 1}
    )
    write_table(index, root / INDEX)
    torch.manual_seed(0)
    (root / MODEL).parent.mkdir()
    torch.save(
        {"model": build_model(TINY).state_dict(), "config": TINY.model_dump(), "weights": {}},
        root / MODEL,
    )
    with ray_session(2):
        yield root


def params_for(root, refine_steps: int = 0) -> Params:
    return Params(
        data_dir=root / "data",
        site=SITE,
        chunks=ChunkConfig(size_m=100.0),
        quality={"context_root": root / "gx"},
        model=TINY,
        products=ProductsConfig(
            embed=EmbedConfig(workers=2, refine_steps=refine_steps), decode=DECODE
        ),
    )


@pytest.mark.parametrize("refine_steps", [0, 2])
def test_embed_on_two_workers_is_the_one_process_cube_bit_for_bit(project, refine_steps):
    """The encoder's embeddings bit for bit. Refined ones to rounding: each chunk is refined
    alone, but from its encoder embedding, whose last bits depend on the batch (Adam's
    normalised first steps carry them further; a trained model's decoded LAI logits move
    by ~5e-4 for a 1e-7 change of z)."""
    params = params_for(project, refine_steps)
    metrics = run_embed(params, project, region=(1, 1, 2))  # 1 window, 1 row
    index = pd.read_parquet(project / INDEX)
    assert metrics["tasks"] == index.window.nunique() * 2 and metrics["chunks"] == len(index)
    cube = open_cube(project / EMBEDDINGS)
    # one process, every chunk in one loader (batches of 8 mixing windows and places)
    model, _ = load_autoencoder(project / MODEL)
    site = open_site(project / "data")
    embed = params.products.embed
    refine = {"refine_steps": refine_steps, "refine_lr": embed.refine_lr}
    refine["refine_terms"] = embed.refine_terms
    z = encode_chunks(model, ChunkDataset(site.s2, site.s1, index, context_days=10), 8, **refine)
    pixel = float(site.s2.x.values[1] - site.s2.x.values[0])
    alone = embeddings_cube(
        z, index, crs=site.crs, pixel_size_m=pixel, chunk_days=10, dtype="float16"
    )
    assert cube["embedding"].dtype == np.float16
    tolerance = {"atol": 2e-3, "rtol": 0} if refine_steps else {"atol": 0, "rtol": 0}
    np.testing.assert_allclose(cube["embedding"].values, alone["embedding"].values, **tolerance)
    for name in ("n_s2", "n_s1", "s2_clear_fraction", "split", "x", "y", "time"):
        np.testing.assert_array_equal(cube[name].values, alone[name].values)
    assert cube.rio.crs == alone.rio.crs and cube.attrs["chunk_x_min"] == alone.attrs["chunk_x_min"]
    stored = cube["embedding"].values[index.window, index.row, index.col].astype(np.float32)
    if not refine_steps:
        assert metrics["quantisation_max_abs_error"] == float(np.abs(stored - z).max())


def test_the_gates_on_two_workers_reduce_as_one_process(project, monkeypatch):
    """Several blocks of dates of a stored cube are Ray tasks reading it by path; their
    statistics are the one-process ones, value for value."""
    from releo.data import spill
    from releo.quality import summaries
    from releo.quality.specs import S1_CUBE, S2_CUBE

    site = open_site(project / "data", lazy=True)
    assert site.lazy and not open_site(project / "data").lazy
    monkeypatch.setattr(spill, "BLOCK_VALUES", 3 * 20 * 20)  # 3 dates per block
    ran = []

    def counted(fn, tasks, **kwargs):
        ran.append(len(tasks))
        return map_tasks(fn, tasks, **kwargs)

    map_tasks = summaries.map_tasks
    monkeypatch.setattr(summaries, "map_tasks", counted)
    for ds, spec, part in ((site.s2, S2_CUBE, "s2"), (site.s1, S1_CUBE, "s1")):
        assert len(spill.date_blocks(ds.sizes["time"], 20 * 20)) > 2
        tasks = summaries.cube_tables(ds, spec, str(site.path(part)))
        alone = summaries.cube_tables(ds, spec)
        assert tasks.keys() == alone.keys()
        for name, table in alone.items():
            pd.testing.assert_frame_equal(tasks[name], table, obj=f"{part} {name}")
    assert len(ran) == 2 and min(ran) > 2  # S2's and S1's blocks went to Ray


def one_process_lai(root, compiled=False):
    embeddings = open_cube(root / EMBEDDINGS)
    model, _ = load_autoencoder(root / MODEL)
    layout = ChunkLayout.from_embeddings(embeddings)
    grid = Grid.from_bounds(layout.bounds, DECODE.resolution_m, layout.crs)
    dates = request_dates(DECODE, layout, embeddings.attrs)
    return decode_grid(model, embeddings, grid, dates, calibration=CALIBRATION, compiled=compiled)


def test_decode_on_two_workers_is_the_one_process_product_bit_for_bit(project):
    if not (project / EMBEDDINGS).exists():
        run_embed(params_for(project), project)
    target = project / "products"
    # regions that cut through chunks and windows: 3 dates x 7 x 13 px
    metrics = decode_to_folder(
        DECODE, project / EMBEDDINGS, project / MODEL, target, CALIBRATION, region=(3, 7, 13)
    )
    lai = open_cube(target / LAI_CUBE_NAME)
    alone = one_process_lai(project)
    assert metrics["tasks"] == len(regions(alone["lai"].shape, (3, 7, 13))) > 2
    for name in LAI_VARIABLES:
        np.testing.assert_array_equal(lai[name].values, alone[name].values)
    assert np.isfinite(lai["lai"].values).all() and metrics["valid_fraction"] == 1.0
    assert lai.rio.crs == alone.rio.crs and lai.attrs == {
        k: v for k, v in alone.attrs.items() if k in lai.attrs
    }
    assert (target / "overview.png").is_file()


def test_a_decode_task_reads_only_the_embeddings_under_its_region(project):
    """A task decodes from the part of the cube under its region, at dates that run past the
    data and over bounds that reach beyond the site, and gets the whole cube's values."""
    if not (project / EMBEDDINGS).exists():
        run_embed(params_for(project), project)
    embeddings = open_cube(project / EMBEDDINGS)
    model, _ = load_autoencoder(project / MODEL)
    layout = ChunkLayout.from_embeddings(embeddings)
    xmin, ymin, xmax, ymax = layout.bounds
    grid = Grid.from_bounds((xmin + 130, ymin - 50, xmax + 40, ymax - 20), 10.0, layout.crs)
    first, last = layout.period
    dates = pd.date_range(first + pd.Timedelta(days=21), last + pd.Timedelta(days=5), freq="4D")
    part = embeddings_under(embeddings, grid.x, grid.y, dates)
    assert part.sizes["x"] == 1 and part.sizes["y"] == 2  # east column, both rows
    assert 1 <= part.sizes["time"] < embeddings.sizes["time"]
    whole = decode_grid(model, embeddings, grid, dates, calibration=CALIBRATION)
    cut = decode_grid(model, part, grid, dates, calibration=CALIBRATION)
    for name in LAI_VARIABLES:
        np.testing.assert_array_equal(cut[name].values, whole[name].values)
    assert np.isnan(whole["lai"].values).any() and np.isfinite(whole["lai"].values).any()


def test_evaluate_on_two_workers_scores_as_one_process(project):
    """The held-out estimates of blocks of single chunks (Ray tasks, each reading only its part
    of the stores) are the one-process ones, baseline included; so are the stage's metrics."""
    from dataclasses import fields

    from releo.models.pixel import BaselineConfig, PixelInversion
    from releo.products.evaluate import held_out_estimates, scored_truth
    from releo.stages.evaluate import run_evaluate

    if not (project / EMBEDDINGS).exists():
        run_embed(params_for(project), project)
    torch.manual_seed(1)
    baseline = PixelInversion(BaselineConfig()).eval()
    pixels = np.zeros((20, 20), bool)
    pixels[3:17:2, 1:19:3] = True  # in all four chunks of 10 x 10 px
    pixels[12, 12] = False
    paths = (project / "data", project / MODEL, project / EMBEDDINGS)
    tasks = held_out_by_regions(
        *paths, pixels, 10, interval=0.8, baseline=baseline, calibration=CALIBRATION,
        workers=2, region=(1, 1),
    )  # fmt: skip
    site = open_site(project / "data")
    truth = scored_truth(open_cube(site.path("truth")))
    model, _ = load_autoencoder(project / MODEL)
    alone = held_out_estimates(
        model, open_cube(project / EMBEDDINGS), site, truth, *np.nonzero(pixels),
        interval=0.8, baseline=baseline, calibration=CALIBRATION,
    )  # fmt: skip
    assert np.isfinite(alone.baseline).any() and np.isfinite(alone.lai).all()
    for field in fields(alone):
        value, expected = getattr(tasks, field.name), getattr(alone, field.name)
        np.testing.assert_array_equal(np.asarray(value), np.asarray(expected), err_msg=field.name)
    params = params_for(project)
    metrics = [run_evaluate(params, project, baseline, region=r) for r in ((1, 1), (2, 2))]
    assert metrics[0] == metrics[1] and metrics[0]["baseline_lai_rmse_truth"] is not None


def test_a_task_whose_worker_dies_is_rerun_and_the_product_is_complete(
    project, tmp_path, monkeypatch
):
    if not (project / EMBEDDINGS).exists():
        run_embed(params_for(project), project)
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAIL_ONCE_ENV, str(marker))
    target = tmp_path / "products"
    decode_to_folder(
        DECODE, project / EMBEDDINGS, project / MODEL, target, CALIBRATION, region=(4, 20, 10),
        compile_from=0,  # compiled in the workers, as large requests are
    )  # fmt: skip
    assert marker.exists()  # one task's first attempt killed its worker (os._exit)
    lai = open_cube(target / LAI_CUBE_NAME)
    alone = one_process_lai(project, compiled=True)
    for name in LAI_VARIABLES:
        np.testing.assert_array_equal(lai[name].values, alone[name].values)


@pytest.mark.parametrize("compiled", [False, True])
def test_the_lai_only_decoder_is_the_model_decoder_to_rounding(compiled):
    torch.manual_seed(1)
    # no hybrid teacher: it plays no part in decoding, and its init would move the draws below
    model = build_model(TINY.model_copy(update={"hybrid_prior": None})).eval()
    with torch.no_grad():  # away from the initial heads (small last-layer weights)
        for p in model.decoder.parameters():
            p.add_(0.5 * torch.randn_like(p))
    z = torch.randn(3, TINY.embedding_dim)
    u, v = torch.rand(3, 500), torch.rand(3, 500)
    doy = torch.tensor([[100.0], [101.0], [250.5]]).expand(3, 500)  # whole and fractional days
    cal = LaiCalibration(spread_scale=1.3, detection_limit=2.0)  # censors some values
    got = decode_lai(model, z, u, v, doy, calibration=cal, compiled=compiled)
    with torch.no_grad():
        lai = model.decode(z, u, v, doy)["lai"]
    # the model's distribution, its statistics in float64: BoundedNormal's float32 stddev
    # (E[x^2] - E[x]^2) loses ~0.004 near LAI 10, where the LAI-only path's (about the median)
    # does not
    dist = cal.widen(BoundedNormal(lai.loc.double(), lai.scale.double(), lai.low, lai.high))
    want = {
        "lai": cal.censor(dist.mean),
        "lai_std": dist.stddev,
        "lai_low": cal.censor(dist.icdf(0.05)),
        "lai_high": cal.censor(dist.icdf(0.95)),
    }
    assert float(want["lai"].std()) > 0.1  # a spread of values, some censored to 0
    assert (want["lai_low"] == 0).any() and (want["lai_low"] > 0).any()
    for k in LAI_VARIABLES:
        # float32 rounding: cdist's matrix-product distances vs coordinate-wise ones, the
        # first layer summed in parts; amplified by the softmax cells and the logit map
        torch.testing.assert_close(got[k].double(), want[k], atol=1e-4, rtol=1e-4)
    # batch independence: one embedding's queries alone give the same bits
    alone = decode_lai(
        model, z[1:2], u[1:2, 7:300], v[1:2, 7:300], doy[1:2, 7:300],
        calibration=cal, compiled=compiled,
    )  # fmt: skip
    for k in LAI_VARIABLES:
        assert torch.equal(alone[k][0], got[k][1, 7:300])
