"""The one ridge: Gram-matrix solution equals scikit-learn's, penalty chosen on validation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from data_fixtures import small_cohort
from sklearn.linear_model import Ridge as SklearnRidge
from sklearn.metrics import roc_auc_score

from slicemri_lite.train import MeanBaseline, Ridge, VoxelRidge, downsample_volumes, linear_baseline


def linear_data(n=60, f=300, noise=0.5, seed=0):
    """More features than rows, as with voxels; the target is linear in 5 of them."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, f))
    y = 50 + 10 * x[:, :5].sum(axis=1) + noise * rng.normal(size=n)
    return x, y


def test_the_chosen_fit_equals_scikit_learn_at_the_chosen_penalty():
    x, y = linear_data()
    ridge = Ridge("age").fit(x[:40], y[:40], x[40:50], y[40:50])
    scale = np.mean(np.sum((x[:40] - x[:40].mean(0)) ** 2, axis=1))
    expected = SklearnRidge(alpha=ridge.alpha_ * scale).fit(x[:40], y[:40]).predict(x[50:])
    np.testing.assert_allclose(ridge.predict(x[50:]), expected, rtol=1e-6, atol=1e-6)


def test_the_penalty_is_the_one_with_the_best_validation_score():
    x, y = linear_data()
    ridge = Ridge("age").fit(x[:40], y[:40], x[40:50], y[40:50])
    assert ridge.alpha_ in ridge.alphas
    assert ridge.val_scores_[ridge.alpha_] == min(ridge.val_scores_.values())
    # with a target unrelated to the features, heavy penalties (close to the mean) win
    noise = np.random.default_rng(1).normal(size=len(y))
    null = Ridge("age").fit(x[:40], noise[:40], x[40:50], noise[40:50])
    assert null.alpha_ >= 1e3 * min(null.alphas) and null.alpha_ > ridge.alpha_


def test_ridge_learns_a_linear_signal_far_better_than_the_mean():
    x, y = linear_data(n=120, f=60)
    ridge = Ridge("age").fit(x[:80], y[:80], x[80:100], y[80:100])
    ridge_mae = np.abs(ridge.predict(x[100:]) - y[100:]).mean()
    mean_mae = np.abs(y[:80].mean() - y[100:]).mean()
    assert ridge_mae < 0.3 * mean_mae


def test_ad_ridge_chooses_by_auc_and_separates_the_classes():
    x, y = linear_data(n=160, f=20)
    is_ad = (y > np.median(y)).astype(float)
    ridge = Ridge("ad").fit(x[:100], is_ad[:100], x[100:120], is_ad[100:120])
    assert ridge.val_scores_[ridge.alpha_] == min(ridge.val_scores_.values())  # minus AUC
    assert roc_auc_score(is_ad[120:], ridge.predict(x[120:])) > 0.9


def test_downsampling_averages_blocks():
    volumes = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    features = downsample_volumes(volumes, 2)
    assert features.shape == (2, 8)
    assert features[0, 0] == volumes[0, :2, :2, :2].mean()


def test_linear_baseline_is_voxel_ridge_scored_on_test():
    cohort = small_cohort()
    result = linear_baseline(cohort, "age")
    direct = VoxelRidge("age").fit(cohort).predict(cohort, "test")
    np.testing.assert_allclose(result["predictions"], direct)
    assert result["n_fit"] == len(cohort.indices("train"))
    assert result["n_test"] == len(cohort.indices("test")) == len(result["predictions"])
    ages = cohort.targets("age", cohort.indices("test"))
    assert result["mae"] == pytest.approx(np.abs(direct - ages).mean())


def test_mean_baseline_predicts_the_training_mean_for_both_tasks():
    cohort = small_cohort()
    for task in ("age", "ad"):
        expected = cohort.targets(task, cohort.indices("train")).mean()
        np.testing.assert_allclose(MeanBaseline(task).fit(cohort).predict(cohort), expected)


def test_bad_requests_are_refused():
    cohort = small_cohort()
    with pytest.raises(ValueError, match="'task' must be one of \\['age', 'ad'\\]; 'sex'"):
        linear_baseline(cohort, "sex")
    no_val = dataclasses.replace(cohort, table=cohort.table.replace({"split": {"val": "train"}}))
    with pytest.raises(ValueError, match="validation rows"):
        linear_baseline(no_val, "age")
    no_ad = dataclasses.replace(cohort, table=cohort.table.assign(diagnosis="CN"))
    with pytest.raises(ValueError, match="needs AD and CN participants"):
        linear_baseline(no_ad, "ad")
