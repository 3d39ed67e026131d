"""Measuring one step: step functions, interleaved timing, peak memory, FLOPs, the profiler.

The bench (``_bench.benchmark``) and chapter 8 build on these: ``train_step`` /
``inference_step`` make a function doing one step, ``PeakMemory`` measures the memory it
takes above where it started, ``encoder_flops`` counts its arithmetic, ``top_operators``
names where its time goes and ``memory_by_chunk`` shows what slice chunks save.
"""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from slicemri_lite._core.env import trim_heap
from slicemri_lite.models._slice_set import SliceSetNet
from slicemri_lite.train._slice_chunks import ChunkedForward, freeze_batch_norm

__all__ = [
    "PeakMemory",
    "encoder_flops",
    "inference_step",
    "memory_by_chunk",
    "top_operators",
    "train_step",
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakMemory:
    """Peak memory above the level at entry, in bytes (``.peak``), within a ``with`` block.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the resident set size, sampled every
    millisecond on a thread (Linux), so a spike shorter than that can be missed; freed heap
    memory is handed back to the system first (glibc), so that memory the allocator kept
    from an earlier step does not hide this one's.
    """

    def __init__(self, device: torch.device):
        self.device, self.peak = torch.device(device), 0

    def __enter__(self):
        if self.device.type == "cuda":
            sync(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            gc.collect()
            trim_heap()
            self._start, self._high, self._done = _rss_bytes(), 0, threading.Event()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._done.is_set():
            self._high = max(self._high, _rss_bytes())
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            sync(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._start
        else:
            self._done.set()
            self._thread.join()
            self.peak = max(0, max(self._high, _rss_bytes()) - self._start)
        return False


def time_interleaved(steps: dict[str, Callable], device, repeats: int, warmup: int):
    """Median seconds and peak memory of each step function, called round by round.

    Interleaving makes a slow spell of the machine (other jobs) hit every candidate alike;
    the order rotates from round to round.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    seconds = {name: [] for name in steps}
    peaks = dict.fromkeys(steps, 0)
    names = list(steps)
    for r in range(repeats):
        # Each round starts one candidate later, so none always follows the same one (the
        # paper-style pass's DataLoader workers exit while the next step starts).
        for name in names[r % len(names) :] + names[: r % len(names)]:
            step = steps[name]
            with PeakMemory(device) as memory:
                tic = time.perf_counter()
                step()
                sync(torch.device(device))
                seconds[name].append(time.perf_counter() - tic)
            peaks[name] = max(peaks[name], memory.peak)
    return {name: statistics.median(t) for name, t in seconds.items()}, peaks


def _autocast(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def train_step(module: nn.Module, inputs: Callable, device="cpu", bf16: bool = False,
               frozen_batch_norm: bool = False) -> Callable[[], None]:  # fmt: skip
    """A function doing one optimiser step (forward, backward, AdamW) on ``inputs()``.

    ``frozen_batch_norm`` runs BatchNorm layers in eval mode (as ``fit`` does with slice
    chunks). The learning rate is tiny: the weights, and so the work, stay the same.
    """
    device = torch.device(device)
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-6)

    def step():
        module.train()
        if frozen_batch_norm:
            freeze_batch_norm(module)
        x = inputs()
        with _autocast(device, bf16):
            loss = module(x).float().square().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


def inference_step(module: nn.Module, inputs: Callable, device="cpu", bf16: bool = False,
                   frozen_batch_norm: bool = False) -> Callable[[], None]:  # fmt: skip
    """A function doing one forward pass in eval mode, without gradients, on ``inputs()``."""
    device = torch.device(device)

    @torch.no_grad()
    def step():
        module.eval()
        x = inputs()
        with _autocast(device, bf16):
            module(x)

    return step


def one_pass(make: Callable, module, batches: Callable, device) -> Callable:
    """One pass over a fresh iterator of batches (data included): one step per batch."""
    current = []
    step = make(module, lambda: current.pop(), device)

    def run():
        for x in batches():
            current.append(x)
            step()

    return run


# ---------------------------------------------------------------- the arithmetic


def encoder_flops(encoder: nn.Module, slice_shape: tuple[int, int], device="cpu") -> float:
    """Forward FLOPs of ``encoder`` on one ``(1, 1, H, W)`` slice (a multiply-add is 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, *slice_shape, device=device)
    was_training = encoder.training
    encoder.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        encoder(x)
    encoder.train(was_training)
    return float(counter.get_total_flops())


def matmul_tflops(device: torch.device, dtype=torch.float32, n: int = 1024) -> float:
    """TFLOP/s of a square matmul: what this device attains on the easiest possible work."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(3):
        tic = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - tic)
    return 2 * n**3 / best / 1e12


# ---------------------------------------------------------------- profiling and memory


def top_operators(step: Callable, device="cpu", n: int = 8) -> list[dict]:
    """The ``n`` operators that take the most time in one call of ``step``.

    Rows: ``operator``, ``calls``, ``self_ms`` (time in the operator itself; CUDA time on a
    GPU) and ``share`` of the step's total self time.
    """
    # The profiler's own library (kineto) prints start/stop and device-probe lines to the
    # process's stderr, which land on a notebook's page; level 6 keeps it quiet. It reads
    # the variable when first used, so it is set here (a value the user set is kept).
    os.environ.setdefault("KINETO_LOG_LEVEL", "6")
    activities = [ProfilerActivity.CPU]
    cuda = torch.device(device).type == "cuda"
    if cuda:
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        step()
        sync(torch.device(device))
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = [e for e in prof.key_averages() if getattr(e, key) > 0]
    total = sum(getattr(e, key) for e in events)
    events.sort(key=lambda e: getattr(e, key), reverse=True)
    return [
        {
            "operator": e.key,
            "calls": e.count,
            "self_ms": getattr(e, key) / 1e3,
            "share": getattr(e, key) / total,
        }  # fmt: skip
        for e in events[:n]
    ]


def memory_by_chunk(model: SliceSetNet, x: torch.Tensor, chunks, device="cpu") -> list[dict]:
    """Peak memory of one training step (forward + backward) at each slice-chunk size.

    ``chunks`` holds slice counts, and ``None`` for the plain model (all slices at once).
    Batch norm runs with frozen statistics in every case, so all compute the same thing.
    Rows: ``chunk``, ``peak_mib``, ``seconds``.
    """
    device = torch.device(device)
    model.to(device).train()
    freeze_batch_norm(model)
    rows = []
    for chunk in chunks:
        module = model if chunk is None else ChunkedForward(model, chunk)
        with PeakMemory(device) as memory:
            tic = time.perf_counter()
            module(x).float().square().mean().backward()
            sync(device)
            seconds = time.perf_counter() - tic
        model.zero_grad(set_to_none=True)
        rows.append({"chunk": chunk, "peak_mib": memory.peak / 2**20, "seconds": seconds})
    return rows
