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


def test_the_saved_model_is_the_papers_and_scores_what_the_chapter_says(nb):
    from pathlib import Path

    import numpy as np

    from slicemri_lite.data import open_cohort
    from slicemri_lite.experiments import get_profile
    from slicemri_lite.train import age_metrics, load_model, predict, read_contract

    path = Path(glued(nb)["saved_model"].strip("'\""))
    model = load_model(path)
    assert model.config["norm"] == "joint" and model.config["head"] == "mlp"  # the paper's
    assert read_contract(path)["task"] == "age"
    p = get_profile("smoke")
    cohort = open_cohort("synthetic", p.n_subjects, resolution=p.resolution, seed=0, progress=False)
    test = cohort.indices("test")
    mae = age_metrics(cohort.targets("age", test), predict(model, cohort, "test"))["mae"]
    assert glued_float(nb, "test_mae") == pytest.approx(mae, rel=1e-4)
    assert glued_float(nb, "n_test") == len(test) and glued_float(nb, "n_sagittal") == 46
    assert np.isfinite(glued_float(nb, "gain_ratio")) and glued_float(nb, "gain_ratio") >= 1
