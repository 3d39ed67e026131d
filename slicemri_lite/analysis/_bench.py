"""Throughput and memory of our slice-model pipeline against the paper-style one.

One run, one device, one batch::

    python -m slicemri_lite.analysis --device cpu --resolution 2 --compare paper --out results/bench_cpu.json
    python -m slicemri_lite.analysis --device cuda --resolution 2 --compare paper --out results/bench_gpu.json

What is measured (volumes/s; medians of repeated, interleaved steps):

- **the bare encoder** on the very ``B x S`` slices the model cuts from ``B`` volumes: the
  speed limit of any slice model;
- **ours, model only**: ``SliceSetNet`` on volumes already on the device;
- **the paper-style reference, model only** (``PaperStyleForward``, written here): the same
  modules and weights, slices gathered by a Python list comprehension and ``torch.cat``,
  the encoder's features split per slice, each given its position and concatenated back;
- **end to end**, data included, one pass over ``passes_batches`` batches: ours reads the
  cohort cache (resident on the device, or streamed from the memory map); the reference
  decodes one ``.nii.gz`` per item and z-scores it in a ``DataLoader`` with as many workers
  as the host has CPUs, in float32, as the paper's code does;
- **options**, each on against the plain model: bf16 autocast, channels_last,
  ``torch.compile`` (static shapes), activation checkpointing over slice chunks
  (``slicemri_lite.train.ChunkedForward``), the cohort resident vs streamed;
- peak memory of each (CUDA: allocated bytes; CPU: resident set size, sampled), and the
  arithmetic: encoder FLOPs per slice and per volume, achieved against a matmul's.

Weights are random (speed does not depend on them), so nothing is downloaded.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slicemri_lite._core.atomic import write_text_atomic
from slicemri_lite._core.env import package_versions
from slicemri_lite._core.geometry import grid_shape
from slicemri_lite.analysis._measure import (
    encoder_flops,
    inference_step,
    matmul_tflops,
    one_pass,
    time_interleaved,
    train_step,
)
from slicemri_lite.analysis._paper_style import NiftiVolumes, PaperStyleForward, write_nifti
from slicemri_lite.data._open import open_cohort
from slicemri_lite.models._slice_set import SliceSetNet
from slicemri_lite.train._slice_chunks import ChunkedForward
from slicemri_lite.train._streaming import ResidentVolumes, StreamedVolumes, index_batches

__all__ = ["OPTIONS", "bench_table", "benchmark", "main"]

OPTIONS = ("bf16", "channels_last", "compile", "chunk", "stream")
# Compiling ResNet-18's forward and backward takes minutes on a 2-core CPU, longer than
# the whole bench; measure it there with --options including compile.
CPU_OPTIONS = ("bf16", "channels_last", "chunk", "stream")
# Ours end to end against the paper-style pipeline: at least as fast on a CPU, 5x on a GPU.
GOAL_E2E_OVER_PAPER = {"cpu": 1.0, "cuda": 5.0}
GOAL_CHUNKED_GIB_PER_VOLUME = 0.5  # GPU, with slice chunks (batch 32 on a 16 GB T4)
GOAL_WRAPPER_COST = 0.10  # the wrapper costs at most 10% over the bare encoder


# ---------------------------------------------------------------- the benchmark


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            found = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        name = found[0] if found else name
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} CPUs)"


def _bench_volumes(resolution: int, n: int, folder: Path) -> np.ndarray:
    """``n`` synthetic volumes as a float16 memory map in ``folder`` (like a cohort cache)."""
    # 24 subjects: the smoke profile's cohort, which the chapters have usually cached
    cohort = open_cohort("synthetic", n_subjects=max(n, 24), resolution=resolution,
                         progress=False)  # fmt: skip
    path = folder / "volumes.npy"
    mapped = np.lib.format.open_memmap(path, "w+", np.float16, (n, *cohort.shape))
    mapped[:] = cohort.volumes[:n]
    mapped.flush()
    return np.load(path, mmap_mode="r")


def _build(encoder: str, shape, axis: str, device: torch.device) -> SliceSetNet:
    """The paper's slice model (``SliceSetNet.paper``) with random weights."""
    torch.manual_seed(0)
    model = SliceSetNet.paper(encoder, pretrained=False, axis=axis, volume_shape=shape)
    return model.to(device)


def _option_modules(model, device, options, chunk, x):
    """The option candidates: name -> (module, bf16)."""
    found = {}
    if "bf16" in options:
        found["bf16"] = (model, True)
    if "channels_last" in options:
        twin = copy.deepcopy(model).to(memory_format=torch.channels_last)
        found["channels_last"] = (_ChannelsLast(twin), False)
    if "compile" in options:
        found["compile"] = (torch.compile(model, dynamic=False), False)
    if "chunk" in options:
        found["chunk"] = (ChunkedForward(model, chunk), False)
    return found


class _ChannelsLast(nn.Module):
    """A model whose slices enter the encoder in channels_last layout (on any device)."""

    def __init__(self, model: SliceSetNet):
        super().__init__()
        self.model = model

    def forward(self, x):
        m = self.model
        slices = m.to_slices(x).contiguous(memory_format=torch.channels_last)
        features = m.encoder(slices).reshape(x.shape[0], m.n_slices, -1)
        return m.forward_features(features)


def benchmark(
    device: str = "cpu",
    resolution: int = 2,
    encoder: str = "resnet18",
    batch_size: int = 4,
    steps: int = 5,
    warmup: int = 2,
    axis: str = "sagittal",
    compare: str | None = "paper",
    options: tuple[str, ...] | None = None,
    chunk: int = 16,
    pass_batches: int = 2,
) -> dict:
    """Throughput (volumes/s), peak memory and ratios of ours, the reference and the encoder.

    Args:
        device: where everything runs.
        resolution: 2 (the paper's 91x109x91 grid) or 4 mm.
        encoder: the 2D encoder (random weights).
        batch_size: volumes per step, the same for every candidate.
        steps: timed repeats of every candidate (the median is reported).
        warmup: untimed calls of every candidate first.
        axis: the slicing axis.
        compare: ``"paper"`` adds the paper-style reference; ``None`` leaves it out.
        options: which of ``OPTIONS`` to measure against the plain model (``None``: all on
            CUDA, ``CPU_OPTIONS`` on the CPU).
        chunk: slices per chunk for the ``"chunk"`` option.
        pass_batches: batches in one end-to-end pass.
    """
    dev = torch.device(device)
    if options is None:
        options = OPTIONS if dev.type == "cuda" else CPU_OPTIONS
    unknown = set(options) - set(OPTIONS)
    if unknown:
        raise ValueError(
            f"'options' must be among {list(OPTIONS)}; {sorted(unknown)} was provided."
        )
    shape = grid_shape(resolution)
    model = _build(encoder, shape, axis, dev)
    x = torch.randn(batch_size, 1, *shape, device=dev)
    slices = model.to_slices(x)  # (B*S, 1, H, W)
    result = _header(dev, encoder, resolution, shape, axis, batch_size, len(slices), steps)
    result["options"] = list(options)
    result.update(_arithmetic(model, slices, dev))
    model.train()
    folder = Path(tempfile.mkdtemp(prefix="slicemri-bench-"))
    n = batch_size * pass_batches
    volumes = _bench_volumes(resolution, n, folder)
    rows = np.arange(n)
    resident = ResidentVolumes.from_rows(volumes, rows, dev)
    streamed = StreamedVolumes(volumes, rows, dev)
    positions = index_batches(torch.arange(n), batch_size)

    model_only = {"model": (model, x), "encoder": (model.encoder, slices)}
    if compare == "paper":
        model_only["paper_model"] = (PaperStyleForward(model), x)
    option_modules = _option_modules(model, dev, options, chunk, x)
    end_to_end = {"e2e": lambda: resident.batches(positions)}
    if "stream" in options:
        end_to_end["e2e_streamed"] = lambda: streamed.batches(positions)
    if compare == "paper":
        paths = write_nifti(volumes, folder)
        loader = torch.utils.data.DataLoader(
            NiftiVolumes(paths), batch_size=batch_size, num_workers=os.cpu_count(),
            pin_memory=dev.type == "cuda")  # fmt: skip
        end_to_end["paper_e2e"] = lambda: (b.to(dev, non_blocking=True) for b in loader)
    for mode, make in (("train", train_step), ("inference", inference_step)):
        steps_by_name = {
            name: make(module, lambda x=inputs: x, dev) for name, (module, inputs) in model_only.items()
        }  # fmt: skip
        for name, (module, bf16) in option_modules.items():
            if mode == "train" or name != "chunk":  # checkpointing only matters for training
                frozen = name == "chunk"  # chunks need frozen batch-norm statistics
                steps_by_name[f"option_{name}"] = make(module, lambda: x, dev, bf16, frozen)
        for name, batches in end_to_end.items():
            module = PaperStyleForward(model) if name.startswith("paper") else model
            steps_by_name[name] = one_pass(make, module, batches, dev)
        seconds, peaks = time_interleaved(steps_by_name, dev, steps, warmup)
        result.update(_throughputs(mode, seconds, peaks, batch_size, n, end_to_end))
    result.update(_ratios(result, compare, dev))
    return result


def _header(dev, encoder, resolution, shape, axis, batch_size, n_slices, steps) -> dict:
    return {
        "device": str(dev),
        "device_name": _device_name(dev),
        "versions": package_versions(),
        "threads": torch.get_num_threads(),
        "encoder": encoder,
        "weights": "random (speed does not depend on them)",
        "resolution_mm": resolution,
        "volume_shape": list(shape),
        "axis": axis,
        "batch_size": batch_size,
        "slices_per_batch": int(n_slices),
        "steps": steps,
        "timing": "median of interleaved steps, after warm-up; end-to-end: one pass over "
        "fresh batches (data included) per step",
        "memory": "peak above the step's start: CUDA allocated bytes"
        if dev.type == "cuda"
        else "peak above the step's start: process RSS sampled every 1 ms",
    }


def _arithmetic(model: SliceSetNet, slices: torch.Tensor, dev) -> dict:
    per_slice = encoder_flops(model.encoder, tuple(slices.shape[-2:]), dev)
    return {
        "encoder_gflop_per_slice": per_slice / 1e9,
        "encoder_gflop_per_volume": per_slice * model.n_slices / 1e9,
        "matmul_tflops_fp32": matmul_tflops(dev),
    }


def _throughputs(mode, seconds, peaks, batch_size, n, end_to_end) -> dict:
    found = {}
    for name, sec in seconds.items():
        volumes = n if name in end_to_end else batch_size
        found[f"{mode}_{name}_volumes_per_s"] = volumes / sec
        found[f"{mode}_{name}_peak_mib"] = peaks[name] / 2**20
    return found


def _ratios(r: dict, compare, dev) -> dict:
    found = {}
    for mode in ("train", "inference"):
        speed = lambda name, mode=mode: r.get(f"{mode}_{name}_volumes_per_s")  # noqa: E731
        found[f"{mode}_model_over_encoder"] = speed("model") / speed("encoder")
        found[f"{mode}_e2e_over_encoder"] = speed("e2e") / speed("encoder")
        if compare == "paper":
            found[f"{mode}_model_over_paper"] = speed("model") / speed("paper_model")
            found[f"{mode}_e2e_over_paper"] = speed("e2e") / speed("paper_e2e")
        for key in list(r):
            prefix = f"{mode}_option_"
            if key.startswith(prefix) and key.endswith("_volumes_per_s"):
                option = key[len(prefix) : -len("_volumes_per_s")]
                found[f"{mode}_option_{option}_over_model"] = r[key] / speed("model")
        if speed("e2e_streamed"):
            found[f"{mode}_e2e_streamed_over_resident"] = speed("e2e_streamed") / speed("e2e")
    flops = r["encoder_gflop_per_volume"] * 1e9 * 3  # a training step: ~3 forward passes
    found["train_encoder_achieved_tflops"] = r["train_encoder_volumes_per_s"] * flops / 1e12
    found["train_encoder_over_matmul"] = (
        found["train_encoder_achieved_tflops"] / r["matmul_tflops_fp32"]
    )
    wrapper = 1 / found["train_model_over_encoder"] - 1
    found["goals"] = {
        "wrapper_cost_over_encoder": wrapper,
        "wrapper_cost_goal": GOAL_WRAPPER_COST,
        "wrapper_cost_met": wrapper <= GOAL_WRAPPER_COST,
    }
    if compare == "paper":
        e2e, goal = found["train_e2e_over_paper"], GOAL_E2E_OVER_PAPER[dev.type]
        found["goals"].update(train_e2e_over_paper=e2e, train_e2e_goal=goal,
                              train_e2e_met=e2e >= goal)  # fmt: skip
    if "train_option_chunk_peak_mib" in r:
        per_volume = r["train_option_chunk_peak_mib"] / 1024 / r["batch_size"]
        found["goals"]["chunked_gib_per_training_volume"] = per_volume
        if dev.type == "cuda":
            found["goals"]["chunked_memory_met"] = per_volume <= GOAL_CHUNKED_GIB_PER_VOLUME
    return found


CANDIDATES = {
    "paper_e2e": "paper-style, end to end",
    "e2e": "ours, end to end (cohort resident)",
    "e2e_streamed": "ours, end to end (cohort streamed)",
    "paper_model": "paper-style, model only",
    "model": "ours, model only",
    "option_bf16": "ours + bf16 autocast",
    "option_channels_last": "ours + channels_last",
    "option_compile": "ours + torch.compile",
    "option_chunk": "ours + checkpointed slice chunks",
    "encoder": "bare encoder on the same slices",
}


def bench_table(result: dict):
    """The bench as a table: one row per candidate measured, in ``CANDIDATES`` order.

    Columns: ``candidate``, ``train_volumes_per_s``, ``inference_volumes_per_s`` (NaN where
    not measured), ``train_peak_mib``, ``train_vs_paper`` (end-to-end rows against the
    paper-style end to end, the rest against its model only) and ``train_vs_encoder``.
    """
    import pandas as pd

    rows = []
    for key, label in CANDIDATES.items():
        train = result.get(f"train_{key}_volumes_per_s")
        if train is None:
            continue
        paper = "paper_e2e" if "e2e" in key else "paper_model"
        rows.append({
            "candidate": label,
            "train_volumes_per_s": train,
            "inference_volumes_per_s": result.get(f"inference_{key}_volumes_per_s", float("nan")),
            "train_peak_mib": result[f"train_{key}_peak_mib"],
            "train_vs_paper": train / result.get(f"train_{paper}_volumes_per_s", float("nan")),
            "train_vs_encoder": train / result["train_encoder_volumes_per_s"],
        })  # fmt: skip
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> dict:
    """Command line: print the measurements and optionally write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=2, choices=(2, 4))
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--compare", choices=("paper", "none"), default="paper")
    parser.add_argument("--options", default=None,
                        help=f"comma-separated, among {','.join(OPTIONS)}; '' for none "
                        f"(default: all on CUDA, {','.join(CPU_OPTIONS)} on the CPU)")  # fmt: skip
    parser.add_argument("--chunk", type=int, default=16, help="slices per checkpointed chunk")
    parser.add_argument("--pass-batches", type=int, default=2, help="batches per end-to-end pass")
    parser.add_argument("--note", default="", help="a remark stored in the JSON")
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    options = None if args.options is None else tuple(o for o in args.options.split(",") if o)
    result = benchmark(args.device, args.resolution, args.encoder, args.batch_size, args.steps,
                       args.warmup, compare=None if args.compare == "none" else args.compare,
                       options=options, chunk=args.chunk, pass_batches=args.pass_batches)  # fmt: skip
    given = sys.argv[1:] if argv is None else argv
    result["command"] = "python -m slicemri_lite.analysis " + " ".join(given)
    if args.note:
        result["note"] = args.note
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        write_text_atomic(args.out, text + "\n")
    return result


if __name__ == "__main__":
    main()
