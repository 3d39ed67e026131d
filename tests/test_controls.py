"""Brain-only models, brain-only features, and the positive control for saliency."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from data_fixtures import planted_cohort, small_cohort

from slicemri_lite import analysis, experiments
from slicemri_lite.data import grid_brain_mask
from slicemri_lite.models import SliceSetNet
from slicemri_lite.train import FeatureSpec, slice_features
from slicemri_lite.train import _features as feat


def _model(shape, mask=None, seed=0):
    torch.manual_seed(seed)
    return SliceSetNet.paper("resnet18", volume_shape=shape, pretrained=False,
                             input_mask=mask).eval()  # fmt: skip


def test_a_masked_model_ignores_and_gets_no_gradient_outside_its_mask():
    shape = (10, 12, 8)
    mask = np.zeros(shape, bool)
    mask[3:7, 4:9, 2:6] = True
    model = _model(shape, mask)
    x = torch.rand(2, 1, *shape, requires_grad=True)
    model(x).sum().backward()
    assert x.grad[:, 0][:, ~mask].abs().max() == 0  # the chain rule through the mask
    assert x.grad[:, 0][:, mask].abs().max() > 0
    changed = x.detach().clone()
    changed[:, 0][:, ~mask] = 5.0  # anything outside the mask changes nothing
    with torch.no_grad():
        torch.testing.assert_close(model(changed), model(x.detach()))
    assert model.config["input_mask"] is True


def test_a_bad_input_mask_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="grid's shape \\(10, 12, 8\\)"):
        _model((10, 12, 8), np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        _model((10, 12, 8), np.full((10, 12, 8), 0.5))


def test_a_saved_masked_model_loads_back_with_its_mask(tmp_path):
    from slicemri_lite.train import load_model, save_model

    shape = (10, 12, 8)
    mask = np.zeros(shape, bool)
    mask[2:8] = True
    model = _model(shape, mask)
    save_model(model, tmp_path / "model.pt", task="ad")
    loaded = load_model(tmp_path / "model.pt").eval()
    torch.testing.assert_close(loaded.input_mask, model.input_mask)
    x = torch.rand(1, 1, *shape)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_brain_only_features_are_the_masked_models_own_and_keep_old_keys():
    cohort = small_cohort().subset(range(3))
    spec = FeatureSpec("resnet18", "random", "sagittal", seed=1, mask="brain")
    assert spec.name.endswith("-brain")
    plain = dataclasses.replace(spec, mask="none")
    assert "mask" not in plain.identity() and spec.identity()["mask"] == "brain"
    features = slice_features(cohort, spec, disk=False)
    brain = grid_brain_mask(4)
    torch.manual_seed(1)
    model = SliceSetNet.paper("resnet18", volume_shape=cohort.shape, pretrained=False,
                              input_mask=brain).eval()  # fmt: skip
    assert spec.matches(model) and not plain.matches(model)
    x = torch.from_numpy(np.asarray(cohort.volumes, dtype=np.float32))[:, None]
    with torch.no_grad():
        np.testing.assert_allclose(features.values, model.encoder_features(x).numpy(),
                                   rtol=1e-4, atol=1e-4)  # fmt: skip
    with pytest.raises(ValueError, match="'mask' must be one of"):
        FeatureSpec(mask="skull")
    feat.clear_memory_cache()


def test_effect_mask_can_leave_out_what_another_effect_changes():
    brain = np.ones((10, 10, 10), bool)
    effect = np.linspace(0, 1, 1000).reshape(10, 10, 10)
    other = np.zeros_like(brain)
    other[9] = True  # the strongest voxels of the effect, also changed by "ageing"
    plain = analysis.effect_mask(effect, brain, 0.9)
    kept = analysis.effect_mask(effect, brain, 0.9, exclude=other)
    assert plain[9].all() and not (kept & other).any()
    assert kept.sum() == pytest.approx(0.1 * (~other).sum(), abs=1)


def test_planted_pairs_differ_by_the_effect_only():
    cohort = planted_cohort(n=24)
    cn = np.flatnonzero((cohort.table["diagnosis"] == "CN").to_numpy())
    effect = np.zeros(cohort.shape, np.float32)
    effect[2:5, 2:5, 2:5] = -0.3
    pairs = analysis.planted_pairs(cohort, {"train": cn[:4], "test": cn[4:6]}, effect)
    assert len(pairs) == 12 and list(pairs.table["diagnosis"][:2]) == ["CN", "AD"]
    assert (pairs.table["split"] == "train").sum() == 8
    difference = np.asarray(pairs.volumes[1], np.float32) - np.asarray(pairs.volumes[0], np.float32)
    np.testing.assert_allclose(difference, effect, atol=2e-3)  # float16 volumes
    ad = np.flatnonzero((cohort.table["diagnosis"] == "AD").to_numpy())
    with pytest.raises(ValueError, match="needs CN scans"):
        analysis.planted_pairs(cohort, {"train": ad[:2]}, effect)


def test_a_positive_control_separates_its_pairs_and_maps_only_its_region():
    cohort = planted_cohort(n=48, shape=(12, 14, 12), noise=0.05)
    cohort.effects["ad"] = np.zeros(cohort.shape, np.float32)
    cohort.effects["ad"][4:8, 5:9, 4:8] = -0.4
    region = cohort.effects["ad"] != 0
    controls, planted = analysis.positive_controls(
        cohort,
        "ad",
        {"region only": region},
        (12, 4, 4),
        encoder="resnet18",
        recipe="book",
        pretrained=False,
    )
    model, auc = controls["region only"]
    assert planted.shape == (4, *cohort.shape) and 0 <= auc <= 1
    maps = analysis.attributions(model, planted, "smoothgrad", samples=2)
    assert np.abs(maps[:, ~region]).max() == 0 and np.abs(maps[:, region]).max() > 0


def test_predictions_from_scores_feed_the_learning_check_and_auc_table():
    cohort = planted_cohort(n=60)
    test = cohort.indices("test")
    is_ad = cohort.targets("ad", test)
    rng = np.random.default_rng(0)
    scores = {"age_only": experiments.age_only_scores(cohort, "test"),
              ("good", 0): is_ad + rng.normal(0, 0.1, len(test)),
              ("good", 1): is_ad + rng.normal(0, 0.1, len(test)),
              "noise": rng.normal(size=len(test))}  # fmt: skip
    predictions = experiments.predictions_from_scores(cohort, test, scores)
    assert len(predictions) == 4 * len(test)
    check = experiments.learning_check(predictions, "auc").set_index("label")
    assert check.loc["good", "n_seeds"] == 2
    table = experiments.auc_table(is_ad, scores)
    assert list(table["model"]) == ["age_only", "good", "good", "noise"]
    assert (table["low"] <= table["auc"]).all() and (table["auc"] <= table["high"]).all()
    with pytest.raises(ValueError, match="values for"):
        experiments.predictions_from_scores(cohort, test, {"short": [0.1]})


def test_gradient_maps_are_the_same_with_the_encoder_checkpointed_over_slice_chunks():
    shape = (10, 12, 8)
    model = _model(shape, seed=3)
    volumes = np.random.default_rng(0).random((2, *shape)).astype(np.float32)
    for method in ("smoothgrad", "integrated_gradients"):
        options = dict(samples=2, steps=3) if method == "smoothgrad" else dict(steps=3)
        torch.manual_seed(0)
        whole = analysis.attributions(model, volumes, method, slice_chunk=None, **options)
        torch.manual_seed(0)
        chunked = analysis.attributions(model, volumes, method, slice_chunk=3, **options)
        np.testing.assert_allclose(chunked, whole, rtol=1e-4, atol=1e-6)
    calls = []
    hook = model.encoder.register_forward_hook(lambda m, i, o: calls.append(len(i[0])))
    analysis.attributions(model, volumes[:1], "smoothgrad", samples=1, slice_chunk=4)
    hook.remove()
    assert max(calls) == 4 and sum(calls) >= shape[0]  # 4 slices at a time, every slice
