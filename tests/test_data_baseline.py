"""The linear baseline: the Gram-matrix ridge equals scikit-learn's, and bad requests are refused."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from data_fixtures import small_cohort
from sklearn.linear_model import Ridge

from slicemri_lite.baseline import _FittedRidge, downsample_volumes, linear_baseline


@pytest.mark.parametrize("alpha", [0.01, 10.0, 1e4])
def test_gram_ridge_matches_scikit_learn(alpha):
    rng = np.random.default_rng(0)
    X, y = (
        rng.normal(size=(30, 200)),
        rng.normal(size=30),
    )  # more features than rows, as with voxels
    new = rng.normal(size=(5, 200))
    expected = Ridge(alpha=alpha).fit(X, y).predict(new)
    np.testing.assert_allclose(
        _FittedRidge(X, y, alpha).predict(new), expected, rtol=1e-6, atol=1e-8
    )


def test_downsampling_averages_blocks():
    volumes = np.arange(2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    features = downsample_volumes(volumes, 2)
    assert features.shape == (2, 8)
    assert features[0, 0] == volumes[0, :2, :2, :2].mean()


def test_baseline_reports_scores_on_the_requested_rows():
    cohort = small_cohort()
    result = linear_baseline(cohort, "age", fit_on=("train",), score_on=("val", "test"))
    assert result["n_fit"] == len(cohort.indices("train"))
    assert result["n_test"] == len(cohort.indices("val")) + len(cohort.indices("test"))
    assert result["predictions"].shape == (result["n_test"],) and result["mae"] > 0


def test_bad_requests_are_refused():
    cohort = small_cohort()
    with pytest.raises(ValueError, match="'task' must be one of \\['age', 'ad'\\]; 'sex'"):
        linear_baseline(cohort, "sex")
    with pytest.raises(ValueError, match="must not share a split"):
        linear_baseline(cohort, "age", fit_on=("train", "test"))
    no_ad = dataclasses.replace(cohort, table=cohort.table.assign(diagnosis="CN"))
    with pytest.raises(ValueError, match="needs AD and CN participants"):
        linear_baseline(no_ad, "ad")
