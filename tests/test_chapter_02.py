"""Chapter 2 "The cohort", executed at PROFILE="smoke": the values it glued."""

from __future__ import annotations

import math

import pytest
from notebook_tools import glued_float

pytestmark = pytest.mark.notebooks

CHAPTER = "02_the_cohort"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(CHAPTER)


def test_cohort_size_and_labels_follow_the_smoke_profile(nb):
    from slicemri_lite.experiments import get_profile

    assert glued_float(nb, "n_participants") == get_profile("smoke").n_subjects
    assert 0 < glued_float(nb, "n_ad") < glued_float(nb, "n_participants") / 2
    assert 0 < glued_float(nb, "ad_percent_over_60") <= 100
    assert glued_float(nb, "ad_min_age") == 60 and glued_float(nb, "ad_prevalence") == 35


def smoke_cohort():
    """The cohort the chapter opened at smoke (the tests share its cache)."""
    from slicemri_lite.data import open_cohort
    from slicemri_lite.experiments import get_profile

    p = get_profile("smoke")
    return open_cohort("synthetic", p.n_subjects, resolution=p.resolution, seed=0, progress=False)


def test_ridge_numbers_are_the_librarys_one_ridge_on_this_cohort(nb):
    from slicemri_lite.train import linear_baseline

    cohort = smoke_cohort()
    ridge = linear_baseline(cohort, "age")
    assert glued_float(nb, "ridge_age_mae") == pytest.approx(ridge["mae"], rel=1e-9)
    test, train = cohort.indices("test"), cohort.indices("train")
    ages = cohort.table["age"].to_numpy()
    guess = abs(ages[test] - ages[train].mean()).mean()
    assert glued_float(nb, "mean_age_mae") == pytest.approx(guess, rel=1e-9)
    both = cohort.table.groupby("split")["diagnosis"].agg(lambda d: {"AD", "CN"} <= set(d))
    auc = glued_float(nb, "ridge_ad_auc")
    if both.all():  # defined exactly when every split holds both classes
        assert auc == pytest.approx(linear_baseline(cohort, "ad")["auc"], rel=1e-9)
    else:
        assert math.isnan(auc)
    assert 0 < glued_float(nb, "brain_age_floor") < guess  # the floor is below guessing


def test_leakage_demo_reports_both_splits(nb):
    honest, leaky = glued_float(nb, "mae_subject_split"), glued_float(nb, "mae_scan_split")
    assert honest > 0 and leaky > 0
    assert glued_float(nb, "leak_share") > 50
