"""Chapter 6, Alzheimer's disease: executed at PROFILE="smoke", its glued values checked."""

from __future__ import annotations

import pytest
from notebook_tools import glued_float, glued_text

from slicemri_lite.experiments import _grids as experiments

pytestmark = pytest.mark.notebooks

STEM = "06_alzheimers"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def test_the_cohort_is_enriched_so_every_split_has_both_classes(nb):
    assert glued_float(nb, "n_subjects") >= experiments.GRIDS["ad"].min_subjects
    assert glued_float(nb, "ad_share") > glued_float(nb, "default_share")
    assert glued_float(nb, "n_young_cn") > 0
    total = glued_float(nb, "n_matched") + glued_float(nb, "n_young_cn")
    assert total == glued_float(nb, "n_subjects")


def test_the_axis_is_one_of_the_three_and_every_image_model_faces_age_alone(nb):
    assert glued_text(nb, "axis") in experiments.AXES
    assert 0 <= glued_float(nb, "age_auc_low") <= glued_float(nb, "age_auc")
    assert glued_float(nb, "age_auc") <= glued_float(nb, "age_auc_high") <= 1
    versus = glued_text(nb, "versus_age_labels").split("; ")
    pretrained = glued_text(nb, "pretrained")
    assert pretrained in versus and "ridge" in versus and "conv3d" in versus
    assert any("random" in label for label in versus)
    assert any("position=none" in label for label in versus)
    assert "age_only" not in versus


def test_the_threshold_comes_from_validation_and_its_rates_are_rates(nb):
    for name in ("sensitivity", "specificity"):
        assert 0 <= glued_float(nb, name) <= 1
    assert 0 <= glued_float(nb, "brier") <= 1
    for name in ("init_effect", "position_effect"):  # a verdict, or why there is none
        said = glued_text(nb, name)
        assert (" AUC " in said or ": no verdict, " in said) and "years" not in said


def test_the_leaky_split_looks_better_than_the_participant_split(nb):
    leaky, honest = glued_float(nb, "leaky_auc"), glued_float(nb, "honest_auc")
    assert leaky > honest
    assert glued_float(nb, "leak_points") > 0 and glued_float(nb, "leak_shared") > 50


def test_age_matching_and_the_brain_age_gap_are_reported_with_intervals(nb):
    assert 0 <= glued_float(nb, "age_auc_matched") <= 1
    assert 0 <= glued_float(nb, "pretrained_auc_matched") <= 1
    d, low, high = (glued_float(nb, f"gap_linear_{k}") for k in ("d", "d_low", "d_high"))
    assert low <= d <= high
    assert 0 <= glued_float(nb, "gap_linear_auc") <= 1
    assert 0 <= glued_float(nb, "direct_auc") <= 1


def test_every_printed_result_names_profile_and_data(nb):
    outputs = "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )
    assert "profile smoke, data synthetic, device cpu" in outputs
