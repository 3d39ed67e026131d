"""Where a training split's volumes live: resident on the device, or streamed from the cohort.

``fit`` reads its batches through one of two sources with the same interface:

- :class:`ResidentVolumes`: the split copied once to the device (fast; needs room there);
- :class:`StreamedVolumes`: rows gathered per batch from the cohort's array (usually the
  read-only memory map of its cache, so on disk or in the page cache), copied through
  pinned host memory with a non-blocking copy on CUDA while the next batch is read.

Both hand out the same rows in the same order and the same dtype, so training is
identical under a seed (on the CPU, bit for bit). ``choose_stream`` picks one from the
split's size and a memory budget.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from slicemri_lite._core.validation import check_choice

__all__ = [
    "ResidentVolumes",
    "StreamedVolumes",
    "STREAM_CHOICES",
    "choose_stream",
    "index_batches",
    "memory_budget",
    "volume_source",
]

STREAM_CHOICES = (True, False, "auto")
BUDGET_FRACTION = 0.5  # of the device's free memory that resident volumes may take


def memory_budget(device: torch.device) -> int:
    """Bytes resident volumes may take: half the free GPU memory, or of the available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
    else:
        free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return int(BUDGET_FRACTION * free)


def choose_stream(stream, n_bytes: int, device: torch.device, budget: int | None = None) -> bool:
    """Whether to stream: ``stream`` itself, or for ``"auto"``, ``n_bytes`` over ``budget``.

    ``budget=None`` uses :func:`memory_budget` of ``device``.
    """
    check_choice("stream", stream, STREAM_CHOICES)
    if stream != "auto":
        return bool(stream)
    return n_bytes > (memory_budget(device) if budget is None else budget)


class ResidentVolumes:
    """A tensor held on its device (volumes ``(n, 1, X, Y, Z)`` or features ``(n, S, E)``)."""

    def __init__(self, data: torch.Tensor):
        self.data = data

    @classmethod
    def from_rows(cls, array: np.ndarray, rows: np.ndarray, device: torch.device):
        """``array[rows]`` as ``(n, 1, X, Y, Z)`` on ``device``, in the array's dtype."""
        volumes = np.ascontiguousarray(np.asarray(array[rows]))
        return cls(torch.from_numpy(volumes)[:, None].to(device))

    def __len__(self) -> int:
        return len(self.data)

    def batches(self, positions: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """One float32 batch per tensor of positions (``0 <= p < len(self)``), in order."""
        for batch in positions:
            yield self.data[batch.to(self.data.device)].float()


class StreamedVolumes:
    """The rows of ``array`` (e.g. a memory map), read batch by batch and sent to ``device``.

    The next batch is read on a worker thread while the current one trains; on CUDA it
    goes through pinned memory with a non-blocking copy.
    """

    def __init__(self, array: np.ndarray, rows: np.ndarray, device: torch.device):
        self.array, self.rows, self.device = array, np.asarray(rows), device

    def __len__(self) -> int:
        return len(self.rows)

    def _read(self, positions: np.ndarray) -> torch.Tensor:
        # Sorted reads are sequential on disk; the batch keeps the requested order.
        wanted = self.rows[positions]
        unique, inverse = np.unique(wanted, return_inverse=True)
        host = torch.from_numpy(np.ascontiguousarray(self.array[unique])[inverse])[:, None]
        return host.pin_memory() if self.device.type == "cuda" else host

    def batches(self, positions: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        """One ``(b, 1, X, Y, Z)`` float32 batch per tensor of positions, in order."""
        wanted = [batch.cpu().numpy() for batch in positions]
        with ThreadPoolExecutor(max_workers=1) as reader:
            pending = reader.submit(self._read, wanted[0]) if wanted else None
            for i in range(len(wanted)):
                host = pending.result()
                if i + 1 < len(wanted):  # read the next batch while this one trains
                    pending = reader.submit(self._read, wanted[i + 1])
                yield host.to(self.device, non_blocking=True).float()


def volume_source(array: np.ndarray, rows: np.ndarray, device: torch.device, stream: bool):
    """A :class:`StreamedVolumes` or :class:`ResidentVolumes` of ``array[rows]``."""
    if stream:
        return StreamedVolumes(array, rows, device)
    return ResidentVolumes.from_rows(array, rows, device)


def index_batches(order: torch.Tensor, batch_size: int) -> list[torch.Tensor]:
    """``order`` cut into consecutive batches of ``batch_size`` (the last may be shorter)."""
    return list(order.split(batch_size))
