"""Chapter 4, does ImageNet pretraining help: executed at PROFILE="smoke", its glued values checked."""

from __future__ import annotations

import pytest
from notebook_tools import glued, glued_float, glued_text

from slicemri_lite.experiments import grid_runs
from slicemri_lite.models import torchvision_weights_path

pytestmark = pytest.mark.notebooks

STEM = "04_does_pretraining_help"
VERDICTS = ("within noise", "excludes zero", "too few seeds", "was not run")


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def test_the_grid_ran_every_planned_run(nb):
    n_train = int(glued_float(nb, "n_train"))
    assert n_train > 0 and glued_float(nb, "n_test") > 0
    assert glued_float(nb, "n_runs") == len(grid_runs("brain-age", "smoke", n_train))


def test_the_ridge_baseline_is_the_one_chapter_2_reports(nb):
    from test_chapter_02 import smoke_cohort

    from slicemri_lite.train import linear_baseline

    ridge = linear_baseline(smoke_cohort(), "age")["mae"]
    assert glued_float(nb, "ridge_mae") == pytest.approx(ridge, rel=1e-9)
    best, mean = glued_float(nb, "best_mae"), glued_float(nb, "mean_mae")
    assert best <= min(ridge, mean) and glued_text(nb, "best_label")


def test_each_verdict_follows_from_its_interval(nb):
    import re

    for name in ("init_small", "init_full", "vs_ridge_full", "vs_probe_full", "vs_concat_full"):
        sentence = glued_text(nb, name)
        assert any(v in sentence for v in VERDICTS), f"{name}: {sentence!r}"
        found = re.search(r"95% CI ([+-][0-9.]+) to ([+-][0-9.]+)", sentence)
        if found:  # the verdict must say "within noise" exactly when the CI holds zero
            low, high = float(found[1]), float(found[2])
            assert ("within noise" in sentence) == (low <= 0 <= high), sentence
    assert (
        "efficientnet_lite0 imagenet frozen minus efficientnet_lite0 random frozen"
        in glued_text(nb, "init_small")
    )
    assert "test participants" in glued_text(nb, "init_full")  # a bootstrap over participants


def test_missing_resnet_weights_are_skipped_and_said(nb):
    # the tests run chapters with an empty torch hub cache (conftest), so this is the
    # offline path every machine takes: no download, no silent random weights
    assert not torchvision_weights_path("resnet18").exists()
    text = glued_text(nb, "skipped_text")
    assert "resnet18 imagenet frozen" in text


def test_every_printed_result_names_profile_and_data(nb):
    outputs = "".join(
        o.get("text", "")
        for c in nb.cells
        for o in c.get("outputs", [])
        if o.output_type == "stream"
    )
    assert "profile smoke, data synthetic, device cpu" in outputs
    assert "skipped: weights unavailable offline" in outputs or "Every configuration ran." in str(
        glued(nb)["skipped_text"]
    )


def test_undertrained_networks_are_counted(nb):
    grid = grid_runs("brain-age", "smoke", int(glued_float(nb, "n_train")))
    networks = [s for s in grid if s.config.model in ("conv3d", "sliceset")]
    resnet_imagenet = [s for s in networks if s.config.label.startswith("resnet18 imagenet")]
    n_networks = glued_float(nb, "n_networks")
    assert len(networks) - len(resnet_imagenet) <= n_networks <= len(networks)
    assert 0 <= glued_float(nb, "n_improving") <= n_networks


def test_flat_runs_are_reported(nb):
    text = glued_text(nb, "flat_text")
    assert text == "No run predicts one age for everyone." or text.startswith(
        "These runs predict nearly one age for everyone: "
    )
    assert "mean with" not in text  # the mean baseline is flat by design, not news


def test_every_run_is_checked_for_learning(nb):
    text = glued_text(nb, "learned_text")
    assert text.startswith(("Every run learned", "Did not learn, so no verdict rests on them"))
    improving = glued_text(nb, "improving_text")
    assert improving.startswith("None of the") or "still improving" in improving
