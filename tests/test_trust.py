"""Chapter 9's tools: conformal intervals, recalibration, test-retest, sites, the subgroup audit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slicemri_lite import analysis


def _ages(n: int, seed: int = 0, sd: float = 5.0):
    rng = np.random.default_rng(seed)
    true = rng.uniform(20, 90, n)
    return true, true + rng.normal(0, sd, n)


def test_conformal_intervals_cover_at_their_nominal_level():
    true, predicted = _ages(4000)
    intervals = analysis.conformal_intervals(predicted[:1000], true[:1000], predicted[1000:])
    table = analysis.coverage_table(true[1000:], intervals)
    for level, coverage in zip(table["level"], table["coverage"], strict=True):
        assert coverage == pytest.approx(level, abs=0.02)
    widths = table.set_index("level")["width"]
    assert widths[0.8] < widths[0.9] < widths[0.95]
    # the 90 % half-width is the calibration errors' conformal quantile (normal errors, sd 5)
    assert widths[0.9] / 2 == pytest.approx(1.645 * 5, rel=0.08)


def test_the_interval_is_the_conformal_quantile_of_the_calibration_errors():
    true, predicted = _ages(19, seed=1)
    bounds = analysis.conformal_intervals(predicted, true, np.array([50.0]), [0.9])[0.9]
    errors = np.sort(np.abs(true - predicted))
    q = errors[int(np.ceil(20 * 0.9)) - 1]  # the 18th of 19
    np.testing.assert_allclose(bounds[0], [50 - q, 50 + q])
    true, predicted = _ages(11, seed=1)  # the fewest a 90 % interval accepts
    bounds = analysis.conformal_intervals(predicted, true, np.array([50.0]), [0.9])[0.9]
    q = np.sort(np.abs(true - predicted))[int(np.ceil(12 * 0.9)) - 1]
    np.testing.assert_allclose(bounds[0], [50 - q, 50 + q])


def test_too_small_a_calibration_split_is_refused():
    true, predicted = _ages(19)
    with pytest.raises(ValueError, match="cannot give a 95% interval .it needs at least 20"):
        analysis.conformal_intervals(predicted, true, predicted, [0.95])
    assert len(analysis.conformal_intervals(predicted, true, predicted[:0], [0.9])[0.9]) == 0


def test_coverage_per_group_shows_where_marginal_coverage_hides_a_failure():
    """Errors twice as large in one group: covered marginally, not in that group."""
    rng = np.random.default_rng(2)
    group = np.repeat(["a", "b"], 2000)
    true = rng.uniform(20, 90, 4000)
    predicted = true + rng.normal(0, np.where(group == "a", 3.0, 6.0))
    cal = rng.permutation(4000)[:1000]
    rest = np.setdiff1d(np.arange(4000), cal)
    intervals = analysis.conformal_intervals(predicted[cal], true[cal], predicted[rest], [0.9])
    table = analysis.coverage_table(true[rest], intervals, {"group": group[rest]}).set_index(
        "group"
    )
    assert table.loc["all", "coverage"] == pytest.approx(0.9, abs=0.02)
    assert table.loc["b", "coverage"] < 0.85 < 0.95 < table.loc["a", "coverage"]


def test_small_calibration_splits_spread_coverage_more():
    true, predicted = _ages(400, seed=3)
    effect = analysis.calibration_size_effect(predicted, true, [11, 100], repeats=100)
    spread = (effect["p95"] - effect["p5"]).to_numpy()
    assert spread[0] > 1.5 * spread[1]
    assert effect["coverage"].between(0.85, 0.97).all()


def test_ece_is_zero_for_calibrated_probabilities_and_large_for_overconfident_ones():
    rng = np.random.default_rng(4)
    p = rng.uniform(0, 1, 20000)
    y = (rng.uniform(0, 1, 20000) < p).astype(float)
    assert analysis.expected_calibration_error(y, p) < 0.02
    overconfident = np.where(p > 0.5, 0.99, 0.01)
    assert analysis.expected_calibration_error(y, overconfident) > 0.2


def test_temperature_scaling_recovers_a_known_temperature_and_keeps_the_ranking():
    rng = np.random.default_rng(5)
    logit = rng.normal(0, 2, 5000)
    y = (rng.uniform(0, 1, 5000) < 1 / (1 + np.exp(-logit))).astype(float)
    sharpened = 1 / (1 + np.exp(-3 * logit))  # overconfident by a factor 3
    recalibrate = analysis.fit_recalibration("temperature", sharpened, y)
    assert recalibrate.temperature == pytest.approx(3, rel=0.1)
    q = recalibrate(sharpened)
    assert (np.diff(q[np.argsort(sharpened)]) >= 0).all()  # monotone: the ranking stays
    table = analysis.calibration_summary({"m": (y, sharpened)}, {"m": (y, sharpened)})
    ece = table.set_index("recalibration")["ece"]
    assert ece["temperature"] < ece["none"] / 3 and ece["isotonic"] < ece["none"] / 3


def test_test_retest_icc_follows_the_share_of_variance_between_participants():
    rng = np.random.default_rng(6)
    people = rng.normal(0, 3, 300)  # between-participant sd 3, within sd 1: ICC 0.9
    table = pd.DataFrame({"participant_id": np.repeat(np.arange(300), 2), "session": np.tile([1, 2], 300),
                          "value": np.repeat(people, 2) + rng.normal(0, 1, 600)})  # fmt: skip
    found = analysis.test_retest(table, "value")
    assert found["icc"] == pytest.approx(0.9, abs=0.03)
    assert found["icc_low"] < found["icc"] < found["icc_high"]
    assert found["within_sd"] == pytest.approx(1.0, rel=0.1)


def test_test_retest_needs_every_participant_scanned_the_same_number_of_times():
    table = pd.DataFrame({"participant_id": [1, 1, 2], "session": [1, 2, 1], "value": [1.0, 2, 3]})
    with pytest.raises(ValueError, match="same number"):
        analysis.test_retest(table, "value")


def test_the_subgroup_audit_finds_a_biased_group_and_clears_the_others():
    rng = np.random.default_rng(7)
    group = np.repeat(["a", "b", "c"], 200)
    error = rng.normal(0, 4, 600) + np.where(group == "c", 3.0, 0.0)
    table = analysis.subgroup_audit(error, {"g": group}, n_boot=500).set_index("group")
    assert table.loc["c", "bias_vs_rest_low"] > 2
    assert table.loc["a", "bias_vs_rest_high"] < 0  # the others are pulled down by c's share
    assert table.loc["c", "n"] == 200


def test_the_site_probe_finds_a_site_shift_and_chance_without_one():
    rng = np.random.default_rng(8)
    sites = np.repeat(["s0", "s1", "s2"], 60)
    x = rng.normal(size=(180, 20))
    assert analysis.site_probe(x, sites)["balanced_accuracy"] < 0.5
    x[sites == "s1"] += 1.0
    x[sites == "s2"] -= 1.0
    found = analysis.site_probe(x, sites)
    assert found["balanced_accuracy"] > 0.8 and found["chance"] == pytest.approx(1 / 3)


def test_combat_removes_a_site_shift_it_was_fitted_on_and_refuses_an_unseen_site():
    rng = np.random.default_rng(9)
    n = 240
    table = pd.DataFrame({"site": np.tile(["s0", "s1", "s2"], n // 3), "age": rng.uniform(20, 90, n),
                          "sex": rng.choice(["F", "M"], n)})  # fmt: skip
    x = rng.normal(size=(n, 10)) + 0.05 * table["age"].to_numpy()[:, None]
    x[table["site"] == "s1"] += 2.0
    x[table["site"] == "s2"] -= 2.0
    x[:, -1] = 0.0  # a unit that never fires passes through
    train = np.arange(n) < 160
    before = analysis.site_probe(x[~train], table["site"][~train])["balanced_accuracy"]
    harmonised = analysis.harmonise(x[train], table[train], x[~train], table[~train])
    after = analysis.site_probe(harmonised, table["site"][~train])["balanced_accuracy"]
    assert before > 0.7 and after < 0.5
    assert np.isfinite(harmonised).all() and (harmonised[:, -1] == 0).all()
    age_r = np.corrcoef(harmonised[:, 0], table["age"][~train])[0, 1]
    assert age_r > 0.5  # age, a covariate, is kept
    with pytest.raises(ValueError, match="cannot harmonise site"):
        analysis.harmonise(x[train], table[train], x[~train], table[~train].assign(site="s9"))


def test_site_splits_train_loso_and_within_on_equal_numbers():
    table = pd.DataFrame(
        {"site": np.tile(["a", "b", "c"], 30), "split": np.repeat(["train", "test"], 45)}
    )
    splits = analysis.site_splits(table, "a")
    assert len(splits["loso"]) == len(splits["within"]) == 30
    assert set(table["site"].iloc[splits["loso"]]) == {"b", "c"}
    assert "a" in set(table["site"].iloc[splits["within"]])
    assert (table.iloc[splits["test"]][["site", "split"]] == ["a", "test"]).all().all()
