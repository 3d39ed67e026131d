"""Chapter 5, position codes and slicing axes: executed at PROFILE="smoke", glued values checked."""

from __future__ import annotations

import re

import pytest
from notebook_tools import glued_float, glued_text

from slicemri_lite.experiments import grid_runs

pytestmark = pytest.mark.notebooks

STEM = "05_positions_and_axes"
VERDICTS = ("within noise", "excludes zero", "not run")


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def test_the_whole_smoke_grid_runs_live(nb):
    n_grid = glued_float(nb, "n_grid")
    assert glued_float(nb, "n_live") == n_grid  # at smoke nothing waits for a kept run
    assert n_grid == len(grid_runs("ablation", "smoke", int(glued_float(nb, "n_train"))))
    assert "6 of them the paper's small CNN" in glued_text(nb, "later_text")  # 3 axes x position


def test_each_verdict_follows_from_its_interval(nb):
    names = ["position_sagittal", "coronal_vs_sagittal", "axial_vs_sagittal", "best_variant",
             "ensemble_vs_best", "joined_vs_best", "shuffle_position"]  # fmt: skip
    for name in names:
        sentence = glued_text(nb, name)
        assert any(v in sentence for v in VERDICTS), f"{name}: {sentence!r}"
        found = re.search(r"95% CI ([+-][0-9.]+) to ([+-][0-9.]+)", sentence)
        assert found, sentence
        low, high = float(found[1]), float(found[2])
        assert ("within noise" in sentence) == (low <= 0 <= high), sentence
    assert "axes averaged minus" in glued_text(nb, "ensemble_vs_best")
    assert "axes joined minus" in glued_text(nb, "joined_vs_best")
    helped, hurt = glued_float(nb, "n_position_helped"), glued_float(nb, "n_position_hurt")
    assert helped + hurt <= glued_float(nb, "n_position_pairs") >= 4


def test_shuffling_moves_only_the_model_that_has_a_position_code(nb):
    assert glued_float(nb, "shuffle_free_moved") < 1e-2
    assert glued_float(nb, "shuffle_position_moved") > 1e-3


def test_the_slices_and_their_analysis_match_the_4mm_grid(nb):
    slices = [glued_float(nb, f"slices_{a}") for a in ("sagittal", "coronal", "axial")]
    assert slices == [46, 55, 46] and glued_float(nb, "n_all_slices") == sum(slices)
    assert all(glued_float(nb, f"seconds_{a}") > 0 for a in ("sagittal", "coronal", "axial"))
    for axis in ("sagittal", "coronal", "axial"):  # a fifth of the slices holds over a fifth
        assert 0.2 <= glued_float(nb, f"top_{axis}") <= 1.0
    for name in ("pc1_r", "pc2_r"):
        assert 0 <= glued_float(nb, name) <= 1
    for name in ("near_trained", "near_init", "far_trained", "far_init"):
        assert -1 <= glued_float(nb, name) <= 1
    for name in ("gain_vs_effect", "attention_vs_effect"):
        assert -1 <= glued_float(nb, name) <= 1


def test_gain_and_attention_ranges_are_what_the_models_hold(nb):
    assert 0 < glued_float(nb, "gain_min") <= glued_float(nb, "gain_max")
    low, high = glued_float(nb, "attention_min"), glued_float(nb, "attention_max")
    assert 0 < low <= glued_float(nb, "uniform_weight") <= high < 1


def test_the_kept_small_cnn_is_read_only_on_the_cohort_it_ran_on(nb):
    # at smoke the page's cohort is not the kept runs' (the cpu book cohort): the page
    # draws nothing from them, and says so; at cpu the chapter's guards check the text
    for axis in ("sagittal", "coronal", "axial"):
        sentence = glued_text(nb, f"kept_small_{axis}")
        assert sentence == "no kept run of the small CNN on this page's cohort."
    said = glued_text(nb, "kept_small_text")
    assert said == "no run of the paper's small CNN is kept for this page's cohort."
    assert glued_float(nb, "n_small_code_learned") == 0
