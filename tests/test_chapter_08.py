"""Chapter 8 at PROFILE="smoke": the numbers it quotes hold what the text says."""

from __future__ import annotations

import pytest
from notebook_tools import glued, glued_float

pytestmark = pytest.mark.notebooks

STEM = "08_making_it_fast"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(STEM)


def test_the_reference_computes_what_ours_does_but_slices_one_by_one(nb):
    assert glued_float(nb, "paper_same") < 1e-4
    n_slices = glued_float(nb, "n_slices_live")
    assert n_slices == 46  # sagittal slices of the 4 mm grid
    assert glued_float(nb, "paper_select_calls") >= n_slices > glued_float(nb, "ours_select_calls")
    assert 30 < glued_float(nb, "conv_share") <= 100


def test_a_volume_costs_its_slices_in_encoder_flops(nb):
    n_slices = glued_float(nb, "n_slices_live")
    assert n_slices <= glued_float(nb, "volume_over_slice") < 1.05 * n_slices
    # ResNet-18 on 91 slices of 109 x 91: ~0.75 GFLOP each
    assert 50 < glued_float(nb, "resnet18_gflop_volume") < 90


def test_smaller_chunks_need_less_memory(nb):
    assert glued_float(nb, "chunk4_peak_mib") < glued_float(nb, "plain_peak_mib")
    assert glued_float(nb, "mib_per_slice") > 0


def test_live_bench_ratios_are_measured(nb):
    assert 0 < glued_float(nb, "live_e2e_over_paper") < 100
    assert 0 < glued_float(nb, "live_model_over_encoder") <= 1.5
    achieved, matmul = glued_float(nb, "achieved_tflops"), glued_float(nb, "matmul_tflops")
    assert 0 < achieved and 0 < matmul
    assert glued_float(nb, "achieved_fraction") == pytest.approx(100 * achieved / matmul, rel=1e-3)


def test_the_stored_2mm_bench_is_shown(nb):
    values = glued(nb)
    assert "cpu_e2e_over_paper" in values and "cpu_wrapper_cost" in values
    assert glued_float(nb, "cpu_e2e_over_paper") > 0
