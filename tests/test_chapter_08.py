"""Chapter 8 at PROFILE="smoke": the numbers it quotes hold what the text says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from notebook_tools import glued_float

pytestmark = pytest.mark.notebooks

STEM = "08_making_it_fast"
ROOT = Path(__file__).resolve().parents[1]


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
    # a training step holds every slice's activations: EfficientNet-Lite0 on a 55 x 46
    # slice keeps a few MiB of them, and far less than a whole 4 mm volume per slice
    assert 0.1 < glued_float(nb, "mib_per_slice") < 50


def test_live_bench_ratios_are_measured(nb):
    assert 0 < glued_float(nb, "live_e2e_over_paper") < 100
    assert 0 < glued_float(nb, "live_model_over_encoder") <= 1.5
    achieved, matmul = glued_float(nb, "achieved_tflops"), glued_float(nb, "matmul_tflops")
    # depthwise convolutions on small slices reach a fraction of a square matmul's rate
    assert 0 < achieved < matmul
    assert 0 < glued_float(nb, "achieved_fraction") < 100


def test_the_stored_2mm_bench_is_shown(nb):
    stored = json.loads((ROOT / "results" / "bench_cpu.json").read_text())
    assert glued_float(nb, "cpu_e2e_over_paper") == pytest.approx(stored["train_e2e_over_paper"])
    assert glued_float(nb, "cpu_wrapper_cost") == pytest.approx(
        100 * stored["goals"]["wrapper_cost_over_encoder"]
    )
