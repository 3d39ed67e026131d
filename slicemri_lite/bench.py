"""Throughput of a SliceSetNet against its bare 2D encoder on the same slices.

A slice model's speed limit is its encoder running on B x S slices; everything else
(cutting slices, projection, position, pooling, head) should cost little on top. This
measures both, for training steps (forward, backward, AdamW step) and inference, in
volumes per second, on one device in one run, and reports the ratios::

    python -m slicemri_lite.bench --device cuda --resolution 2 --out results/bench_gpu.json

On CUDA it uses the same settings as ``fit``: bf16 autocast (fp16 where bf16 is not
supported) and channels_last.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from slicemri_lite.atomic import write_text_atomic
from slicemri_lite.env import autocast
from slicemri_lite.geometry import grid_shape
from slicemri_lite.models import SliceSetNet

__all__ = ["benchmark", "main"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_interleaved(steps_by_name: dict, device: torch.device, steps: int, warmup: int):
    """Median seconds per call of each step function, calls interleaved round by round.

    Interleaving makes a slow spell of the machine hit every candidate alike.
    """
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps_by_name}
    for _ in range(steps):
        for name, step in steps_by_name.items():
            _sync(device)
            tic = time.perf_counter()
            step()
            _sync(device)
            times[name].append(time.perf_counter() - tic)
    return {name: statistics.median(t) for name, t in times.items()}


def _train_step(module: nn.Module, x: torch.Tensor, device: torch.device):
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4)

    def step():
        with autocast(device):
            loss = module(x).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def _infer_step(module: nn.Module, x: torch.Tensor, device: torch.device):
    @torch.no_grad()
    def step():
        with autocast(device):
            module(x)

    return step


def benchmark(
    device: str = "cpu",
    resolution: int = 2,
    encoder: str = "resnet18",
    batch_size: int = 4,
    steps: int = 5,
    warmup: int = 2,
    axis: str = "sagittal",
) -> dict:
    """Train and inference throughput (volumes/s) of a SliceSetNet and of its bare encoder.

    The encoder gets the very ``(B * S, 1, H, W)`` slice batch the model cuts from ``B``
    volumes, so the two numbers compare like with like. Weights are random (speed does
    not depend on them), so nothing is downloaded.
    """
    dev = torch.device(device)
    shape = grid_shape(resolution)
    torch.manual_seed(0)
    model = SliceSetNet(encoder, pretrained=False, axis=axis, aggregation="attention",
                        volume_shape=shape).to(dev)  # fmt: skip
    if dev.type == "cuda":
        model.to(memory_format=torch.channels_last)
    x = torch.randn(batch_size, 1, *shape, device=dev)
    slices = model.to_slices(x)  # (B*S, 1, H, W)
    result = {"device": str(dev), "device_name": _device_name(dev), "torch": torch.__version__,
              "encoder": encoder, "resolution_mm": resolution, "volume_shape": list(shape),
              "axis": axis, "batch_size": batch_size, "slices_per_batch": int(len(slices)),
              "steps": steps, "timing": "median of interleaved steps", "threads": torch.get_num_threads()}  # fmt: skip
    if dev.type == "cuda":
        result["autocast"] = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        torch.cuda.reset_peak_memory_stats(dev)
    runs = {"model": (model, x), "encoder": (model.encoder, slices)}
    for mode, make in (("train", _train_step), ("inference", _infer_step)):
        model.train(mode == "train")
        step_fns = {name: make(module, inputs, dev) for name, (module, inputs) in runs.items()}
        seconds = _time_interleaved(step_fns, dev, steps, warmup)
        for name in runs:
            result[f"{mode}_{name}_volumes_per_s"] = batch_size / seconds[name]
        result[f"{mode}_model_over_encoder"] = (
            result[f"{mode}_model_volumes_per_s"] / result[f"{mode}_encoder_volumes_per_s"]
        )
    if dev.type == "cuda":
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(dev) / 2**30
    return result


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> dict:
    """Command line: print the measurements and optionally write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=2, choices=(2, 4))
    parser.add_argument("--encoder", default="resnet18")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the result as JSON here")
    args = parser.parse_args(argv)
    result = benchmark(args.device, args.resolution, args.encoder, args.batch_size,
                       args.steps, args.warmup)  # fmt: skip
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        write_text_atomic(args.out, text + "\n")
    return result


if __name__ == "__main__":
    main()
