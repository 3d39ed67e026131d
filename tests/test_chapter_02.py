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
    from slicemri_lite.profiles import get_profile

    assert glued_float(nb, "n_participants") == get_profile("smoke").n_subjects
    assert 0 < glued_float(nb, "n_ad") < glued_float(nb, "n_participants") / 2
    assert 0 < glued_float(nb, "ad_percent_over_60") <= 100
    assert glued_float(nb, "ad_min_age") == 60 and glued_float(nb, "ad_prevalence") == 35


def test_linear_baseline_numbers_are_in_range(nb):
    # 16 training participants at smoke: ridge is no better than guessing yet (it is at cpu)
    ridge, guess = glued_float(nb, "ridge_age_mae"), glued_float(nb, "mean_age_mae")
    assert 1.0 < ridge < 1.5 * guess and 5.0 < guess < 25.0
    auc = glued_float(nb, "ridge_ad_auc")
    assert math.isnan(auc) or 0.0 <= auc <= 1.0
    assert 0 < glued_float(nb, "brain_age_floor") < ridge  # the floor is below what ridge reaches


def test_leakage_demo_reports_both_splits(nb):
    honest, leaky = glued_float(nb, "mae_subject_split"), glued_float(nb, "mae_scan_split")
    assert honest > 0 and leaky > 0
    assert glued_float(nb, "leak_share") > 50
