"""Chapter 3 at PROFILE="smoke": the numbers it quotes hold what the text says."""

from __future__ import annotations

import pytest
from notebook_tools import glued, glued_float

pytestmark = pytest.mark.notebooks

STEM = "03_slice_set_models"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def test_mean_pooling_ignores_order_and_positions_restore_it(nb):
    assert glued_float(nb, "shuffle_gap_none") < 1e-4
    assert glued_float(nb, "shuffle_gap_learned") > 100 * max(
        glued_float(nb, "shuffle_gap_none"), 1e-7
    )


def test_folding_is_exact_for_a_third_of_the_work(nb):
    assert glued_float(nb, "fold_gap") < 1e-4
    assert glued_float(nb, "fold_ratio") == 3


def test_pretrained_encoder_recognises_the_photos(nb):
    assert glued_float(nb, "cat_probability") > 0.3
    assert glued_float(nb, "coffee_probability") > 0.3
    assert glued(nb)["encoder_name"].strip("'\"") == "efficientnet_lite0"


def test_training_run_reports_finite_errors_in_years(nb):
    test_mae, mean_mae = glued_float(nb, "test_mae"), glued_float(nb, "mean_mae")
    assert 0 < test_mae < 100 and 0 < mean_mae < 100
    assert glued_float(nb, "n_test") >= 1
    assert glued_float(nb, "n_sagittal") == 46
