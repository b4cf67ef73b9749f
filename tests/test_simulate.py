"""The scene simulator: determinism, contracts, physical consistency, planted ODEs, drops."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from conftest import REPO, TINY_SITE, run
from releo.data.contracts import (
    INCIDENCE_RANGE,
    LAND_COVER_CLASSES,
    MASK_CLEAR,
    MASK_CLOUD,
    PIXEL_SIZE_M,
    S1_INCIDENCE,
    S1_ORBIT_DIRECTION,
    S1_POLARISATIONS,
    S1_RELATIVE_ORBIT,
    S2_ANGLES,
    S2_BANDS,
    S2_MASK,
    SURVEY_COLUMNS,
    VIEW_ZENITH_RANGE,
)
from releo.data.io import open_cube, read_table, write_cube
from releo.data.simulate import (
    SITE_FILES,
    Scene,
    SimulationConfig,
    simulate_drop,
    simulate_site,
)
from releo.data.simulate.clouds import cover_quantile
from releo.data.simulate.geometry import incidence_raster, s2_acquisitions, solar_position
from releo.data.simulate.s1 import noise_free_backscatter_db
from releo.data.simulate.s2 import quantise_l2a, zone_reflectance
from releo.physics import prosail_s2_bands

SMALL = SimulationConfig(
    width_m=300.0,
    height_m=300.0,
    start_date=date(2025, 4, 1),
    end_date=date(2025, 5, 30),
    mean_field_area_ha=1.0,
    drop_days=15,
)
"""A 30 × 30 px site over 60 days of spring: a few fields of every class, 12 S2 dates."""


def _load(root: Path) -> dict:
    cubes = {
        name: open_cube(root / SITE_FILES[name]) for name in ("s2", "s1", "reference", "truth")
    }
    cubes["meteo"] = read_table(root / SITE_FILES["meteo"])
    cubes["surveys"] = read_table(root / SITE_FILES["surveys"])
    cubes["meta"] = json.loads((root / SITE_FILES["metadata"]).read_text())
    return cubes


@pytest.fixture(scope="module")
def site_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("site")
    simulate_site(SMALL, root, progress=False)
    return root


@pytest.fixture(scope="module")
def site(site_dir: Path) -> dict:
    return _load(site_dir)


def test_deterministic_for_a_seed_and_different_across_seeds(site: dict, tmp_path: Path) -> None:
    simulate_site(SMALL, tmp_path / "again", progress=False)
    again = _load(tmp_path / "again")
    for name in ("s2", "s1", "reference", "truth"):
        xr.testing.assert_identical(site[name], again[name])
    pd.testing.assert_frame_equal(site["surveys"], again["surveys"])
    pd.testing.assert_frame_equal(site["meteo"], again["meteo"])

    simulate_site(SMALL.model_copy(update={"seed": 7}), tmp_path / "other", progress=False)
    other = _load(tmp_path / "other")
    assert not np.array_equal(site["s2"]["B04"].values, other["s2"]["B04"].values)
    assert not np.array_equal(site["s1"]["VV"].values, other["s1"]["VV"].values)
    assert not np.array_equal(site["truth"]["parcel_id"].values, other["truth"]["parcel_id"].values)


def test_cubes_follow_the_contracts(site: dict) -> None:
    s2, s1, ref, truth = site["s2"], site["s1"], site["reference"], site["truth"]
    for ds in (s2, s1, ref, truth):
        assert ds.rio.crs.to_epsg() == 32631
        assert ds.rio.resolution() == (PIXEL_SIZE_M, -PIXEL_SIZE_M)
        assert ds.sizes["y"] == ds.sizes["x"] == 30
    for ds in (s2, s1, ref):
        assert np.all(np.diff(ds["time"].values) > np.timedelta64(0))
    assert np.all(np.diff(s2["time"].values) == np.timedelta64(5, "D"))
    assert np.all(np.diff(s1["time"].values) == np.timedelta64(6, "D"))
    for band in S2_BANDS:
        assert s2[band].dims == ("time", "y", "x")
        assert float(s2[band].min()) >= 0.0 and float(s2[band].max()) <= 1.0
    assert set(np.unique(s2[S2_MASK].values)) <= {0, 1, 2}
    for angle in S2_ANGLES:
        assert s2[angle].dims == ("time",)
    assert float(s2["view_zenith"].max()) <= VIEW_ZENITH_RANGE[1]
    assert set(s2["platform"].values) == {"S2A", "S2B"}
    for pol in S1_POLARISATIONS:
        assert s1[pol].dims == ("time", "y", "x")
        assert np.isfinite(s1[pol].values).all()
    lo, hi = INCIDENCE_RANGE
    assert lo < float(s1[S1_INCIDENCE].min()) and float(s1[S1_INCIDENCE].max()) < hi
    assert set(s1[S1_ORBIT_DIRECTION].values) == {"ascending", "descending"}
    assert set(s1[S1_RELATIVE_ORBIT].values) == {30, 110}
    assert np.array_equal(ref["time"].values, s2["time"].values)
    assert truth.sizes["time"] == 60 and np.array_equal(truth["time_s2"].values, s2["time"].values)
    assert set(np.unique(truth["land_cover"].values)) == set(range(len(LAND_COVER_CLASSES)))
    meta = site["meta"]
    assert meta["crs"] == "EPSG:32631" and meta["period"] == {
        "start": "2025-04-01",
        "end": "2025-05-30",
    }
    assert len(meta["s2_acquisitions"]) == s2.sizes["time"]


def test_clear_sky_reflectance_is_prosail_of_the_truth_plus_noise(site: dict) -> None:
    s2, truth, meta = site["s2"], site["truth"], site["meta"]
    optical = next(e for e in meta["planted_equations"] if e["modality"] == "S2")
    amplitude = np.array([optical["band_amplitude"][b] for b in S2_BANDS])
    daily = truth.sel(time=s2["time"].values)
    clear = s2[S2_MASK].values == MASK_CLEAR
    shape = clear.shape

    def at_clear(values: np.ndarray, platform: str) -> torch.Tensor:
        """Values broadcast to (time, y, x), taken at the clear pixels of one platform."""
        on = clear & (s2["platform"].values == platform)[:, None, None]
        return torch.as_tensor(np.broadcast_to(values, shape)[on], dtype=torch.float32)

    model = np.zeros((*shape, len(S2_BANDS)))
    for platform in ("S2A", "S2B"):
        inputs = {v: truth[v].values for v in ("N", "cab", "car", "cant", "cbrown", "cw", "cm")}
        inputs["lai"] = daily["lai"].values
        inputs |= {v: truth[v].values for v in ("lidfa", "hspot")}
        inputs |= {
            "tts": s2["sun_zenith"].values[:, None, None],
            "tto": s2["view_zenith"].values[:, None, None],
            "psi": s2["relative_azimuth"].values[:, None, None],
            "psoil": truth["psoil"].values,
            "rsoil": truth["rsoil"].values,
        }
        with torch.no_grad():
            bands = prosail_s2_bands(
                *(at_clear(v, platform) for v in inputs.values()), platform=platform
            ).numpy()
        on = clear & (s2["platform"].values == platform)[:, None, None]
        model[on] = bands + daily["optical_effect"].values[on][:, None] * amplitude
    model = model[clear]
    observed = np.stack([s2[b].values[clear] for b in S2_BANDS], axis=-1)
    sigma = SMALL.s2_noise_absolute + SMALL.s2_noise_relative * model
    unclipped = observed > 0  # clipping at 0 truncates the noise of the darkest water pixels
    z = ((observed - model) / sigma)[unclipped]
    assert z.size > 10_000
    assert abs(z.mean()) < 0.05
    assert 0.95 < z.std() < 1.05


def test_cloud_fraction_matches_the_configured_cloudiness(tmp_path: Path) -> None:
    samples = cover_quantile(np.random.default_rng(0).random(200_000), 0.35)
    assert samples.mean() == pytest.approx(0.35, abs=0.005)
    year = SimulationConfig(
        width_m=100.0,
        height_m=100.0,
        start_date=date(2024, 1, 1),
        end_date=date(2025, 12, 31),
        survey_campaigns=0,
    )
    simulate_site(year, tmp_path, progress=False)
    mask = open_cube(tmp_path / SITE_FILES["s2"])[S2_MASK].values
    per_date = (mask == MASK_CLOUD).mean(axis=(1, 2))
    assert per_date.mean() == pytest.approx(0.35, abs=0.07)
    assert (
        (per_date == 0).any() and (per_date == 1).any() and ((per_date > 0) & (per_date < 1)).any()
    )


def test_s1_field_means_follow_the_wcm_of_the_truth(site: dict) -> None:
    s1, truth = site["s1"], site["truth"]
    at = truth.sel(time=s1["time"].values)
    land_cover = truth["land_cover"].values
    water = land_cover == LAND_COVER_CLASSES.index("water")
    ids, counts = np.unique(truth["parcel_id"].values[~water], return_counts=True)
    field = truth["parcel_id"].values == ids[np.argmax(counts)]
    assert field.sum() >= 80
    for pol in S1_POLARISATIONS:
        clean = noise_free_backscatter_db(
            at["lai"].values,
            at["soil_moisture"].values,
            s1[S1_INCIDENCE].values,
            np.broadcast_to(water, at["lai"].shape),
            at["sar_effect_db"].values,
            pol,
        )
        observed = 10 ** (s1[pol].values[:, field] / 10)
        model = 10 ** (clean[:, field] / 10)
        diff_db = 10 * np.log10(observed.mean(axis=1) / model.mean(axis=1))
        # std of a field mean of unit-mean gamma(ENL) speckle: 1/sqrt(ENL·n) ≈ 0.1 dB here
        assert np.abs(diff_db).max() < 0.6
        assert abs(diff_db.mean()) < 0.2


def test_soil_moisture_responds_to_rain(site: dict) -> None:
    truth, meteo = site["truth"], site["meteo"]
    rain = meteo["rainfall_mm"].to_numpy()
    land = truth["land_cover"].values != LAND_COVER_CLASSES.index("water")
    theta = truth["soil_moisture"].values[:, land]
    change = np.diff(theta, axis=0)
    wet, dry = rain[1:] >= 5.0, rain[1:] == 0.0
    assert wet.any() and dry.any()
    assert np.all(change[dry] <= 0)  # drydown towards the residual moisture
    assert np.all(change[wet] >= 0) and np.mean(change[wet] > 0) > 0.9  # capped at saturation
    assert theta.min() > 0.02 and theta.max() <= 0.5


def test_exclusive_effects_follow_their_recorded_odes(site: dict) -> None:
    truth, meteo, meta = site["truth"], site["meteo"], site["meta"]
    for equation in meta["planted_equations"]:
        state = truth[equation["state_variable"]].values.astype(float)
        drivers = {s: meteo[c].to_numpy(dtype=float) for s, c in equation["drivers"].items()}

        def rhs(x: float, day: int, equation: dict = equation, drivers: dict = drivers) -> float:
            total = 0.0
            for term in equation["terms"]:
                value = term["coefficient"]
                for symbol, power in term["factors"].items():
                    base = x if symbol == equation["state"] else drivers[symbol][day]
                    value *= base**power
                total += value
            return total

        # Independent check: RK4 with small steps, drivers constant over each day.
        steps, predicted = 50, []
        for day in range(1, state.size):
            x, h = state[day - 1], 1.0 / steps
            for _ in range(steps):
                k1 = rhs(x, day)
                k2 = rhs(x + h / 2 * k1, day)
                k3 = rhs(x + h / 2 * k2, day)
                k4 = rhs(x + h * k3, day)
                x += h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            predicted.append(x)
        np.testing.assert_allclose(predicted, state[1:], rtol=2e-4, atol=1e-5)
        assert np.ptp(state) > 0.05  # the effect moves, it is not a constant
        weights = truth[equation["susceptibility_variable"]].values
        per_pixel = truth[equation["pixel_variable"]].values
        np.testing.assert_allclose(per_pixel, state[:, None, None] * weights, rtol=2e-4, atol=1e-6)


def test_surveys_are_noisy_samples_of_the_true_lai(site: dict) -> None:
    surveys, truth, meta = site["surveys"], site["truth"], site["meta"]
    assert list(surveys.columns) == list(SURVEY_COLUMNS)
    assert surveys["campaign"].nunique() == SMALL.survey_campaigns
    assert (surveys.groupby("campaign").size() <= SMALL.survey_points).all()
    bounds = meta["bounds"]
    assert surveys["x"].between(bounds["xmin"], bounds["xmax"]).all()
    assert surveys["y"].between(bounds["ymin"], bounds["ymax"]).all()
    assert (surveys["crs"] == "EPSG:32631").all() and (surveys["lai"] >= 0).all()
    true_lai = (
        truth["lai"]
        .sel(
            time=xr.DataArray(surveys["date"].to_numpy()),
            x=xr.DataArray(surveys["x"].to_numpy()),
            y=xr.DataArray(surveys["y"].to_numpy()),
            method="nearest",
        )
        .values
    )
    methods = meta["observation_models"]["surveys"]
    bias = surveys["method"].map(lambda m: methods[m]["bias_factor"]).to_numpy()
    z = (surveys["lai"].to_numpy() - bias * true_lai) / surveys["lai_std"].to_numpy()
    assert len(z) >= 100
    assert abs(z.mean()) < 0.35 and 0.7 < z.std() < 1.3


def test_snap_reference_is_nan_exactly_under_clouds_shadows_and_output_flags(site: dict) -> None:
    lai, mask = site["reference"]["lai"].values, site["s2"][S2_MASK].values
    flagged = site["reference"]["output_flag"].values.astype(bool)
    assert np.array_equal(np.isnan(lai), (mask != MASK_CLEAR) | flagged)
    assert flagged.mean() < 0.05 and np.nanmin(lai) >= 0
    vegetated = np.isin(site["truth"]["land_cover"].values, [0, 1, 2, 3, 4])[None] & (mask == 0)
    true_lai = site["truth"]["lai"].sel(time=site["s2"]["time"].values).values
    assert np.corrcoef(lai[vegetated], true_lai[vegetated])[0, 1] > 0.8


def test_a_drop_extends_the_site_seamlessly(site_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "dropped"
    simulate_site(SMALL, root, progress=False)
    before = _load(root)
    with pytest.raises(ValueError, match="drop 2 cannot follow"):
        simulate_drop(root, 2, progress=False)
    meta = simulate_drop(root, 1, progress=False)
    assert simulate_drop(root, 1, progress=False) == meta  # re-applying is a no-op
    after = _load(root)
    end = np.datetime64("2025-05-30")
    assert meta["period"]["end"] == "2025-06-14" and meta["drops"][0]["drop"] == 1
    for name in ("s2", "s1", "reference", "truth"):
        old = after[name].sel(time=after[name]["time"] <= end)
        xr.testing.assert_equal(
            old.drop_dims("time_s2", errors="ignore"),
            before[name].drop_dims("time_s2", errors="ignore"),
        )
        assert after[name]["time"].values[-1] > end
    assert np.all(np.diff(after["s2"]["time"].values) == np.timedelta64(5, "D"))
    assert np.all(np.diff(after["truth"]["time"].values) == np.timedelta64(1, "D"))
    assert len(after["meteo"]) == 75 and after["meteo"]["date"].is_monotonic_increasing

    # The drop equals a direct simulation of the longer period: the dynamics continue.
    longer = SMALL.model_copy(update={"end_date": date(2025, 6, 14)})
    simulate_site(longer, tmp_path / "longer", progress=False)
    direct = _load(tmp_path / "longer")
    for name in ("s2", "s1", "reference"):
        xr.testing.assert_equal(after[name], direct[name])
    for var in ("lai", "soil_moisture", "optical_effect", "sar_effect_db", "cab", "psoil"):
        xr.testing.assert_equal(after["truth"][var], direct["truth"][var])
    pd.testing.assert_frame_equal(after["meteo"], direct["meteo"])


def test_geometry_sun_view_and_incidence() -> None:
    zenith, azimuth = solar_position(date(2025, 6, 21), 43.6, 12.0)
    assert zenith == pytest.approx(43.6 - 23.44, abs=0.3) and azimuth == pytest.approx(180, abs=1)
    zenith, azimuth = solar_position(date(2025, 6, 21), 43.6, 10.5)
    assert zenith > 20.2 and 90 < azimuth < 180  # mid-morning: south-east
    plan = s2_acquisitions(date(2025, 1, 1), 5, date(2025, 1, 1), date(2025, 12, 31), 43.6)
    assert len(plan) == 73 and plan["sun_zenith"].idxmin() in range(32, 36)  # near the solstice
    x = 360_005.0 + 10.0 * np.arange(200)
    y = 4_829_995.0 - 10.0 * np.arange(200)
    asc = incidence_raster(x, y, 41.0, 78.7, 693.0)
    desc = incidence_raster(x, y, 33.5, 281.3, 693.0)
    assert asc[0, -1] > asc[0, 0] and desc[0, 0] > desc[0, -1]  # far range east / west
    assert 0.05 < np.ptp(asc) < 0.3  # ~0.07°/km across a 2 km site


# --- Bit-identical sites on any machine ------------------------------------------------------

CHECKSUMS = Path(__file__).parent / "data" / "tiny_site_checksums.json"
"""md5 of every file of ``TINY_SITE`` simulated (DVC's file hashes) and the DVC directory hash."""

_SIMULATE = """
import json, sys
import torch
torch.set_num_threads(int(sys.argv[2]))
from releo.data.simulate import SimulationConfig, simulate_site
simulate_site(SimulationConfig(**json.loads(sys.argv[3])), sys.argv[1], progress=False)
"""


def _numpy_simd_targets() -> str:
    """numpy's runtime-dispatched SIMD targets (AVX2, AVX-512, ...): disabling them makes
    numpy run the kernels of a CPU without them."""
    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__
    except ImportError:  # private API: without it, this check runs the native kernels
        return ""
    return " ".join(__cpu_dispatch__)


CPU_VARIANTS: dict[str, dict[str, str]] = {
    # Distinct hash seeds too: no set or str-keyed dict order may reach the bytes.
    "one_thread": {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "1"},
    "two_threads": {"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2", "PYTHONHASHSEED": "2"},
    # Another CPU: torch's, numpy's and MKL's portable kernels instead of the AVX2/AVX-512 ones.
    "portable_kernels": {
        "OMP_NUM_THREADS": "1",
        "PYTHONHASHSEED": "3",
        "ATEN_CPU_CAPABILITY": "default",
        "NPY_DISABLE_CPU_FEATURES": _numpy_simd_targets(),
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
    },
}


def _file_md5s(root: Path) -> dict[str, str]:
    return {
        f.relative_to(root).as_posix(): hashlib.md5(f.read_bytes()).hexdigest()
        for f in sorted(root.rglob("*"))
        if f.is_file()
    }


def dvc_directory_md5(files: dict[str, str]) -> str:
    """DVC's hash of a directory (``md5`` of ``data.dvc``) from the md5 of each of its files:
    the md5 of the sorted JSON list of ``{"md5", "relpath"}`` entries, with ``.dir``."""
    entries = [{"md5": md5, "relpath": rel} for rel, md5 in sorted(files.items())]
    listing = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(listing).hexdigest() + ".dir"


def _environment() -> dict[str, str]:
    """Versions that define the bytes besides releo: codecs, Zarr writer, CRS WKT."""
    import numcodecs
    import pyproj
    import zarr

    return {
        "numpy": np.__version__,
        "torch": torch.__version__.split("+")[0],
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "xarray": xr.__version__,
        "pyproj": pyproj.__version__,
        "proj": pyproj.proj_version_str,
    }


@pytest.fixture(scope="module")
def tiny_sites(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """TINY_SITE simulated in a fresh interpreter under each of ``CPU_VARIANTS``."""
    root = tmp_path_factory.mktemp("tiny_sites")
    sites = {}
    for name, env in CPU_VARIANTS.items():
        threads = env["OMP_NUM_THREADS"]
        out = root / name
        run(
            [sys.executable, "-c", _SIMULATE, str(out), threads, json.dumps(TINY_SITE)],
            REPO,
            env=env,
        )
        sites[name] = out
    return sites


def test_site_bytes_do_not_depend_on_threads_or_cpu_kernels(tiny_sites: dict[str, Path]) -> None:
    reference = _file_md5s(tiny_sites["one_thread"])
    assert len(reference) > 100
    for name, root in tiny_sites.items():
        files = _file_md5s(root)
        differ = sorted(
            k for k in reference.keys() | files.keys() if reference.get(k) != files.get(k)
        )
        assert not differ, f"{name}: these files differ from the one-thread site: {differ}"


def test_a_site_made_in_small_blocks_has_the_same_bytes(
    tiny_sites: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large sites are made by bands of rows and written shard by shard from scratch files;
    that must not change a byte (the noise streams are drawn in the same order)."""
    from releo.data import spill

    monkeypatch.setattr(spill, "BLOCK_PIXELS", 7 * 30 + 5)  # 7 rows: the 30 do not divide
    monkeypatch.setattr(spill, "BLOCK_BYTES", 4096)  # dask blocks of a few rows
    simulate_site(SimulationConfig(**TINY_SITE), tmp_path / "blocks", progress=False)
    assert _file_md5s(tmp_path / "blocks") == _file_md5s(tiny_sites["one_thread"])


def test_tiny_site_matches_the_committed_checksums(tiny_sites: dict[str, Path]) -> None:
    """The tiny site's bytes are pinned; after a deliberate change of the simulator, rewrite
    the file with ``RELEO_UPDATE_SITE_CHECKSUMS=1`` and re-add the default site (data.dvc)."""
    files = _file_md5s(tiny_sites["one_thread"])
    current = {
        "site": TINY_SITE,
        "environment": _environment(),
        "dvc_md5": dvc_directory_md5(files),
        "nfiles": len(files),
        "size": sum(f.stat().st_size for f in tiny_sites["one_thread"].rglob("*") if f.is_file()),
        "files": files,
    }
    if os.environ.get("RELEO_UPDATE_SITE_CHECKSUMS"):
        CHECKSUMS.write_text(json.dumps(current, indent=1) + "\n")
    committed = json.loads(CHECKSUMS.read_text())
    assert committed["site"] == TINY_SITE, "TINY_SITE changed: update the checksums"
    differ = sorted(
        k
        for k in committed["files"].keys() | files.keys()
        if committed["files"].get(k) != files.get(k)
    )
    versions = {
        k: (committed["environment"].get(k), v)
        for k, v in current["environment"].items()
        if committed["environment"].get(k) != v
    }
    assert not differ, (
        f"the tiny site's bytes changed in {differ}; environment changes (committed, now): "
        f"{versions or 'none'}"
    )
    assert committed["dvc_md5"] == current["dvc_md5"]


def test_prosail_reflectance_does_not_depend_on_the_batch_size() -> None:
    scene = Scene.build(SMALL, SMALL.start_date)
    day = np.array([np.datetime64(SMALL.start_date)], dtype="datetime64[D]")
    canopy = scene.canopy(day)
    zones = np.arange(scene.parcels.n_zones)
    angles = (40.123, 5.5, 97.25)
    whole = zone_reflectance(canopy, 0, zones, angles, "S2A", batch_size=zones.size)
    for batch_size in (1, 7, 64):
        chunked = zone_reflectance(canopy, 0, zones, angles, "S2A", batch_size=batch_size)
        assert np.array_equal(whole, chunked), batch_size


def test_in_memory_reflectance_is_the_stored_one(tmp_path: Path) -> None:
    values = np.random.default_rng(1).uniform(0.0, 1.0, (3, 8, 8))
    values[0, 0, 0], values[0, 0, 1], values[1, 2, 3] = 0.0, 1.0, np.nan
    quantised = quantise_l2a(values)
    assert quantised.dtype == np.float32 and np.nanmax(np.abs(quantised - values)) <= 5.01e-5
    ds = xr.Dataset(
        {"B04": (("time", "y", "x"), quantised)},
        coords={
            "time": np.arange(3).astype("datetime64[D]").astype("datetime64[ns]"),
            "y": 4_830_000.0 - 10.0 * np.arange(8) - 5.0,
            "x": 360_000.0 + 10.0 * np.arange(8) + 5.0,
        },
    ).rio.write_crs("EPSG:32631")
    write_cube(ds, tmp_path / "s2.zarr")
    stored = open_cube(tmp_path / "s2.zarr")["B04"].values
    np.testing.assert_array_equal(stored, quantised)
    np.testing.assert_array_equal(quantise_l2a(quantised), quantised)


@pytest.mark.slow
def test_the_default_site_is_the_one_data_dvc_names(tmp_path):
    """A fresh clone simulates the default site (no DVC remote): its bytes must be the ones
    ``data.dvc`` records, or the main job rewrites ``data.dvc`` and reruns every stage."""
    import yaml

    run([sys.executable, "-m", "releo.cli", "simulate", "--out", str(tmp_path / "data")], REPO)
    files = _file_md5s(tmp_path / "data")
    recorded = yaml.safe_load((REPO / "data.dvc").read_text())["outs"][0]
    assert len(files) == recorded["nfiles"]
    assert dvc_directory_md5(files) == recorded["md5"]
