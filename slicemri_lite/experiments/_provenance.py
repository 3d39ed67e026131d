"""``provenance.json``: what ran (grid and profile), with which command, on which machine
and versions, and for how long; written beside a grid's results tables.

Records kept before the ``grid`` and ``profile`` fields existed hold only the command;
``read_provenance`` derives both from it, here and nowhere else. Records kept before the
``generator`` field (the synthetic generator's version) were all made on version 3 data;
``read_provenance`` says so.
"""

from __future__ import annotations

import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

from slicemri_lite._core.atomic import write_json_atomic
from slicemri_lite._core.env import package_versions
from slicemri_lite.data.synthetic import GENERATOR_VERSION
from slicemri_lite.train import _distributed as distributed

COMMAND = "python -m slicemri_lite.experiments"


def provenance_record(
    grid: str, profile: str, argv: list[str], started: float, finished: bool
) -> dict:
    """The provenance of a grid run started at ``started`` (seconds since the epoch)."""
    return {
        "grid": grid,
        "profile": profile,  # the resolved name: "auto" becomes "cpu" or "gpu"
        "command": f"{COMMAND} " + " ".join(argv),
        "status": "complete" if finished else "running",
        "started_utc": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, cuda {'yes' if torch.cuda.is_available() else 'no'}",
        "versions": package_versions(),
        "generator": GENERATOR_VERSION,  # of synthetic data; a run on other data ignores it
        **distributed.current().as_dict(),  # world_size, backend
    }


def write_provenance(out: Path, record: dict) -> None:
    """Write ``record`` to ``out/provenance.json`` atomically (rank 0 only)."""
    if distributed.is_main_process():
        write_json_atomic(Path(out) / "provenance.json", record)


def _from_command(command: str) -> dict:
    """Grid and profile of an old record's command (``python -m slicemri_lite.experiments
    GRID --profile NAME ...``); ``None`` where the command is not a grid run's."""
    words = command.split()
    if command.startswith(COMMAND + " ") and len(words) > 3:
        profile = words[words.index("--profile") + 1] if "--profile" in words[:-1] else None
        return {"grid": words[3], "profile": profile}
    return {"grid": None, "profile": None}


def read_provenance(folder: str | os.PathLike) -> dict:
    """A kept run's ``provenance.json``, with ``grid`` and ``profile`` always present
    (derived from the command for records that predate them; ``None`` if not a grid run)."""
    record = json.loads((Path(folder) / "provenance.json").read_text())
    derived = {**_from_command(record.get("command", "")), "generator": _BEFORE_THE_FIELD}
    return {**derived, **record}


_BEFORE_THE_FIELD = 3  # every record without a generator field was made on version 3 data
