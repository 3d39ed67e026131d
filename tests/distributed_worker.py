"""One rank of the 2-process test in ``test_distributed.py`` (started by torch.distributed.run).

Trains the tiny cohort twice under DDP: straight through, and interrupted after the first
epoch then resumed from the checkpoint. Rank 0 saves both results to ``argv[1]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from test_train import tiny_cohort

from slicemri_lite.train import _distributed as distributed
from slicemri_lite.train import fit

SETTINGS = {"epochs": 2, "batch_size": 4, "lr": 1e-3, "device": "cpu", "progress": False}


class Interrupt(Exception):
    pass


def model():
    # dropout=0: each rank draws its own dropout masks, which no 1-process run can repeat
    from test_train import scratch_net

    return scratch_net(dropout=0.0)


def stop_after_first_epoch(row):
    if row["epoch"] == 1:
        raise Interrupt


def main(out: Path) -> None:
    torch.set_num_threads(1)
    cohort = tiny_cohort(16)  # 8 train rows: 2 global batches of 4, 2 volumes per rank
    straight = model()
    result = fit(straight, cohort, **SETTINGS)
    checkpoint = out.with_suffix(".ckpt")
    resumed = model()
    try:
        fit(resumed, cohort, checkpoint=checkpoint, callback=stop_after_first_epoch, **SETTINGS)
    except Interrupt:
        pass
    resumed = model()
    fit(resumed, cohort, checkpoint=checkpoint, **SETTINGS)
    if distributed.is_main_process():
        torch.save(
            {
                "straight": result.best_state,
                "history": result.history.drop(columns="seconds").to_dict("list"),
                "resumed": resumed.state_dict(),
                "world_size": result.world_size,
                "backend": result.backend,
                "rank_weights": straight.state_dict(),
            },
            out,
        )
    distributed.barrier()
    distributed.shut_down()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
