"""The physics autoencoder and its training loop, on a tiny simulated site (fast)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812 (the torch idiom)
from torch.utils.data import DataLoader, Subset

from releo.data.chunks import collate_chunks, window_only
from releo.models import VARIABLE_RANGES, BoundedNormal, LossWeights, ModelConfig, build_model
from releo.models.decoder import LOGIT_BOUND, spectral_basis
from releo.models.forward import s1_backscatter_db, s2_noise_sigma, s2_reflectance
from releo.models.hybrid import fit_hybrid, simulated_spectra
from releo.models.synthetic import snap_training_draws, synthetic_chunks
from releo.physics import PARAMETER_RANGES
from releo.train.loop import (
    evaluate,
    fit,
    make_datasets,
    site_train_dataset,
    train_one_epoch,
)

TINY = ModelConfig(
    embedding_dim=32,
    residual_dim=4,
    pixel_width=8,
    attention_heads=2,
    conv_width=8,
    latent_grid=2,
    field_slots=4,
    slot_features=2,
    detail_channels=4,
    hidden_width=32,
    query_pixels=8,
    fused_prosail=False,  # the compiled kernel takes ~1 min to build: not for unit tests
    hybrid_samples=2000,  # the hybrid teacher: a quick rough fit (the pipeline: 200,000)
    hybrid_steps=50,
)
REQUIRED = ("lai", "cab", "cw", "cm", "lidfa", "psoil", "rsoil", "soil_moisture")


@pytest.fixture(scope="module")
def site(small_site):
    return small_site


@pytest.fixture(scope="module")
def datasets(site):
    return make_datasets(*site)


@pytest.fixture
def batch(datasets):
    return collate_chunks([datasets["train"][i] for i in (1, 2)])


def model(seed: int = 0, cfg: ModelConfig = TINY):
    torch.manual_seed(seed)
    return build_model(cfg)


def test_encode_decode_shapes_and_physical_ranges(batch):
    m = model()
    z, detail = m.encode_with_detail(batch)
    assert z.shape == (2, TINY.embedding_dim) and torch.isfinite(z).all()
    # A 10 x 10 px grid at every day of the window: between acquisitions and under clouds.
    pix = (torch.arange(10) + 0.5) / 10
    y, x = torch.meshgrid(pix, pix, indexing="ij")
    days = batch["window_doy"][:, :1] + torch.arange(10.0)
    for ctx in (detail, None):
        out = m.decode(z, x[None, None], y[None, None], days[:, :, None, None], ctx)
        assert set(REQUIRED) <= set(out)
        for name, dist in out.items():
            assert isinstance(dist, BoundedNormal)
            assert dist.median.shape == (2, 10, 10, 10)
            lo, hi = VARIABLE_RANGES[name]
            for value in (dist.median, dist.rsample(), dist.mean, dist.icdf(0.95)):
                assert torch.isfinite(value).all()
                assert value.min() >= lo and value.max() <= hi
            if name in PARAMETER_RANGES:
                assert PARAMETER_RANGES[name][0] <= lo and hi <= PARAMETER_RANGES[name][1]
    assert VARIABLE_RANGES["soil_moisture"][1] <= 0.6  # inside the WCM's domain


def test_decoded_locations_stay_bounded_for_any_embedding(batch):
    """However large the embedding grows, the decoded logit locations stay within
    ±LOGIT_BOUND (unbounded, they fed a prior KL of 10²³ in a diverging training)."""
    m = model()
    z, _ = m.encode_with_detail(batch)
    pix = torch.tensor([[0.25, 0.75]])
    for factor in (1.0, 1e3, 1e6):
        space = m.decoder.space_features(z * factor, pix.expand(2, -1), pix.expand(2, -1), None)
        dists = m.decoder.variables(space, batch["window_doy"][:, :1].expand(-1, 2))
        for name, dist in dists.items():
            assert dist.loc.abs().max() <= LOGIT_BOUND, (name, factor)
            assert torch.isfinite(dist.median).all()


def test_loss_terms_and_total(batch):
    terms = model().loss(batch, LossWeights())
    assert set(terms) == {*LossWeights.model_fields, "total"}
    assert all(torch.isfinite(v) for v in terms.values())
    weights = LossWeights(**{k: 0.0 for k in LossWeights.model_fields})
    assert float(model().loss(batch, weights)["total"].detach()) == 0.0


def _without(batch: dict, modality: str) -> dict:
    out = dict(batch)
    b, h, w = batch["s2"].shape[0], *batch["s2"].shape[-2:]
    if modality == "s2":
        out.update(
            s2=torch.zeros(b, 0, 10, h, w),
            s2_mask=torch.zeros(b, 0, h, w, dtype=torch.bool),
            s2_valid=torch.zeros(b, 0, dtype=torch.bool),
            s2_in_window=torch.zeros(b, 0, dtype=torch.bool),
            s2_angles=torch.zeros(b, 0, 3),
            s2_doy=torch.zeros(b, 0),
            s2_platform=torch.zeros(b, 0, dtype=torch.long),
        )
    elif modality == "clouds":
        out["s2_mask"] = torch.zeros_like(batch["s2_mask"])
    else:
        out.update(
            s1=torch.zeros(b, 0, 2, h, w),
            s1_valid=torch.zeros(b, 0, dtype=torch.bool),
            s1_in_window=torch.zeros(b, 0, dtype=torch.bool),
            s1_incidence=torch.zeros(b, 0, h, w),
            s1_doy=torch.zeros(b, 0),
        )
    return out


@pytest.mark.parametrize("missing", ["s2", "clouds", "s1"])
def test_works_without_a_modality(batch, missing):
    m = model()
    partial = _without(batch, missing)
    terms = m.loss(partial, LossWeights())
    assert all(torch.isfinite(v) for v in terms.values())
    terms["total"].backward()
    if missing in ("s2", "clouds"):
        assert float(terms["s2"].detach()) == 0.0
    z, detail = m.encode_with_detail(partial)
    lai = m.decode(z, torch.tensor(0.5), torch.tensor(0.5), partial["window_doy"][:, :1], detail)
    assert torch.isfinite(lai["lai"].median).all()


@pytest.mark.parametrize("term", ["s2", "s1"])
def test_gradients_reach_the_encoder_through_the_physics(batch, term):
    m = model()
    only = LossWeights(**{k: float(k == term) for k in LossWeights.model_fields})
    m.loss(batch, only)["total"].backward()
    stem = (
        m.encoder.s2_stem.net[0].weight.grad
        if term == "s2"
        else m.encoder.s1_stem.net[0].weight.grad
    )
    compress = m.encoder.compress[-1].weight.grad
    assert stem is not None and stem.abs().sum() > 0
    assert compress is not None and compress.abs().sum() > 0


def test_a_few_steps_reduce_the_loss(batch):
    m = model()
    weights = LossWeights()

    def loss() -> float:
        with torch.random.fork_rng(), torch.no_grad():
            torch.manual_seed(123)
            return float(m.loss(batch, weights)["total"])

    before = loss()
    optimizer = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(6):
        optimizer.zero_grad()
        m.loss(batch, weights)["total"].backward()
        optimizer.step()
    assert loss() < before


def test_training_is_deterministic_for_a_seed(datasets):
    runs = []
    for _ in range(2):
        m = model(seed=1)
        history = fit(m, datasets, LossWeights(), epochs=1, lr=1e-3, seed=7, progress=False,
                      batch_size=2, max_batches=2, eval_split="none")  # fmt: skip
        runs.append((history[0]["train_total"], [p.detach().clone() for p in m.parameters()]))
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1], strict=True))


def test_a_further_site_trains_in_its_own_chunk_size(site):
    root, _ = site
    further = site_train_dataset(root, 50.0, 10, context_days=10)  # 5 x 5 px chunks
    assert len(further) == 4 * 4 * further.index["window"].nunique()  # 4 x 4 places
    assert set(further.index["split"]) == {"train"}
    assert further.index["chunk_id"].str.startswith(f"{root.name}/").all()
    batch = collate_chunks([further[i] for i in (0, 5)])
    assert batch["s2"].shape[-2:] == (5, 5) and "truth_lai" not in batch
    terms = model().loss(batch, LossWeights())
    assert torch.isfinite(terms["total"]) and terms["total"].requires_grad


def test_collate_pads_time_with_masks(datasets):
    items = [datasets["train"][i] for i in range(2)]
    items[1] = {
        **items[1],
        **{k: items[1][k][:1] for k in ("s2", "s2_mask", "s2_angles", "s2_doy")},
    }
    items[1]["s2_platform"] = items[1]["s2_platform"][:1]
    batch = collate_chunks(items)
    t = items[0]["s2"].shape[0]
    assert batch["s2"].shape[:2] == (2, t) and batch["s2_valid"].tolist()[1] == [True] + [False] * (
        t - 1
    )
    assert not batch["s2_mask"][1, 1:].any()


def test_a_chunks_embedding_does_not_depend_on_its_batch(site):
    """Encoded alone or beside a chunk with more dates (so padded), a chunk gets the same
    embedding: its cells are fitted on its own observed dates, whatever the batch."""
    chunks = make_datasets(*site, context_days=10)["train"]
    items = sorted((chunks[i] for i in range(len(chunks))), key=lambda i: i["s2"].shape[0])
    short, long = items[0], items[-1]
    assert short["s2"].shape[0] < long["s2"].shape[0]
    with torch.no_grad():
        alone = model(cfg=TINY.model_copy(update={"context_days": 10})).encode(
            collate_chunks([short])
        )
        beside = model(cfg=TINY.model_copy(update={"context_days": 10})).encode(
            collate_chunks([long, short])
        )
    torch.testing.assert_close(beside[1:], alone, atol=1e-5, rtol=0)


def test_temporal_context_informs_the_embedding_and_only_the_window_is_fitted(site):
    items = [make_datasets(*site, context_days=10)["train"][i] for i in (1, 2)]
    batch = collate_chunks(items)
    assert (batch["s2_valid"] & ~batch["s2_in_window"]).any()
    m = model(cfg=TINY.model_copy(update={"context_days": 10}))
    with torch.no_grad():
        z, detail = m.encode_with_detail(batch)
        assert not torch.allclose(z, m.encode(collate_chunks([window_only(i) for i in items])))
        idx, x, y = m._sample_pixels(2, *batch["s2"].shape[-2:], z.device)
        space = m.decoder.space_features(z, x, y, detail)

        def spoiled(outside: bool) -> dict:
            out = dict(batch)
            for modality, value in (("s2", 0.9), ("s1", 20.0)):
                dates = batch[f"{modality}_in_window"] != outside
                out[modality] = batch[modality].clone()
                out[modality][dates] = value
            return out

        for term in (m._s2_term, m._s1_term):
            torch.manual_seed(0)
            fitted = term(batch, z, space, idx)
            torch.manual_seed(0)
            assert torch.equal(term(spoiled(outside=True), z, space, idx)[0], fitted[0])
            torch.manual_seed(0)
            assert not torch.equal(term(spoiled(outside=False), z, space, idx)[0], fitted[0])
        teach = [m._s2_term(b, z, space, idx, hybrid=True)[3] for b in (batch, spoiled(True))]
        assert float(teach[0]) > 0 and torch.equal(*teach)  # the teacher reads the window only


def test_augmentation_moves_whole_pixel_series_together(batch):
    from releo.models.autoencoder import SPATIAL_INPUTS, transformed

    h, w = batch["s2"].shape[-2:]
    where = torch.arange(h * w, dtype=torch.float32).reshape(h, w)  # each pixel's own label
    tagged = dict(batch)
    tagged["s2"] = batch["s2"].clone() * 0 + where
    tagged["s2_mask"] = batch["s2_mask"].clone() | True
    tagged["s2_mask"][..., where.long() % 3 == 0] = False
    tagged["s1"] = batch["s1"].clone() * 0 + where
    tagged["s1_incidence"] = batch["s1_incidence"].clone() * 0 + where
    seen = set()
    for turns in range(4):
        for flip in (False, True):
            out = transformed(tagged, turns, flip)
            label = out["s2"][0, 0, 0]
            seen.add(tuple(label.flatten().tolist()))
            for key in SPATIAL_INPUTS:  # every input moved the same way, every date alike
                moved = out[key].float() if key != "s2_mask" else out[key]
                if key == "s2_mask":
                    assert torch.equal(moved, (label.long() % 3 != 0).expand_as(moved)), key
                else:
                    assert torch.equal(moved, label.expand_as(moved)), key
            assert sorted(label.flatten().tolist()) == sorted(where.flatten().tolist())
    assert len(seen) == 8  # the 8 symmetries of the square, all different
    m = model(cfg=TINY.model_copy(update={"augment": True})).train()
    terms = m.loss(batch, LossWeights())
    assert all(torch.isfinite(v) for v in terms.values())


def test_evaluate_reports_the_metrics(datasets):
    # Two val windows with clear and cloudy pixels (the first one is overcast).
    loader = DataLoader(Subset(datasets["val"], [1, 2]), batch_size=2, collate_fn=collate_chunks)
    m = model()
    train = DataLoader(datasets["train"], batch_size=2, collate_fn=collate_chunks)
    optimizer = torch.optim.Adam(m.parameters(), lr=1e-3)
    means = train_one_epoch(m, train, optimizer, LossWeights(), max_batches=1)
    assert set(means) >= {"s2", "s1", "total"}
    metrics = evaluate(m, loader, LossWeights())
    names = [
        "loss", "s2_reconstruction_rmse", "s1_reconstruction_rmse_db", "s1_rmse_db_VV",
        "s1_rmse_db_VH", "lai_rmse_truth", "lai_rmse_truth_clear", "snap_lai_rmse_truth",
        "lai_rmse_truth_embedding_only", "lai_rmse_truth_embedding_only_at_snap",
        "embedding_lai_to_goal", "goal_ratio",
        *(f"s2_rmse_{b}" for b in ("B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A",
                                   "B11", "B12")),
    ]  # fmt: skip
    assert set(names) <= set(metrics)
    assert all(math.isfinite(metrics[n]) for n in names)
    # The goals: none may be missed unseen (the products' goal is SNAP's RMSE, on SNAP's
    # pixel-dates: clouded dates, where SNAP has nothing, are not in the ratio).
    products_goal = metrics["snap_lai_rmse_truth"]
    at_snap = metrics["lai_rmse_truth_embedding_only_at_snap"]
    assert at_snap != metrics["lai_rmse_truth_embedding_only"]
    embedding_ratio = at_snap / products_goal
    assert metrics["embedding_lai_to_goal"] == pytest.approx(embedding_ratio)
    assert metrics["goal_ratio"] >= embedding_ratio
    assert metrics == evaluate(m, loader, LossWeights())  # deterministic
    assert "truth_lai" not in datasets["train"][0]  # no truth leaks into training items


def test_synthetic_chunks_are_the_physics_of_their_variables():
    """Clear synthetic pixels = PROSAIL(variables) + L2A noise; S1 = WCM + speckle (~2.2 dB)."""
    gen = torch.Generator().manual_seed(0)
    batch, truth = synthetic_chunks(3, 8, n_s2=2, n_s1=2, gen=gen)
    b = 3
    flat = {k: v.reshape(b, 1, 64).expand(b, 2, 64).reshape(-1) for k, v in truth.items()}
    angles = batch["s2_angles"][:, :, None].expand(b, 2, 64, 3).reshape(-1, 3)
    platform = batch["s2_platform"][:, :, None].expand(b, 2, 64).reshape(-1)
    clean = s2_reflectance(flat, angles, platform, fused=False).reshape(b, 2, 8, 8, 10)
    observed = batch["s2"].permute(0, 1, 3, 4, 2)
    z = (observed - clean) / s2_noise_sigma(clean)
    assert 0.9 < float(z.std()) < 1.1 and abs(float(z.mean())) < 0.1
    for name, (lo, hi) in VARIABLE_RANGES.items():
        assert truth[name].min() >= lo and truth[name].max() <= hi
    lai = truth["lai"][:, None].expand(b, 2, 8, 8)
    moisture = truth["soil_moisture"][:, None].expand(b, 2, 8, 8)
    sigma0 = s1_backscatter_db(lai, moisture, batch["s1_incidence"]).permute(0, 1, 4, 2, 3)
    speckle = batch["s1"] - sigma0
    assert 1.8 < float(speckle.std()) < 2.6


def test_snap_training_draws_follow_the_atbd_inside_the_model_ranges():
    """SNAP's database: LAI mode 2 (mean ~3 in [0, 10]), the co-distribution narrows the soil
    and leaf angles of dense canopies, carotenoids are a quarter of chlorophyll."""
    draws = snap_training_draws((40000,), torch.Generator().manual_seed(0))
    for name, (lo, hi) in VARIABLE_RANGES.items():
        assert draws[name].min() >= lo and draws[name].max() <= hi
    assert torch.allclose(draws["car"], 0.25 * draws["cab"])
    lai = draws["lai"]
    assert 2.8 < float(lai.mean()) < 3.4 and float((lai > 7).float().mean()) > 0.04
    dense, sparse = lai > 6, lai < 1
    assert float(draws["rsoil"][dense].max()) <= 3.5 + 6 / 15 * (1.2 - 3.5) + 1e-5
    assert float(draws["rsoil"][sparse].max()) > 3.0
    assert float(draws["lidfa"][dense].min()) >= 30 + 6 / 15 * (55 - 30) - 1e-4
    batch, truth = synthetic_chunks(2, 8, n_s2=2, n_s1=2, prior="snap")
    assert batch["s2"].shape == (2, 2, 10, 8, 8) and truth["lai"].shape == (2, 8, 8)


def test_synthetic_residual_is_a_smooth_spectrum_per_chunk_date_scaled_per_field():
    """With ``residual_scale``, clear synthetic pixels = PROSAIL + a spectrum in the span of the
    model's S2 residual basis (one shape per chunk and date, a positive factor per field) +
    noise; the variables are the same draws as without it."""
    gen = torch.Generator().manual_seed(0)
    plain_batch, plain = synthetic_chunks(2, 8, n_s2=2, n_s1=2, gen=gen)
    gen = torch.Generator().manual_seed(0)
    batch, truth = synthetic_chunks(2, 8, n_s2=2, n_s1=2, gen=gen, residual_scale=0.05)
    for name in VARIABLE_RANGES:
        assert torch.equal(truth[name], plain[name])
    flat = {k: v.reshape(2, 1, 64).expand(2, 2, 64).reshape(-1) for k, v in truth.items()}
    angles = batch["s2_angles"][:, :, None].expand(2, 2, 64, 3).reshape(-1, 3)
    platform = batch["s2_platform"][:, :, None].expand(2, 2, 64).reshape(-1)
    clean = s2_reflectance(flat, angles, platform, fused=False).reshape(2, 2, 8, 8, 10)
    added = batch["s2"].permute(0, 1, 3, 4, 2) - clean  # residual + noise
    basis = spectral_basis(2)  # (3, 10)
    coef = torch.linalg.lstsq(basis.T, added.reshape(-1, 10).T).solution.T  # (N, 3)
    outside = added.reshape(-1, 10) - coef @ basis
    assert float(outside.std()) < 0.5 * float((coef @ basis).std())
    # one shape per chunk-date: the per-field coefficients are parallel within a chunk-date
    per_field = coef.reshape(2, 2, 2, 4, 2, 4, 3).mean(dim=(3, 5))  # mean over a 4x4 field
    per_field = per_field.reshape(2, 2, 4, 3)
    cosine = torch.nn.functional.cosine_similarity(per_field, per_field[:, :, :1], dim=-1)
    assert float(cosine.mean()) > 0.95 and float(cosine.min()) > 0.8  # noise, clipping at 0
    assert float(added.std()) > 3 * float((plain_batch["s2"] - clean.permute(0, 1, 4, 2, 3)).std())


def test_synthetic_term_teaches_the_inversion(batch):
    """A few steps on the hybrid term alone lower it (the decoder learns to invert physics)."""
    m = model()
    only = LossWeights(**{k: float(k == "synthetic") for k in LossWeights.model_fields})
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        torch.manual_seed(step % 2)  # two fixed synthetic batches
        opt.zero_grad()
        loss = m.loss(batch, only)["total"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0], losses


def test_distillation_teaches_the_embedding_only_lai(batch):
    """The distillation term alone brings the LAI decoded from z alone towards the LAI decoded
    with the per-pixel detail (the teacher), and is skipped without it."""
    m = model()
    with torch.no_grad():  # detail that matters, as after training through the physics
        m.encoder.detail.weight.mul_(30.0)
        m.decoder.dynamic_head[-1].weight.mul_(100.0)
    only = LossWeights(**{k: float(k == "distil") for k in LossWeights.model_fields})

    def gap() -> float:
        with torch.no_grad():
            z, detail = m.encode_with_detail(batch)
            x, y = torch.rand(2, 1, 64), torch.rand(2, 1, 64)
            t = batch["window_doy"][:, :1, None].float()
            with_detail = m.decode(z, x, y, t, detail)["lai"].median
            alone = m.decode(z, x, y, t)["lai"].median
            return float((with_detail - alone).abs().mean())

    torch.manual_seed(0)
    before = gap()
    assert before > 0.1
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for step in range(30):
        torch.manual_seed(step)
        opt.zero_grad()
        m.loss(batch, only)["total"].backward()
        opt.step()
    torch.manual_seed(0)
    after = gap()
    assert after < 0.5 * before
    no_detail = build_model(TINY.model_copy(update={"detail_channels": 0}))
    assert float(no_detail.loss(batch, only)["distil"]) == 0.0


def test_field_slots_pool_and_redraw_parcels_of_any_layout():
    """A map of 40 Voronoi parcels (the site's field layout), each of its own LAI, pooled into
    36 slots by fitted power cells (no training: the pixel value is its own feature) and drawn
    back by the power diagram, comes out far closer to the map than the means of a fixed 6 x 6
    lattice (the same number of numbers per cell): the slots follow the parcels."""
    from releo.data.simulate.parcels import voronoi_fields
    from releo.models.slots import FieldSlots, SlotPooling

    rng = np.random.default_rng(0)
    labels = voronoi_fields(rng, (100, 100), 40)
    target = torch.tensor(rng.uniform(0, 6, labels.max() + 1)[labels], dtype=torch.float32)
    target = target[None, None]
    pool, slots = SlotPooling(1, 36, 1, iterations=3, fit_steps=40), FieldSlots(36, 1)
    with torch.no_grad():
        pool.features.weight.fill_(1.0)
        pool.features.bias.zero_()
        code = pool(target, target[:, None], torch.ones(1, 1, 100, 100, dtype=torch.bool))
        assert code.shape == (1, 36 * 4)
    rmse, lattice_rmse = _redrawn_and_lattice_rmse(slots, code, target, 6)
    assert rmse < 0.5 * lattice_rmse, (rmse, lattice_rmse)


def _redrawn_and_lattice_rmse(
    slots: torch.nn.Module, code: torch.Tensor, target: torch.Tensor, side: int
) -> tuple[float, float]:
    """RMSE against ``target`` (1, 1, 100, 100) of the map ``slots`` draw from ``code`` and of
    the means of a side × side lattice (as many cells)."""
    from releo.models.slots import pixel_xy

    with torch.no_grad():
        drawn = slots(code, *pixel_xy(torch.arange(10_000)[None], 100, 100))
    lattice = F.interpolate(F.adaptive_avg_pool2d(target, side), size=100, mode="nearest")
    return tuple(
        float((m.reshape(target.shape) - target).pow(2).mean().sqrt()) for m in (drawn, lattice)
    )


def _parcel_dates(rng: np.random.Generator) -> torch.Tensor:
    """Two dates (1, 2, 1, 100, 100) of a 40-parcel Voronoi layout, each parcel its own value
    per date."""
    from releo.data.simulate.parcels import voronoi_fields

    labels = voronoi_fields(rng, (100, 100), 40)
    dates = [rng.uniform(0, 6, labels.max() + 1)[labels] for _ in range(2)]
    return torch.tensor(np.stack(dates), dtype=torch.float32)[None, :, None]


def test_voronoi_slots_follow_parcels_seen_through_clouds():
    """Cells fitted to two dated maps of 40 parcels, the first half-clouded, are the same
    whatever the clouded pixels hold (the fit reads observed pixel-dates only), and 49 Voronoi
    slots (2 numbers of geometry each) draw the parcels back far closer than the means of a
    7 x 7 lattice."""
    from releo.models.slots import FieldSlots, SlotPooling

    values = _parcel_dates(np.random.default_rng(1))
    observed = torch.ones(1, 2, 100, 100, dtype=torch.bool)
    observed[:, 0, :, :50] = False
    spoiled = values.clone()
    spoiled[:, 0, :, :, :50] = 1e3
    fit = SlotPooling(1, 49, 1, iterations=5, fit_steps=100, power=False)
    centre, power = fit.cells(values, observed)
    assert torch.equal(fit.cells(spoiled, observed)[0], centre)
    assert power.abs().max() == 0

    target = values[:, 1]  # (1, 1, H, W): the clear date
    with torch.no_grad():
        fit.features.weight.fill_(1.0)
        fit.features.bias.zero_()
        code = fit(target, values, observed)
        assert code.shape == (1, 49 * 3)
    rmse, lattice_rmse = _redrawn_and_lattice_rmse(FieldSlots(49, 1, power=False), code, target, 7)
    assert rmse < 0.4 * lattice_rmse, (rmse, lattice_rmse)


def test_cells_are_fitted_once_per_chunk_content(monkeypatch):
    """Training revisits each chunk every epoch, padded to the longest chunk of its batch: its
    cells are fitted once and reused, and any change of its inputs fits them again."""
    from releo.models import slots

    calls = []
    real = slots.fit_cells
    monkeypatch.setattr(slots, "fit_cells", lambda *a: calls.append(1) or real(*a))
    values = _parcel_dates(np.random.default_rng(2))
    values = values[..., :32, :32]
    observed = torch.ones(1, 2, 32, 32, dtype=torch.bool)
    fit = slots.SlotPooling(1, 4, 1, iterations=2, fit_steps=5)
    first = fit.cells(values, observed)
    # The same chunk again, and padded with an unobserved date as a batch of longer chunks pads it.
    padded = torch.cat([values, torch.zeros_like(values[:, :1])], 1)
    again = fit.cells(padded, torch.cat([observed, torch.zeros_like(observed[:, :1])], 1))
    assert len(calls) == 1
    assert all(torch.equal(a, b) for a, b in zip(again, first, strict=True))
    moved = values.clone()
    moved[..., 0, 0] += 1.0
    fit.cells(moved, observed)
    assert len(calls) == 2


def test_the_hybrid_inversion_learns_lai_from_simulated_spectra():
    """Fitted to PROSAIL simulations alone, the per-pixel teacher retrieves the LAI of fresh
    simulations (other draws, with the smooth residual spectra and noise) far better than
    their mean does; a seed gives the same network."""
    cfg = TINY.model_copy(update={"hybrid_prior": "snap", "hybrid_samples": 20000})
    net = fit_hybrid(cfg.model_copy(update={"hybrid_steps": 600}))
    rho, angles, lai = simulated_spectra(5000, torch.Generator().manual_seed(7), "snap", 0.02, 2)
    estimate = net(rho, angles).mean
    rmse = float((estimate - lai).pow(2).mean().sqrt())
    assert rmse < 0.7 * float(lai.std()), (rmse, float(lai.std()))  # measured 0.57
    assert float(torch.corrcoef(torch.stack([estimate, lai]))[0, 1]) > 0.75  # measured 0.83
    small = TINY.model_copy(update={"hybrid_samples": 2000, "hybrid_steps": 5})
    first, again = (fit_hybrid(small, seed=3).state_dict() for _ in range(2))
    assert all(torch.equal(v, again[k]) for k, v in first.items())


def test_hybrid_term_teaches_the_decoded_lai_from_a_fixed_teacher(batch):
    """The hybrid term alone lowers itself; the teacher is fitted once (on the first loss),
    takes no gradient and is saved with the model; without ``hybrid_prior`` there is none."""
    m = model()
    only = LossWeights(**{k: float(k == "hybrid") for k in LossWeights.model_fields})
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses, teacher = [], None
    for step in range(20):
        torch.manual_seed(step % 2)
        opt.zero_grad()
        loss = m.loss(batch, only)["total"]
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if teacher is None:
            teacher = {k: v.clone() for k, v in m.hybrid.state_dict().items()}
    assert losses[-1] < 0.6 * losses[0], losses
    assert all(torch.equal(v, m.hybrid.state_dict()[k]) for k, v in teacher.items())
    assert all(p.grad is None for p in m.hybrid.parameters())
    assert bool(m.state_dict()["hybrid_fitted"])
    plain = build_model(TINY.model_copy(update={"hybrid_prior": None}))
    assert plain.hybrid is None and not any(k.startswith("hybrid") for k in plain.state_dict())
    assert float(plain.loss(batch, only)["hybrid"]) == 0.0


def test_hybrid_term_teaches_both_decoding_modes(batch):
    """The products decode from the embedding alone, so the hybrid term is the teacher's KL to
    the LAI decoded with the per-pixel detail plus its KL to the LAI decoded without it."""
    m = model().eval()  # no detail dropout: every chunk has its detail
    only = LossWeights(**{k: float(k == "hybrid") for k in LossWeights.model_fields})
    torch.manual_seed(0)
    term = m.loss(batch, only)["hybrid"]
    torch.manual_seed(0)
    z, detail = m.encode_with_detail(batch)
    idx, x, y = m._sample_pixels(z.shape[0], *batch["s2"].shape[-2:], z.device)
    x, y = x.to(z.dtype), y.to(z.dtype)
    modes = [m.decoder.space_features(z, x, y, d) for d in (detail, None)]
    kl = [m._s2_term(batch, z, space, idx, hybrid=True)[3] for space in modes]
    assert float(kl[1]) > 0 and not torch.equal(kl[0], kl[1])
    torch.testing.assert_close(term, kl[0] + kl[1])


def test_refinement_lowers_the_chunks_own_loss_and_keeps_model_and_layout(batch):
    """Refining the embeddings descends the chunk terms decoded from z alone: the loss falls,
    the model is untouched (still trainable), the slot centres stay, and it is seeded."""
    m = model().eval()
    m._teacher()  # a trained model's teacher is fitted: fit it before the snapshot
    weights = LossWeights()
    with torch.no_grad():
        z = m.encode(batch)
    before = {k: v.clone() for k, v in m.state_dict().items()}
    refined, losses = m.refine(batch, z, weights, steps=25, lr=0.05)
    assert len(losses) == 25 and np.mean(losses[-5:]) < np.mean(losses[:5]), losses
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())
    assert all(p.requires_grad for p in m.encoder.parameters())
    slots = TINY.slot_code_dim
    code, code_refined = (v[:, :slots].reshape(-1, TINY.field_slots, 4) for v in (z, refined))
    torch.testing.assert_close(code_refined[..., :2], code[..., :2])
    assert not torch.equal(code_refined[..., 2:], code[..., 2:])
    again, _ = m.refine(batch, z, weights, steps=25, lr=0.05)
    assert torch.equal(again, refined)
    assert m.refine(batch, z, weights, steps=0, lr=0.05)[0] is z


def test_a_model_saved_before_voronoi_slots_loads_with_power_cells(tmp_path):
    """Saved configs are whole: one without ``slot_power`` predates it, and its slots carry a
    power (3 numbers of geometry), so it loads as it was trained."""
    from releo.models.checkpoint import load_autoencoder, save_autoencoder

    config = TINY.model_copy(update={"slot_power": True, "hybrid_prior": None}).model_dump()
    model = build_model(ModelConfig(**config))
    del config["slot_power"], config["hybrid_prior"]
    save_autoencoder(model, config, {}, tmp_path / "old.pt")
    loaded, _ = load_autoencoder(tmp_path / "old.pt")
    assert loaded.cfg.slot_power
    assert loaded.cfg.slot_code_dim == 4 * (3 + 2)
    assert loaded.cfg.hybrid_prior is None  # saved before the hybrid teacher


def _unexplained(basis: torch.Tensor, spectrum: torch.Tensor) -> float:
    """RMS share of ``spectrum`` (10,) outside the span of ``basis`` (k, 10)."""
    coef = torch.linalg.lstsq(basis.T.double(), spectrum.double()[:, None]).solution
    rest = spectrum.double() - (basis.T.double() @ coef)[:, 0]
    return float(rest.norm() / spectrum.double().norm())


def test_s2_residual_spectra_hold_broad_effects_not_the_canopy():
    """The S2 residual's spectra live in a degree-2 basis in log-wavelength: it holds a broad
    additive effect (the simulator's browning spectrum) almost exactly, but not PROSAIL's
    reflectance change with LAI or chlorophyll, so the residual cannot stand in for them."""
    from releo.data.simulate.effects import OPTICAL_SPECTRUM
    from releo.models.decoder import spectral_basis
    from releo.physics import prosail_s2_bands

    basis = spectral_basis(2)
    assert basis.shape == (3, 10)
    assert _unexplained(basis, torch.tensor(OPTICAL_SPECTRUM)) < 0.05

    def bands(lai: float, cab: float) -> torch.Tensor:
        v = {"N": 1.5, "cab": cab, "car": 8.0, "cant": 0.0, "cbrown": 0.0, "cw": 0.012,
             "cm": 0.008, "lai": lai, "lidfa": 57.0, "hspot": 0.05, "tts": 35.0, "tto": 5.0,
             "psi": 90.0, "psoil": 0.5, "rsoil": 1.0}  # fmt: skip
        return prosail_s2_bands(
            **{k: torch.tensor([x], dtype=torch.float64) for k, x in v.items()}
        )[0]

    for lai in (0.5, 2.0, 4.0):
        assert _unexplained(basis, bands(lai + 0.5, 40.0) - bands(lai, 40.0)) > 0.5
    assert _unexplained(basis, bands(2.0, 60.0) - bands(2.0, 40.0)) > 0.5
    decoder = build_model(TINY).decoder
    assert torch.equal(decoder.s2_basis, basis)
    assert decoder.s2_spectra.shape == (TINY.s2_residual_rank, 3)


def test_kl_from_a_teacher_calibrates_the_student_spread():
    """Fitting a distribution to a teacher by KL(teacher || student) gives it the teacher's
    spread plus its own miss: σ² = σ_teacher² + gap², and KL 0 only when they agree."""
    teacher = BoundedNormal(torch.tensor(0.3), torch.tensor(0.4), 0.0, 10.0)
    same = BoundedNormal(torch.tensor(0.3), torch.tensor(0.4), 0.0, 10.0)
    assert float(same.kl_from(teacher)) == pytest.approx(0.0, abs=1e-7)
    log_scale = torch.tensor(-2.0, requires_grad=True)
    optimiser = torch.optim.Adam([log_scale], lr=0.05)
    for _ in range(600):
        optimiser.zero_grad()
        student = BoundedNormal(torch.tensor(0.8), log_scale.exp(), 0.0, 10.0)
        student.kl_from(teacher).backward()
        optimiser.step()
    assert float(log_scale.exp()) == pytest.approx(math.hypot(0.4, 0.5), rel=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_training_step_and_the_validation_metrics_run_on_gpu(batch):
    """`train.use_gpu`: every loss term (query pixels, window dates, the synthetic chunks, the
    fitted cells) and the validation metrics are computed on the model's device."""
    from releo.train.metrics import evaluate_batch, finish_metrics

    gpu = model().cuda()
    on_gpu = {k: v.cuda() if torch.is_tensor(v) else v for k, v in batch.items()}
    terms = gpu.loss(on_gpu, LossWeights())
    terms["total"].backward()
    assert terms["total"].is_cuda and all(torch.isfinite(v) for v in terms.values())
    sums: dict = {}
    with torch.no_grad():
        evaluate_batch(gpu.eval(), on_gpu, sums)
    assert math.isfinite(finish_metrics(sums)["lai_rmse_truth"])


def test_a_saved_model_is_the_same_bytes_every_time(tmp_path):
    """DVC hashes the model file: saving the same weights twice must give the same bytes."""
    from releo.models.checkpoint import save_autoencoder

    m = model()
    paths = [tmp_path / name / "model.pt" for name in ("first", "second")]
    for path in paths:
        save_autoencoder(m, TINY.model_dump(), {"s2": 1.0}, path)
    assert paths[0].read_bytes() == paths[1].read_bytes()
