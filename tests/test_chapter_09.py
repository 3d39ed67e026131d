"""Chapter 9 at PROFILE="smoke": every number the text quotes is glued, in range, and the
conformance report names a failed check for every scan unlike the training scans."""

from __future__ import annotations

import pytest
from notebook_tools import glued_float, glued_text

pytestmark = pytest.mark.notebooks

STEM = "09_before_you_trust_it"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


@pytest.mark.parametrize(
    "name", ["conformal_coverage_90", "coverage_80", "coverage_95", "ece_before", "ece_after"]
)
def test_coverages_and_calibration_errors_are_shares(nb, name):
    assert 0 <= glued_float(nb, name) <= 1


def test_the_retest_icc_is_a_correlation_with_its_interval(nb):
    icc = glued_float(nb, "icc_brain_age")
    assert (
        -1
        <= glued_float(nb, "icc_low_brain_age")
        <= icc
        <= glued_float(nb, "icc_high_brain_age")
        <= 1
    )
    assert glued_float(nb, "within_sd_brain_age") > 0


def test_site_errors_are_glued_for_both_designs(nb):
    assert glued_float(nb, "loso_mae") > 0 and glued_float(nb, "within_site_mae") > 0
    assert 0 <= glued_float(nb, "probe_after") <= 1 and 0 < glued_float(nb, "probe_chance") < 1


def test_the_report_names_what_failed_for_each_of_the_five_scans(nb):
    described = glued_text(nb, "demo_failed").split("; ")
    scans = [d.split(":")[0] for d in described]
    assert scans[:3] == ["training-like", "with its skull", "misregistered"]
    assert scans[3].startswith("unseen site") and scans[4] == "noise"
    noise = described[4].split(": ")[1]
    assert noise != "none" and "features" in noise  # noise is never like a brain
