"""Attributions and their scores on tiny models whose answer is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

from slicemri_lite.analysis import _interpret as interpret
from slicemri_lite.analysis import _saliency_scores as scores
from slicemri_lite.data import Cohort, grid_affine
from slicemri_lite.models import Conv3DNet, SliceSetNet
from slicemri_lite.train import VoxelRidge

SHAPE = (12, 14, 12)
BLOCK = (slice(4, 8), slice(6, 10), slice(2, 6))  # aligned with 2-voxel occlusion patches


def block_mask(shape=SHAPE) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[BLOCK] = True
    return mask


class BlockReader(nn.Module):
    """Reads only the planted block: ``softplus(sum of the block's voxels)``."""

    def __init__(self):
        super().__init__()
        self.volume_shape = SHAPE
        self.conv = nn.Conv3d(1, 1, 1)
        self.head = nn.Linear(int(np.prod(SHAPE)), 1)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
            self.head.weight.copy_(torch.from_numpy(block_mask()).float().reshape(1, -1) / 10)
            self.head.bias.zero_()

    def forward(self, x):
        return nn.functional.softplus(self.head(self.conv(x).flatten(1)))


def volumes(n=3, shape=SHAPE, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.5, 1.5, (n, *shape)).astype(np.float32)


BRAIN = np.ones(SHAPE, dtype=bool)
OPTIONS = {"samples": 4, "steps": 8, "patch": 2, "device": "cpu"}


@pytest.mark.parametrize("method", ["smoothgrad", "integrated_gradients", "occlusion"])
def test_each_method_finds_the_block_the_model_reads(method):
    maps = interpret.attributions(BlockReader(), volumes(), method, batch_size=2, **OPTIONS)
    assert maps.shape == (3, *SHAPE) and maps.dtype == np.float32
    table = scores.score_attributions(maps, block_mask(), BRAIN)
    assert (table["auroc"] > 0.99).all()
    assert (table["mass_inside"] > 0.99).all()
    assert (table["pointing"] == 1).all()


def test_a_randomised_model_scores_near_chance_for_smoothgrad():
    model = BlockReader()
    assert interpret.randomisation_order(model) == ["head", "conv"]
    (level, random_model), *_ = interpret.cascading_randomisation(model, ["head"], seed=1)
    assert level == "head"
    x = volumes(4)
    trained = interpret.attributions(model, x, "smoothgrad", **OPTIONS)
    randomised = interpret.attributions(random_model, x, "smoothgrad", **OPTIONS)
    chance = scores.chance_levels(block_mask(), BRAIN)
    random_scores = scores.score_attributions(randomised, block_mask(), BRAIN)
    assert abs(random_scores["auroc"].mean() - 0.5) < 0.15
    assert random_scores["mass_inside"].mean() < 3 * chance["mass_inside"]
    assert scores.score_attributions(trained, block_mask(), BRAIN)["auroc"].min() > 0.99
    # the original is untouched, and the cascade adds layers as it goes
    assert torch.equal(model.head.weight, BlockReader().head.weight)
    cascade = interpret.cascading_randomisation(model, ["head", "conv"], seed=1)
    assert not torch.equal(cascade[1][1].conv.weight, model.conv.weight)
    assert torch.equal(cascade[0][1].conv.weight, model.conv.weight)
    with pytest.raises(ValueError, match="randomisation_order"):
        interpret.cascading_randomisation(model, ["nonsense"])


@pytest.mark.parametrize("axis", ["sagittal", "coronal", "axial"])
def test_gradcam_restacks_slices_along_the_model_axis(axis):
    torch.manual_seed(0)
    shape = (20, 24, 22)
    model = SliceSetNet("scratch", pretrained=False, axis=axis, volume_shape=shape, embed_dim=8)
    maps = interpret.attributions(model, volumes(2, shape), "gradcam", device="cpu")
    assert maps.shape == (2, *shape) and np.isfinite(maps).all() and (maps >= 0).all()
    assert interpret.gradcam_layer(model).startswith("encoder.")

    # only the slices from 5 to 8 reach the output: Grad-CAM must leave the others at zero
    reader = SliceSetNet("scratch", pretrained=False, axis=axis, volume_shape=shape, embed_dim=8)
    keep = torch.zeros(model.n_slices)
    keep[5:9] = 1.0
    features = reader.encoder_features

    class FewSlices(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder, self.axis, self.volume_shape = reader.encoder, axis, shape

        def forward(self, x):
            return (features(x).sum(-1) * keep).sum(-1, keepdim=True)

    cam = interpret.attributions(FewSlices(), volumes(1, shape), "gradcam", device="cpu")[0]
    per_slice = scores.slice_mass(cam, axis)
    assert per_slice[5:9].sum() > 0 and per_slice[:5].sum() == 0 and per_slice[9:].sum() == 0


def test_gradcam_on_the_3d_cnn_is_a_volume():
    torch.manual_seed(0)
    model = Conv3DNet(volume_shape=(20, 24, 22), channels=(4, 4, 4, 4, 4), embed_dim=4)
    assert interpret.gradcam_layer(model) == "features.20"  # the last conv, before pooling
    maps = interpret.attributions(model, volumes(2, (20, 24, 22)), "gradcam", layer="features.11")
    assert maps.shape == (2, 20, 24, 22) and np.isfinite(maps).all()


def test_every_method_gives_the_same_maps_in_batches_as_one_by_one():
    """A participant's map depends on that participant alone, not on who shares its batch."""
    torch.manual_seed(0)
    shape = (16, 18, 16)
    model = SliceSetNet("scratch", pretrained=False, volume_shape=shape, embed_dim=8)
    x = volumes(3, shape)
    # noise 0: SmoothGrad's noisy copies are random and scaled to the batch's range, so
    # only its noise-free form (the plain gradient) can be compared exactly
    options = {"samples": 2, "steps": 8, "patch": 8, "noise": 0.0, "device": "cpu"}
    for method in interpret.METHODS:
        one_by_one = interpret.attributions(model, x, method, batch_size=1, **options)
        batched = interpret.attributions(model, x, method, batch_size=3, **options)
        assert one_by_one.shape == (3, *shape) and np.isfinite(one_by_one).all(), method
        if method != "gradcam":  # an untrained net's ReLU'd class map may be all zero
            assert np.abs(one_by_one).max() > 0, method
        np.testing.assert_allclose(
            batched, one_by_one, rtol=1e-4, atol=1e-6 * np.abs(one_by_one).max(), err_msg=method
        )
    with pytest.raises(ValueError, match="'method' must be one of"):
        interpret.attributions(model, x, "lime")


def ridge_cohort(n=24, seed=0) -> Cohort:
    """Volumes on the 4 mm grid whose first block's mean is the age."""
    rng = np.random.default_rng(seed)
    shape = (8, 8, 8)
    age = rng.uniform(20, 90, n)
    x = rng.normal(0, 1, (n, *shape)).astype(np.float32)
    x[:, :2, :2, :2] += ((age - 55) / 10)[:, None, None, None].astype(np.float32)
    table = pd.DataFrame({"participant_id": [f"s{i}" for i in range(n)], "age": age,
                          "sex": "F", "diagnosis": "CN",
                          "split": ["train", "train", "val", "test"] * (n // 4)})  # fmt: skip
    return Cohort(x, table, grid_affine(4))


def test_ridge_coefficients_are_its_exact_voxel_gradient():
    cohort = ridge_cohort()
    ridge = VoxelRidge("age", block_mm=8.0).fit(cohort)
    coef = interpret.ridge_coefficient_map(ridge, cohort)
    assert coef.shape == cohort.shape
    module = interpret.ridge_module(ridge, cohort)
    x = torch.from_numpy(np.asarray(cohort.volumes[cohort.indices("test")]))[:, None]
    predicted = module(x)[:, 0].detach().numpy()
    assert np.allclose(predicted, ridge.predict(cohort, "test"), atol=1e-3)
    # linear: prediction difference = coefficients . volume difference
    diff = (x[1] - x[0]).numpy()[0]
    assert np.isclose(predicted[1] - predicted[0], (coef * diff).sum(), rtol=1e-3)
    # each 2x2x2 block shares one coefficient; the planted block has the largest
    assert np.allclose(coef[:2, :2, :2], coef[0, 0, 0])
    assert abs(coef[0, 0, 0]) == pytest.approx(np.abs(coef).max())


def test_nifti_export_round_trips_with_the_affine(tmp_path):
    import nibabel as nib

    affine = grid_affine(4)
    maps = volumes(2, (46, 55, 46))
    path = interpret.save_nifti(maps[0], affine, tmp_path / "map.nii.gz")
    image = nib.load(path)
    assert np.allclose(image.affine, affine)
    assert np.array_equal(np.asarray(image.dataobj), maps[0])
    stacked = nib.load(interpret.save_nifti(np.moveaxis(maps, 0, -1), affine, tmp_path / "s.nii"))
    assert stacked.shape == (46, 55, 46, 2)
    with pytest.raises(ValueError, match="must end in"):
        interpret.save_nifti(maps[0], affine, tmp_path / "map.npy")


def test_group_map_weighs_every_participant_equally():
    a = np.zeros((2, *SHAPE), dtype=np.float32)
    a[0][0, 0, 0] = 1000.0
    a[1][1, 1, 1] = -1.0
    group = interpret.group_map(a)
    assert group.shape == SHAPE and group.sum() == pytest.approx(1.0)
    assert group[0, 0, 0] == pytest.approx(0.5) and group[1, 1, 1] == pytest.approx(0.5)


def test_slice_mass_sums_to_the_total_on_every_axis():
    effect = np.random.default_rng(0).normal(size=SHAPE)
    for axis, n in zip(["sagittal", "coronal", "axial"], SHAPE, strict=True):
        mass = scores.slice_mass(effect, axis)
        assert mass.shape == (n,) and mass.sum() == pytest.approx(np.abs(effect).sum())
        assert scores.slice_mass(effect, axis, normalise=True).sum() == pytest.approx(1.0)
    batch = scores.slice_mass(np.stack([effect, 2 * effect]), "coronal")
    assert batch.shape == (2, SHAPE[1]) and np.allclose(batch[1], 2 * batch[0])


def test_slice_attention_from_features_matches_the_volumes():
    torch.manual_seed(0)
    shape = (16, 18, 16)
    model = SliceSetNet("scratch", pretrained=False, aggregation="attention",
                        volume_shape=shape, embed_dim=8).eval()  # fmt: skip
    with torch.no_grad():
        model.pool.query.normal_()
    x = volumes(3, shape)
    from_volumes = interpret.slice_attention(model, volumes=x, device="cpu")
    with torch.no_grad():
        features = model.encoder_features(torch.from_numpy(x)[:, None]).numpy()
    from_features = interpret.slice_attention(model, features=features, device="cpu")
    assert from_volumes.shape == (3, 16) and np.allclose(from_volumes.sum(1), 1)
    assert np.allclose(from_volumes, from_features, atol=1e-5)
    assert np.ptp(from_volumes) > 0  # a random query does not pool evenly
    with pytest.raises(ValueError, match="aggregation='attention'"):
        interpret.slice_attention(SliceSetNet("scratch", pretrained=False, volume_shape=shape),
                                  volumes=x)  # fmt: skip


def test_scores_have_the_chance_levels_they_claim():
    mask, brain = block_mask(), BRAIN
    flat = np.ones(SHAPE)
    assert scores.score_map(flat, mask, brain) == pytest.approx(scores.chance_levels(mask, brain))
    inverted = scores.score_map(~mask * 1.0, mask, brain)
    assert inverted["auroc"] == 0 and inverted["mass_inside"] == 0 and inverted["pointing"] == 0


def test_effect_mask_keeps_the_stated_share_of_the_brain():
    effect = np.random.default_rng(0).normal(size=SHAPE)
    brain = np.zeros(SHAPE, dtype=bool)
    brain[1:-1, 1:-1, 1:-1] = True
    mask = scores.effect_mask(effect, brain, quantile=0.9)
    assert not (mask & ~brain).any()
    assert mask[brain].mean() == pytest.approx(0.1, abs=0.01)
    own = scores.score_against_effect(effect * brain, effect, brain, quantile=0.9)
    assert own["auroc"] == 1 and own["pointing"] == 1
    with pytest.raises(ValueError, match="'quantile' must be in"):
        scores.effect_mask(effect, brain, quantile=1.5)


def test_bootstrap_interval_covers_the_mean_and_summaries_have_every_column():
    values = np.random.default_rng(0).normal(0.7, 0.1, 30)
    mean, low, high = scores.bootstrap_interval(values)
    assert low < mean < high and mean == pytest.approx(values.mean())
    assert high - low < 0.1
    assert np.isnan(scores.bootstrap_interval([0.5])[1])
    table = pd.DataFrame({"method": ["a"] * 5 + ["b"] * 5, "auroc": np.linspace(0, 1, 10),
                          "mass_inside": 0.2, "pointing": 1.0})  # fmt: skip
    summary = scores.summarise_scores(table, ["method"])
    assert list(summary["method"]) == ["a", "b"] and (summary["n"] == 5).all()
    assert {"auroc_low", "auroc_high", "pointing_low"} <= set(summary.columns)
    assert (summary["auroc_low"] <= summary["auroc"]).all()


def test_slice_correlations_per_participant():
    mass = np.arange(10.0)
    weights = np.stack([mass, -mass, np.ones(10)])
    r = scores.slice_correlations(weights, mass)
    assert r[0] == pytest.approx(1) and r[1] == pytest.approx(-1) and np.isnan(r[2])


def test_shuffled_labels_keep_volumes_and_each_split_s_labels():
    from test_train import tiny_cohort

    cohort = tiny_cohort()
    shuffled = interpret.shuffle_labels(cohort, "ad", seed=3)
    assert shuffled.volumes is cohort.volumes
    for split in ("train", "val", "test"):
        before = cohort.table.loc[cohort.table["split"] == split, "diagnosis"]
        after = shuffled.table.loc[shuffled.table["split"] == split, "diagnosis"]
        assert sorted(before) == sorted(after)
    assert not cohort.table["diagnosis"].equals(shuffled.table["diagnosis"])
    assert cohort.table["age"].equals(shuffled.table["age"])


def test_fit_on_shuffled_labels_trains_on_the_permuted_targets():
    from test_train import QUIET, scratch_net, tiny_cohort

    from slicemri_lite.train import fit

    cohort = tiny_cohort()
    options = {"epochs": 1, "batch_size": 8, **QUIET}
    shuffled = interpret.fit_on_shuffled_labels(scratch_net(), cohort, "ad", seed=1, **options)
    shuffled_cohort = interpret.shuffle_labels(cohort, "ad", 1)
    again = fit(scratch_net(), shuffled_cohort, task="ad", seed=1, **options)
    real = fit(scratch_net(), cohort, task="ad", seed=1, **options)
    assert shuffled.task == "ad"
    assert shuffled.history["val_loss"].iloc[0] == pytest.approx(again.history["val_loss"].iloc[0])
    assert shuffled.history["val_loss"].iloc[0] != pytest.approx(real.history["val_loss"].iloc[0])


def test_map_similarity_tells_a_copy_from_an_unrelated_map():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(2, *SHAPE))
    same = scores.map_similarity(a, -3 * a, BRAIN)  # |.| and ranks ignore sign and scale
    other = scores.map_similarity(a, rng.normal(size=(2, *SHAPE)), BRAIN)
    assert np.allclose(same, 1) and (np.abs(other) < 0.1).all()


def test_participant_effect_is_the_participants_own_rendered_effect():
    from data_fixtures import small_cohort

    cohort = small_cohort()
    diagnosis = cohort.table["diagnosis"].to_numpy()
    ad, cn = int(np.flatnonzero(diagnosis == "AD")[0]), int(np.flatnonzero(diagnosis == "CN")[0])
    effect = interpret.participant_effect(cohort, ad, "ad")
    assert effect.shape == cohort.shape and np.abs(effect).max() > 0.02
    assert effect.sum() < 0  # AD darkens: tissue gives way to CSF
    assert np.abs(interpret.participant_effect(cohort, cn, "ad")).max() == 0  # no AD, no effect
    other = interpret.participant_effect(cohort, int(np.flatnonzero(diagnosis == "AD")[1]), "ad")
    assert not np.allclose(effect, other)  # each participant their own map
    real = ridge_cohort()
    with pytest.raises(ValueError, match="no planted 'ad' effect"):
        interpret.participant_effect(real, 0, "ad")
    real.effects = {"ad": np.ones(real.shape)}
    with pytest.raises(ValueError, match="needs a cohort made by synthetic_cohort"):
        interpret.participant_effect(real, 3, "ad")


def test_outside_share_counts_the_maps_mass_beyond_the_brain():
    brain = np.zeros((4, 4, 4), dtype=bool)
    brain[1:3, 1:3, 1:3] = True  # 8 brain voxels of 64
    inside_only = np.where(brain, 1.0, 0.0)
    assert scores.outside_share(inside_only, brain) == 0.0
    everywhere = -np.ones((4, 4, 4))  # signs do not matter: |map|
    assert scores.outside_share(everywhere, brain) == pytest.approx(56 / 64)
    assert np.isnan(scores.outside_share(np.zeros((4, 4, 4)), brain))
    with pytest.raises(ValueError):
        scores.outside_share(np.ones((3, 4, 4)), brain)
