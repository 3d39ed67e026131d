"""Data-parallel training on several processes (GPUs, or CPU cores with gloo).

``fit`` trains with PyTorch's DistributedDataParallel whenever it runs under ``torchrun``
(which sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address)::

    # one machine, 4 GPUs: the experiment grid, or any script that calls fit
    torchrun --nproc_per_node=4 -m slicemri_lite.experiments brain-age --profile gpu --out r/
    torchrun --nproc_per_node=4 my_training_script.py

    # two machines with 4 GPUs each: run this on both, with the first one's address
    torchrun --nnodes=2 --nproc_per_node=4 --rdzv_id=brain-age --rdzv_backend=c10d \\
        --rdzv_endpoint=node01.example.org:29500 -m slicemri_lite.experiments ...

On a SLURM cluster ``data_scripts/slurm_train.sbatch`` starts one ``torchrun`` per node
with ``srun``. Nothing else is needed: there is no launcher of our own.

What each process does (``fit``):

- every rank draws the same shuffled order of the training split (same seed), cuts it into
  the same global batches of ``batch_size`` volumes, and trains on its share of each
  batch (``batch[rank::world_size]``), so ``batch_size`` means the same in 1 or N processes;
- DDP all-reduces (averages) the gradients; each rank's loss is weighted by its share of
  the batch, so the averaged gradient is exactly the 1-process gradient of the global batch;
- batch norm: on CUDA the model's BatchNorm layers become SyncBatchNorm (statistics over
  the global batch); SyncBatchNorm does not run on CPU, so on CPU (gloo) every BatchNorm
  layer must be frozen (``freeze_encoder=True`` or ``slice_chunk``) or absent (the scratch
  encoder uses InstanceNorm), and ``fit`` refuses otherwise;
- rank 0 alone writes checkpoints, results and ``provenance.json``; every rank resumes
  from rank 0's checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "Distributed",
    "barrier",
    "broadcast_object",
    "current",
    "is_main_process",
    "launched",
    "set_up",
    "shard",
    "shut_down",
]


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job: ``rank`` of ``world_size``, and the backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # "gloo" or "nccl"; None in a single process

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_dict(self) -> dict:
        return {"world_size": self.world_size, "backend": self.backend or "none"}


def launched() -> bool:
    """Whether this process was started by ``torchrun`` with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def current() -> Distributed:
    """The job as the initialised process group sees it (one process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Distributed()
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return Distributed(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


def set_up(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the ``torchrun`` job (once per process) and pick this rank's device.

    Outside ``torchrun`` nothing happens. On CUDA each rank takes GPU ``LOCAL_RANK`` and the
    NCCL backend; on the CPU, gloo.
    """
    if not launched():
        return current(), device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return current(), device


def shut_down() -> None:
    """Leave the process group (at the end of a ``torchrun`` script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on rank 0, and in a single process: the one that writes files."""
    return current().is_main


def barrier() -> None:
    """Wait for every rank (a no-op in a single process)."""
    if current().enabled:
        dist.barrier()


def broadcast_object(value):
    """Rank 0's ``value`` on every rank (``value`` itself in a single process)."""
    if not current().enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(batch: torch.Tensor, job: Distributed) -> torch.Tensor:
    """This rank's share of a global batch of positions: ``batch[rank::world_size]``."""
    return batch[job.rank :: job.world_size]
