"""The scores every chapter reports."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics as skm

from slicemri_lite.train import (
    AD_METRICS,
    AgeBiasCorrection,
    ad_metrics,
    calibration_curve,
    choose_threshold,
    cohens_d,
    confusion_matrix,
    run_metrics,
)


def test_ad_metrics_known_values():
    is_ad = np.array([0, 0, 1, 1])
    scores = ad_metrics(is_ad, np.array([0.1, 0.6, 0.4, 0.9]))
    assert scores["auc"] == 0.75  # 3 of the 4 (AD, CN) pairs are ranked correctly
    assert scores["balanced_accuracy"] == 0.5  # one of each class on the right side of 0.5


def test_ad_metrics_auc_is_nan_with_one_class():
    scores = ad_metrics(np.array([0, 0, 0]), np.array([0.2, 0.7, 0.1]))
    assert np.isnan(scores["auc"])
    assert scores["balanced_accuracy"] == 2 / 3


# ---------------------------------------------------------------- AD metrics against sklearn


IS_AD = np.array([0, 0, 0, 0, 0, 0, 1, 1, 1, 1])
PROBABILITY = np.array([0.05, 0.2, 0.35, 0.4, 0.55, 0.7, 0.3, 0.6, 0.8, 0.95])


def test_ad_metrics_match_scikit_learn_at_a_given_threshold():
    scores = ad_metrics(IS_AD, PROBABILITY, threshold=0.5)
    called = PROBABILITY >= 0.5
    assert list(scores) == list(AD_METRICS)
    assert scores["auc"] == pytest.approx(skm.roc_auc_score(IS_AD, PROBABILITY))
    assert scores["pr_auc"] == pytest.approx(skm.average_precision_score(IS_AD, PROBABILITY))
    assert scores["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(IS_AD, called))
    assert scores["sensitivity"] == pytest.approx(skm.recall_score(IS_AD, called))
    assert scores["specificity"] == pytest.approx(skm.recall_score(1 - IS_AD, ~called))
    assert scores["brier"] == pytest.approx(skm.brier_score_loss(IS_AD, PROBABILITY))
    assert scores["threshold"] == 0.5


def test_brier_is_undefined_for_decision_scores_and_the_confusion_matrix_matches():
    decision = 4 * PROBABILITY - 2  # a ridge classifier's scores: not probabilities
    assert np.isnan(ad_metrics(IS_AD, decision, 0.0)["brier"])
    assert ad_metrics(IS_AD, decision, 0.0)["auc"] == pytest.approx(
        ad_metrics(IS_AD, PROBABILITY)["auc"]
    )
    table = confusion_matrix(IS_AD, PROBABILITY, 0.5)
    np.testing.assert_array_equal(table.to_numpy(), skm.confusion_matrix(IS_AD, PROBABILITY >= 0.5))
    assert list(table.index) == ["CN", "AD"] and list(table.columns) == ["CN", "AD"]


def test_the_threshold_is_chosen_on_validation_never_on_test():
    # validation separates at 0.3; test would be best cut at 0.75
    y_val, p_val = np.array([0, 0, 0, 1, 1, 1]), np.array([0.1, 0.2, 0.25, 0.35, 0.5, 0.9])
    y_test, p_test = np.array([0, 0, 0, 1, 1, 1]), np.array([0.4, 0.6, 0.7, 0.8, 0.85, 0.9])
    chosen = choose_threshold(y_val, p_val)
    assert 0.25 < chosen < 0.35
    assert choose_threshold(y_test, p_test) > 0.7  # what test alone would have chosen
    scores = run_metrics("ad", y_val, p_val, y_test, p_test)
    assert scores["threshold"] == chosen
    assert scores["specificity"] == 0.0  # every test CN lies above the validation threshold
    assert (
        scores["balanced_accuracy"]
        < ad_metrics(y_test, p_test, choose_threshold(y_test, p_test))["balanced_accuracy"]
    )
    assert scores["val_auc"] == 1.0
    # a validation split without AD gives no threshold, and no threshold metrics
    missing = run_metrics("ad", np.zeros(3), np.array([0.1, 0.2, 0.3]), y_test, p_test)
    assert np.isnan(missing["threshold"]) and np.isnan(missing["sensitivity"])
    assert np.isfinite(missing["auc"])


def test_chosen_threshold_maximises_balanced_accuracy():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    p = np.clip(0.3 * y + rng.normal(0.4, 0.2, 200), 0, 1)
    best = ad_metrics(y, p, choose_threshold(y, p))["balanced_accuracy"]
    for t in np.linspace(0, 1, 101):
        assert ad_metrics(y, p, t)["balanced_accuracy"] <= best + 1e-12


def test_calibration_curve_of_a_calibrated_model_lies_on_the_diagonal():
    rng = np.random.default_rng(1)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)
    curve = calibration_curve(y, p, n_bins=5)
    assert len(curve) == 5 and curve["n"].sum() == p.size
    np.testing.assert_allclose(curve["observed"], curve["predicted"], atol=0.02)
    with pytest.raises(ValueError, match="needs probabilities"):
        calibration_curve(y, p * 3 - 1)


def test_cohens_d_uses_the_pooled_standard_deviation():
    a, b = np.array([2.0, 4.0, 6.0]), np.array([1.0, 2.0, 3.0, 4.0])
    pooled = np.sqrt((2 * a.var(ddof=1) + 3 * b.var(ddof=1)) / 5)
    assert cohens_d(a, b) == pytest.approx((4.0 - 2.5) / pooled)


# ---------------------------------------------------------------- brain-age bias correction


def _shrunk_predictions(age: np.ndarray, rng, shrink: float = 0.6) -> np.ndarray:
    """An age model that regresses to the mean: predictions pulled toward 55 years."""
    return 55 + shrink * (age - 55) + rng.normal(0, 3, age.size)


@pytest.mark.parametrize("method", ["linear", "offset"])
def test_bias_correction_removes_the_gaps_dependence_on_age_on_held_out_data(method):
    rng = np.random.default_rng(0)
    fit_age, held_age = rng.uniform(20, 90, 300), rng.uniform(20, 90, 300)
    fit_pred, held_pred = _shrunk_predictions(fit_age, rng), _shrunk_predictions(held_age, rng)
    raw_gap = held_pred - held_age
    assert np.corrcoef(held_age, raw_gap)[0, 1] < -0.8  # the bias: old look young
    correction = AgeBiasCorrection(method).fit(fit_age, fit_pred)
    gap = correction.gap(held_age, held_pred)
    assert abs(np.corrcoef(held_age, gap)[0, 1]) < 0.1
    assert abs(gap.mean()) < 1.0
    np.testing.assert_allclose(gap, correction.transform(held_age, held_pred) - held_age)


def test_linear_correction_inverts_the_fitted_line_and_offset_subtracts_it():
    age = np.array([30.0, 50.0, 70.0])
    predicted = 20 + 0.5 * age  # exactly linear
    linear = AgeBiasCorrection("linear").fit(age, predicted)
    np.testing.assert_allclose(linear.transform(age, predicted), age)
    assert linear.slope_ == pytest.approx(0.5) and linear.intercept_ == pytest.approx(20)
    offset = AgeBiasCorrection("offset").fit(age, predicted)
    np.testing.assert_allclose(offset.transform(age, predicted), age)
    assert offset.slope_ == pytest.approx(-0.5)


def test_bias_correction_refuses_bad_use():
    with pytest.raises(ValueError, match="'method' must be one of"):
        AgeBiasCorrection("quadratic")
    with pytest.raises(ValueError, match="not fitted yet"):
        AgeBiasCorrection().transform([50.0], [55.0])
    with pytest.raises(ValueError, match="slope ~0"):
        AgeBiasCorrection("linear").fit([30.0, 60.0, 90.0], [55.0, 55.0, 55.0])
