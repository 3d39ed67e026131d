"""Chapter 7 at PROFILE="smoke": the saliency scores it quotes hold what the text says."""

from __future__ import annotations

import ast
import json

import numpy as np
import pandas as pd
import pytest
from notebook_tools import glued, glued_float

pytestmark = pytest.mark.notebooks

STEM = "07_interpretation"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def glued_table(nb, name: str) -> pd.DataFrame:
    """A table the chapter glued as JSON records."""
    return pd.DataFrame(json.loads(ast.literal_eval(glued(nb)[name])))


@pytest.mark.parametrize("name", ["saliency_auroc_trained", "saliency_auroc_random"])
def test_headline_aurocs_are_probabilities_inside_their_intervals(nb, name):
    mean = glued_float(nb, name)
    low, high = glued_float(nb, f"{name}_low"), glued_float(nb, f"{name}_high")
    assert 0 <= low <= mean <= high <= 1


def test_scores_table_covers_three_methods_on_two_model_families(nb):
    summary = glued_table(nb, "scores_json")
    assert summary["model"].nunique() >= 2
    for model in ("slice model", "3D CNN"):  # the 3D CNN runs at smoke and gpu
        assert summary.loc[summary["model"] == model, "method"].nunique() >= 3
    ridge = set(summary.loc[summary["model"] == "ridge", "method"])
    assert "coefficients" in ridge and "smoothgrad" not in ridge  # one map, counted once
    for score in ("auroc", "mass_inside", "pointing"):
        assert summary[score].between(0, 1).all()
        assert (summary[f"{score}_low"] <= summary[score] + 1e-12).all()
        assert (summary[score] <= summary[f"{score}_high"] + 1e-12).all()


def test_glued_headline_and_summary_come_from_the_per_participant_scores(nb):
    summary = glued_table(nb, "scores_json")
    rows = glued_table(nb, "per_participant_json")
    n_scored = glued_float(nb, "n_scored")
    assert (rows.groupby(["model", "method"]).size() == n_scored).all()
    means = rows.groupby(["model", "method"])[["auroc", "mass_inside", "pointing"]].mean()
    joined = summary.set_index(["model", "method"])[means.columns].loc[means.index]
    assert np.allclose(joined.to_numpy(), means.to_numpy(), equal_nan=True)
    first_seed = rows.query("model == 'slice model' and method == 'smoothgrad'")["auroc"]
    seeds = [float(x) for x in glued(nb)["seed_aurocs"].strip("'\"").split(",")]
    assert len(seeds) == glued_float(nb, "n_seeds") >= 2
    assert seeds[0] == pytest.approx(first_seed.mean(), abs=0.006)  # shown to 2 decimals
    headline = glued_float(nb, "saliency_auroc_trained")  # the mean over seeds
    assert headline == pytest.approx(np.mean(seeds), abs=0.006)
    best = summary.sort_values("auroc", ascending=False).iloc[0]
    assert glued_float(nb, "best_auroc") == pytest.approx(best["auroc"])


def test_mask_and_slice_numbers_are_in_range(nb):
    assert 0 < glued_float(nb, "mask_share") < 10  # the top 5 % of the brain, in percent
    assert glued_float(nb, "n_scored") >= 1
    r = glued_float(nb, "slice_r")
    assert np.isnan(r) or -1 <= r <= 1
    assert glued_float(nb, "main_cost") > 0
    assert 0 <= glued_float(nb, "group_auroc") <= 1


def test_the_share_of_the_main_map_outside_the_brain_is_a_share(nb):
    assert 0 <= glued_float(nb, "outside_brain_share") <= 1
    assert 0 <= glued_float(nb, "outside_ig") <= 1


def test_the_cohort_is_the_books_with_its_test_split_counted(nb):
    n_test, n_test_ad = glued_float(nb, "n_test"), glued_float(nb, "n_test_ad")
    assert 0 < n_test_ad <= n_test
    assert glued_float(nb, "n_candidates") == n_test_ad  # every AD participant of test


def test_the_positive_control_finds_the_region_its_model_can_only_see(nb):
    table = glued_table(nb, "control_json")
    assert set(table["control"]) == {"region only", "whole brain"}
    assert set(table["method"]) == {"smoothgrad", "integrated_gradients", "gradcam"}
    region = table.query("control == 'region only'").set_index("method")["auroc"]
    assert glued_float(nb, "positive_control_auroc") == pytest.approx(region["smoothgrad"])
    # a gradient through the region mask is zero outside it, even for an untrained model
    assert region["smoothgrad"] >= 0.85 and region["integrated_gradients"] >= 0.85
    assert (table["passes"] == (table["auroc"] >= 0.85)).all()


def test_a_model_that_sees_only_the_brain_puts_no_gradient_outside_it(nb):
    assert glued_float(nb, "outside_brain_share") <= 0.05
    assert 0 <= glued_float(nb, "outside_before") <= 1
