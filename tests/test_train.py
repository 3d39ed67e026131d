"""fit / evaluate / predict on tiny hand-made cohorts with a planted age signal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from data_fixtures import planted_cohort

from slicemri_lite.data import Cohort
from slicemri_lite.models import Conv3DNet, SliceSetNet
from slicemri_lite.train import (
    age_metrics,
    evaluate,
    feature_standardisation,
    fit,
    fold_standardisation,
    predict,
)

SHAPE = (18, 22, 20)


def tiny_cohort(n: int = 24, seed: int = 0) -> Cohort:
    """Noise volumes whose central block brightens with age (and darkens with AD)."""
    return planted_cohort(n, SHAPE, seed)


def scratch_net(seed: int = 0, **kwargs) -> SliceSetNet:
    torch.manual_seed(seed)
    return SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE, embed_dim=16, **kwargs)


QUIET = {"progress": False, "device": "cpu"}


def _same_run(a, b) -> None:
    cols = [c for c in a.history.columns if c != "seconds"]
    pd.testing.assert_frame_equal(a.history[cols], b.history[cols], check_exact=False, rtol=1e-5)
    assert a.metrics.keys() == b.metrics.keys()
    for key in a.metrics:
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-5, nan_ok=True)


def test_loss_falls_when_overfitting_eight_volumes():
    cohort = tiny_cohort(8)
    cohort.table["split"] = ["train"] * 6 + ["val", "test"]
    result = fit(scratch_net(), cohort, epochs=12, batch_size=2, lr=3e-4, patience=None, **QUIET)
    losses = result.history["train_loss"].to_numpy()
    assert len(losses) == 12 and np.isfinite(losses).all()
    assert losses[-3:].mean() < 0.5 * losses[:2].mean()


def test_training_beats_the_training_mean_and_predicts_years():
    cohort = tiny_cohort(32)
    model = scratch_net()
    result = fit(model, cohort, epochs=12, batch_size=4, lr=3e-4, patience=None, **QUIET)
    test = cohort.table[cohort.table["split"] == "test"]
    train_mean = cohort.table.loc[cohort.table["split"] == "train", "age"].mean()
    mean_mae = np.abs(test["age"] - train_mean).mean()
    predicted = predict(model, cohort, "test", device="cpu")
    assert predicted.shape == (len(test),)
    assert result.metrics["test_mae"] < 0.8 * mean_mae
    assert evaluate(model, cohort, "test", "age", device="cpu") == pytest.approx(
        age_metrics(test["age"].to_numpy(), predicted)
    )
    assert float(model.target_mean) == pytest.approx(train_mean, rel=1e-5)
    assert set(result.history.columns) >= {"epoch", "train_loss", "val_loss", "val_mae", "lr"}


def test_cpu_training_is_deterministic_under_a_seed():
    cohort = tiny_cohort(16)
    a = fit(scratch_net(), cohort, epochs=3, batch_size=4, seed=3, **QUIET)
    b = fit(scratch_net(), cohort, epochs=3, batch_size=4, seed=3, **QUIET)
    _same_run(a, b)
    for key, value in a.best_state.items():
        torch.testing.assert_close(value, b.best_state[key], rtol=0, atol=0)


def test_a_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    cohort = tiny_cohort(16)
    settings = {"epochs": 4, "batch_size": 4, "patience": None, **QUIET}
    full = fit(scratch_net(), cohort, checkpoint=tmp_path / "full.pt", **settings)

    def crash_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    path = tmp_path / "resumed.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(scratch_net(), cohort, checkpoint=path, callback=crash_after_two, **settings)
    # A differently initialised model: everything must come from the checkpoint.
    resumed = fit(scratch_net(seed=9), cohort, checkpoint=path, **settings)
    _same_run(full, resumed)
    assert list(resumed.history["epoch"]) == [1, 2, 3, 4]


def test_a_checkpoint_from_another_run_is_refused(tmp_path):
    cohort = tiny_cohort(16)
    path = tmp_path / "run.pt"
    fit(scratch_net(), cohort, epochs=1, batch_size=4, checkpoint=path, **QUIET)
    with pytest.raises(ValueError, match="different run"):
        fit(scratch_net(), cohort, epochs=1, batch_size=4, lr=0.1, checkpoint=path, **QUIET)


def test_precomputed_features_train_exactly_like_a_frozen_encoder():
    from slicemri_lite.train import FeatureSpec, clear_memory_cache, slice_features

    cohort = tiny_cohort(16)
    # a batch-norm encoder, fed as the book's own SliceSetNet feeds it
    spec = FeatureSpec("timm:mobilenetv3_small_050", "random", seed=0, inputs="book")

    def net():
        torch.manual_seed(0)  # same encoder weights as the spec's; eval mode kept while frozen
        return SliceSetNet(spec.encoder, pretrained=False, volume_shape=SHAPE, embed_dim=16,
                           aggregation="attention")  # fmt: skip

    settings = {"epochs": 3, "batch_size": 4, **QUIET}
    own_model, cached_model = net(), net()
    encoder_before = {k: v.clone() for k, v in own_model.encoder.state_dict().items()}
    own = fit(own_model, cohort, freeze_encoder=True, **settings)
    features = slice_features(cohort, spec, disk=False)
    cached = fit(cached_model, cohort, features=features, **settings)
    clear_memory_cache()
    _same_run(own, cached)
    for key, value in own_model.encoder.state_dict().items():
        torch.testing.assert_close(value, encoder_before[key], rtol=0, atol=0)
    np.testing.assert_allclose(  # the returned models take raw volumes, and agree
        predict(own_model, cohort, device="cpu"), predict(cached_model, cohort, device="cpu"),
        rtol=1e-5, atol=1e-4,
    )  # fmt: skip


def test_features_of_another_cohort_or_encoder_are_refused():
    from slicemri_lite.train import FeatureSpec, slice_features

    cohort = tiny_cohort(8)
    spec = FeatureSpec("scratch", "random", "axial", inputs="book")
    features = slice_features(cohort, spec, disk=False)
    with pytest.raises(ValueError, match="don't match the model"):
        fit(scratch_net(), cohort, features=features, epochs=1, **QUIET)
    with pytest.raises(ValueError, match="8 rows but the cohort has 4"):
        fit(scratch_net(axis="axial"), cohort.subset(range(4)), features=features, **QUIET)


def test_folded_standardisation_gives_the_standardised_head_on_raw_volumes():
    cohort = tiny_cohort(8)
    model = scratch_net(aggregation="attention").eval()
    x = torch.from_numpy(cohort.volumes)[:, None]  # (n, 1, X, Y, Z)
    with torch.no_grad():
        features = model.encoder_features(x)  # (n, S, E)
        mean, std = feature_standardisation(features)
        scaled = (features - mean) / std
        torch.testing.assert_close(
            scaled.mean(dim=(0, 1)), torch.zeros_like(mean), atol=1e-5, rtol=0
        )
        torch.testing.assert_close(scaled.std(dim=(0, 1), correction=0), torch.ones_like(std))
        expected = model.forward_features(scaled)
        fold_standardisation(model.project, mean, std)
        torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-4)


def test_frozen_fit_returns_a_raw_volume_model_scoring_like_its_history():
    cohort = tiny_cohort(16)
    result = fit(scratch_net(), cohort, epochs=3, batch_size=4, freeze_encoder=True, **QUIET)
    # history: unfolded model on standardised features; metrics: folded model on volumes
    best = result.history.iloc[result.best_epoch - 1]
    assert result.metrics["val_mae"] == pytest.approx(best["val_mae"], rel=1e-5)


def test_a_random_init_frozen_encoder_learns_the_planted_age_signal():
    cohort = tiny_cohort(32)
    table = cohort.table
    train_age = table.loc[table["split"] == "train", "age"]
    val_age = table.loc[table["split"] == "val", "age"]
    mean_loss = (((val_age - train_age.mean()) / train_age.std(ddof=0)) ** 2).mean()
    torch.manual_seed(0)
    model = SliceSetNet("efficientnet_lite0", pretrained=False, volume_shape=SHAPE, embed_dim=16)
    result = fit(
        model, cohort, epochs=12, batch_size=4, freeze_encoder=True, patience=None, **QUIET
    )
    assert result.history["val_loss"].min() < 0.5 * mean_loss


def test_ad_task_gives_probabilities_and_classification_metrics():
    cohort = tiny_cohort(16)
    model = scratch_net()
    result = fit(model, cohort, task="ad", epochs=2, batch_size=4, **QUIET)
    assert {"val_auc", "val_balanced_accuracy", "test_auc"} <= set(result.metrics)
    probability = predict(model, cohort, "test", device="cpu")
    assert ((probability >= 0) & (probability <= 1)).all()
    assert float(model.target_std) == 1.0 and float(model.target_mean) == 0.0


def test_conv3d_baseline_trains_and_its_loss_falls():
    torch.manual_seed(0)
    model = Conv3DNet(volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8))
    cohort = tiny_cohort(8)
    cohort.table["split"] = ["train"] * 6 + ["val", "test"]
    result = fit(model, cohort, epochs=8, batch_size=2, lr=3e-3, patience=None, **QUIET)
    losses = result.history["train_loss"].to_numpy()
    assert np.isfinite(result.metrics["test_mae"]) and losses[-2:].mean() < 0.7 * losses[0]


def test_bad_arguments_are_reported():
    cohort = tiny_cohort(8)
    with pytest.raises(ValueError, match=r"'task' must be one of \['age', 'ad'\]; 'sex'"):
        fit(scratch_net(), cohort, task="sex", **QUIET)
    with pytest.raises(ValueError, match="'freeze_encoder' needs"):
        fit(Conv3DNet(volume_shape=SHAPE), cohort, freeze_encoder=True, **QUIET)
    with pytest.raises(ValueError, match=r"'split' must be one of"):
        predict(scratch_net(), cohort, split="validation", task="age")


# ---------------------------------------------------------------- the recipe fit applies


def _train_size(cohort) -> int:
    return len(cohort.indices("train"))


@pytest.fixture
def optimiser_steps():
    """Every optimiser step taken while the test runs: (optimiser type, its param_groups[0])."""
    seen = []

    def hook(optimizer, args, kwargs):
        group = optimizer.param_groups[0]
        seen.append((type(optimizer), group["lr"], group["weight_decay"]))

    from torch.optim.optimizer import register_optimizer_step_post_hook

    handle = register_optimizer_step_post_hook(hook)
    yield seen
    handle.remove()


def test_options_after_the_cohort_are_keyword_only_and_unknown_ones_are_refused():
    cohort = tiny_cohort(8)
    with pytest.raises(TypeError, match="positional"):
        fit(scratch_net(), cohort, "age", **QUIET)
    with pytest.raises(TypeError, match=r"\['epoch'\].*Recipe fields"):
        fit(scratch_net(), cohort, epoch=2, **QUIET)


def test_without_a_recipe_a_network_trained_end_to_end_takes_the_papers():
    from slicemri_lite.train import RECIPES

    cohort = tiny_cohort(16)
    result = fit(scratch_net(), cohort, epochs=1, **QUIET)
    assert result.recipe == replace(RECIPES["paper"], epochs=1)
    assert list(result.history["recipe"]) == ["paper"]


def test_without_a_recipe_frozen_features_take_the_books():
    from slicemri_lite.train import RECIPES

    cohort = tiny_cohort(16)
    frozen = fit(scratch_net(), cohort, freeze_encoder=True, epochs=1, **QUIET)
    assert frozen.recipe == replace(RECIPES["book"], epochs=1)
    assert list(frozen.history["recipe"]) == ["book"]


@pytest.mark.parametrize("batch_size", [2, 4])
def test_the_recipes_batch_size_and_epochs_set_the_optimiser_steps(batch_size, optimiser_steps):
    from slicemri_lite.train import get_recipe

    cohort = tiny_cohort(16)
    recipe = replace(get_recipe("paper"), batch_size=batch_size, epochs=3)
    result = fit(scratch_net(), cohort, recipe=recipe, **QUIET)
    assert len(result.history) == 3
    assert len(optimiser_steps) == 3 * -(-_train_size(cohort) // batch_size)


def test_the_recipes_optimiser_lr_and_weight_decay_reach_the_optimiser(optimiser_steps):
    from slicemri_lite.train import get_recipe

    cohort = tiny_cohort(8)
    paper = replace(get_recipe("paper"), lr=0.02, weight_decay=0.3)
    fit(scratch_net(), cohort, recipe=paper, epochs=1, **QUIET)
    assert set(optimiser_steps) == {(torch.optim.Adam, 0.02, 0.3)}
    optimiser_steps.clear()
    # keyword overrides replace the named recipe's fields the same way
    fit(scratch_net(), cohort, recipe="book", epochs=1, lr=0.01, weight_decay=0.05,
        schedule="constant", **QUIET)  # fmt: skip
    assert set(optimiser_steps) == {(torch.optim.AdamW, 0.01, 0.05)}


@pytest.mark.parametrize(
    ("recipe", "overrides", "trained_epochs"),
    [
        ("paper", {}, 8),  # no early stopping: every epoch
        ("book", {}, 6),  # patience 5: epoch 1, then 5 without progress
        ("book", {"patience": 2}, 3),
        ("book", {"patience": None}, 8),
    ],
)
def test_the_recipes_patience_stops_training(recipe, overrides, trained_epochs):
    # lr 0: the validation loss never improves on epoch 1
    cohort = tiny_cohort(12)
    result = fit(scratch_net(), cohort, recipe=recipe, epochs=8, batch_size=4, lr=0.0,
                 **overrides, **QUIET)  # fmt: skip
    assert len(result.history) == trained_epochs
    assert result.best_epoch == 1


def test_the_recipe_says_which_weights_are_kept():
    cohort = tiny_cohort(16)
    settings = {"recipe": "paper", "epochs": 4, "batch_size": 4, "lr": 3e-3, **QUIET}
    last = fit(scratch_net(), cohort, keep="last", **settings)
    assert last.best_epoch == 4
    best = fit(scratch_net(), cohort, keep="best_val", **settings)
    assert best.best_epoch == int(best.history["val_loss"].idxmin()) + 1


def test_evaluate_and_predict_take_the_task_from_the_model():
    cohort = tiny_cohort(16)
    model = scratch_net()
    fit(model, cohort, task="ad", epochs=1, batch_size=4, **QUIET)
    assert {"auc", "balanced_accuracy"} <= set(evaluate(model, cohort, device="cpu"))
    assert "mae" in evaluate(model, cohort, task="age", device="cpu")  # an explicit override
    with pytest.raises(ValueError, match="'task' must be one of"):
        evaluate(scratch_net(), cohort, device="cpu")


def test_predict_takes_row_positions_instead_of_a_split():
    """``rows=``: the same numbers as the split's, for any rows (e.g. a cohort split elsewhere)."""
    cohort = tiny_cohort(16)
    model = scratch_net()
    fit(model, cohort, task="age", epochs=1, batch_size=4, **QUIET)
    test = cohort.indices("test")
    by_split = predict(model, cohort, "test", device="cpu")
    by_rows = predict(model, cohort, rows=test, device="cpu")
    np.testing.assert_allclose(by_rows, by_split, rtol=1e-5)
    assert len(predict(model, cohort, rows=[0, 1, 0], device="cpu")) == 3
