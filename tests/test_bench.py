"""The bench: its paper-style reference computes what our model does, and its figures add up."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_train import SHAPE, scratch_net

from slicemri_lite import analysis
from slicemri_lite.analysis import _bench as bench
from slicemri_lite.models import SliceSetNet


def paper_net(**kwargs) -> SliceSetNet:
    torch.manual_seed(0)
    return SliceSetNet.paper("efficientnet_lite0", pretrained=False, volume_shape=SHAPE, **kwargs)


@pytest.mark.parametrize(
    "make",
    [
        lambda: scratch_net(aggregation="mean"),
        lambda: scratch_net(aggregation="attention"),
        lambda: paper_net(aggregation="attention"),  # joint LayerNorm, z-scored input
        lambda: paper_net(position="none"),
    ],
)
def test_the_paper_style_reference_computes_what_our_model_computes(make):
    model = make().eval()
    x = torch.randn(3, 1, *SHAPE)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(analysis.PaperStyleForward(model)(x), expected, rtol=1e-4, atol=1e-4)


def test_the_reference_needs_learned_or_no_positions():
    with pytest.raises(ValueError, match="position='learned' or 'none'"):
        analysis.PaperStyleForward(scratch_net(position="sinusoidal"))


def test_encoder_flops_counts_a_multiply_add_as_two():
    conv = torch.nn.Conv2d(1, 4, 3, padding=1, bias=False)
    assert analysis.encoder_flops(conv, (8, 8)) == 2 * 4 * 9 * 64


def test_a_slice_model_costs_its_slices_times_a_slice():
    torch.manual_seed(0)
    model = SliceSetNet("resnet18", pretrained=False, volume_shape=(46, 55, 46))
    imagenet = analysis.encoder_flops(model.encoder, (224, 224))
    assert 3.3e9 < imagenet < 3.7e9  # ResNet-18's 3.6 GFLOP, less two thirds of conv1 (1 channel)
    per_slice = analysis.encoder_flops(model.encoder, (55, 46))
    assert 0.15e9 < per_slice < 0.25e9  # about (55 * 46) / 224^2 of it, rounded up per stage


def test_top_operators_names_the_convolution_in_a_conv_step():
    model = scratch_net()
    x = torch.randn(2, 1, *SHAPE)
    rows = analysis.top_operators(analysis.train_step(model, lambda: x), n=5)
    assert len(rows) == 5 and sum(r["share"] for r in rows) <= 1 + 1e-9
    assert any("conv" in r["operator"] for r in rows[:3])
    assert rows == sorted(rows, key=lambda r: -r["self_ms"])


def test_smaller_slice_chunks_need_less_memory():
    torch.manual_seed(0)
    model = SliceSetNet("scratch", pretrained=False, volume_shape=(46, 55, 46), embed_dim=16)
    x = torch.randn(4, 1, 46, 55, 46)
    rows = analysis.memory_by_chunk(model, x, [None, 8])
    assert [r["chunk"] for r in rows] == [None, 8]
    assert rows[1]["peak_mib"] < 0.6 * rows[0]["peak_mib"]  # 184 slices at once vs 8


def test_the_bench_reports_every_figure_and_ratio(tmp_path):
    out = tmp_path / "bench.json"
    result = bench.main(["--device", "cpu", "--resolution", "4", "--encoder", "efficientnet_lite0",
                         "--batch-size", "1", "--steps", "1", "--warmup", "0", "--chunk", "8",
                         "--out", str(out)])  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["slices_per_batch"] == 46 and result["options"] == list(bench.CPU_OPTIONS)
    names = ["encoder", "model", "paper_model", "e2e", "e2e_streamed", "paper_e2e"]
    for mode in ("train", "inference"):
        for name in names + ["option_bf16", "option_channels_last"]:
            assert math.isfinite(result[f"{mode}_{name}_volumes_per_s"])
            assert math.isfinite(result[f"{mode}_{name}_peak_mib"])
        speed = lambda n, mode=mode: result[f"{mode}_{n}_volumes_per_s"]  # noqa: E731
        assert result[f"{mode}_model_over_encoder"] == pytest.approx(
            speed("model") / speed("encoder")
        )
        assert result[f"{mode}_e2e_over_paper"] == pytest.approx(speed("e2e") / speed("paper_e2e"))
    # A training step (forward, backward, AdamW) does about three forward passes' work: it
    # is slower than the no-grad forward of the same candidate on the same batch.
    for name in ("encoder", "model", "paper_model"):
        assert result[f"train_{name}_volumes_per_s"] < result[f"inference_{name}_volumes_per_s"]
    table = analysis.bench_table(result)
    assert list(table["candidate"]) == [
        label for key, label in bench.CANDIDATES.items() if f"train_{key}_volumes_per_s" in result
    ]
    assert table.set_index("candidate").loc[bench.CANDIDATES["encoder"], "train_vs_encoder"] == 1
    assert "train_option_chunk_volumes_per_s" in result
    assert "inference_option_chunk_volumes_per_s" not in result  # checkpointing is for training
    goals = result["goals"]
    assert goals["wrapper_cost_over_encoder"] == pytest.approx(
        1 / result["train_model_over_encoder"] - 1
    )
    assert goals["train_e2e_met"] == (result["train_e2e_over_paper"] >= 1)
    assert result["encoder_gflop_per_volume"] == pytest.approx(
        46 * result["encoder_gflop_per_slice"]
    )


def test_unknown_options_are_refused():
    with pytest.raises(ValueError, match=r"'options' must be among"):
        bench.benchmark(options=("fast",))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_the_bench_runs_every_option_on_cuda():
    result = bench.benchmark("cuda", resolution=4, encoder="resnet18", batch_size=2, steps=2,
                             warmup=1)  # fmt: skip
    assert result["options"] == list(bench.OPTIONS)
    for option in bench.OPTIONS[:-1]:
        assert result[f"train_option_{option}_volumes_per_s"] > 0
    assert result["train_option_chunk_peak_mib"] < result["train_model_peak_mib"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (make gpu-check)")
def test_streaming_on_cuda_hands_out_the_resident_batches():
    import numpy as np

    from slicemri_lite.train import ResidentVolumes, StreamedVolumes, index_batches

    volumes = np.random.default_rng(0).normal(size=(6, *SHAPE)).astype(np.float16)
    rows, cuda = np.arange(6), torch.device("cuda")
    batches = index_batches(torch.randperm(6), 4)
    a = list(ResidentVolumes.from_rows(volumes, rows, cuda).batches(batches))
    b = list(StreamedVolumes(volumes, rows, cuda).batches(batches))
    assert all(x.is_cuda and torch.equal(x, y) for x, y in zip(a, b, strict=True))
