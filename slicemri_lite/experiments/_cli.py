"""The command line: ``python -m slicemri_lite.experiments GRID --profile --data --out``.

Examples::

    python -m slicemri_lite.experiments brain-age --profile cpu --data synthetic --out results/cpu
    python -m slicemri_lite.experiments ad --profile cpu --out results/cpu_ad
    torchrun --nproc_per_node=2 -m slicemri_lite.experiments brain-age --profile smoke --out /tmp/x

It runs one grid (``GRIDS``) and writes into ``--out``: ``results.csv``, ``predictions.csv``
and ``provenance.json`` (grid, profile, command, machine, versions, wall time, world size).
Under ``torchrun`` every process runs the grid; rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from slicemri_lite.experiments._compare import ad_table, summarize
from slicemri_lite.experiments._grids import GRIDS
from slicemri_lite.experiments._profiles import get_profile
from slicemri_lite.experiments._provenance import COMMAND, provenance_record, write_provenance
from slicemri_lite.experiments._runner import METRICS, run_grid
from slicemri_lite.train import _distributed as distributed


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=COMMAND)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, grid in GRIDS.items():
        command = sub.add_parser(name, help=grid.help)
        command.add_argument("--profile", default="auto", choices=["auto", *grid.profiles])
        command.add_argument("--data", default="synthetic",
                             help='"synthetic", "oasis" or a cohort path')  # fmt: skip
        command.add_argument("--out", required=True, help="folder for the results (created)")
        command.add_argument("--seed", type=int, default=0, help="cohort seed; offsets run seeds")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = _parser().parse_args(argv)
    out, started, profile = Path(args.out), time.time(), get_profile(args.profile)
    distributed.set_up(torch.device(profile.device))  # under torchrun
    record = {"grid": args.command, "profile": profile.name, "argv": argv, "started": started}
    write_provenance(out, provenance_record(**record, finished=False))
    experiment = run_grid(args.command, profile.name, args.data, out, args.seed)
    write_provenance(out, provenance_record(**record, finished=True))
    main_process = distributed.is_main_process()
    distributed.shut_down()
    if not main_process:
        return 0
    if experiment.task == "ad":  # AUC with its interval over participants and seeds
        summary = ad_table(experiment.results, experiment.predictions)
    else:
        summary = summarize(experiment.results, METRICS[experiment.task][0])
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"wrote results.csv, predictions.csv and provenance.json to {out}")
    return 0
