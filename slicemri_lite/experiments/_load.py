"""Reading a kept run back: ``load_run(folder)`` gives its results, predictions and
provenance (``KeptRun``); ``kept_runs(root, grids)`` every kept run of some grids."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from slicemri_lite.experiments._provenance import read_provenance


@dataclass(frozen=True)
class KeptRun:
    """One kept run (a folder the grid runner or ``tools/keep_chapter_run.py`` wrote).

    ``results`` and ``predictions`` are the grid's tables (``None`` for a kept chapter run,
    which has tables of its own: ``table(name)``); ``provenance`` is ``provenance.json``
    with ``grid`` and ``profile`` always present (``None`` if not a grid run).
    """

    folder: Path
    results: pd.DataFrame | None
    predictions: pd.DataFrame | None
    provenance: dict

    @property
    def grid(self) -> str | None:
        """The grid's name (``GRIDS``), e.g. ``"ablation"``."""
        return self.provenance["grid"]

    @property
    def profile(self) -> str | None:
        """The profile it ran at, e.g. ``"cpu"``."""
        return self.provenance["profile"]

    def table(self, name: str) -> pd.DataFrame:
        """Another table of the run: ``name`` + ``.csv`` in its folder."""
        return pd.read_csv(self.folder / f"{name}.csv")

    def describe(self) -> str:
        """Two lines: the folder and command, then when, where, how long, the synthetic
        generator's version (synthetic data only) and the status."""
        p = self.provenance
        synthetic = self.results is not None and "synthetic" in set(self.results.get("data", []))
        data = f"synthetic data of generator v{p['generator']}, " if synthetic else ""
        return (
            f"{self.folder.name} (kept): {p['command']}\n  {p['started_utc']}, "
            f"{p['machine']}, {p['wall_seconds']} s, {data}{p['status']}"
        )


def _table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.exists() else None


def load_run(folder: str | os.PathLike) -> KeptRun:
    """The kept run in ``folder``: its results, predictions and provenance."""
    folder = Path(folder)
    if not (folder / "provenance.json").exists():
        raise FileNotFoundError(f"{folder} holds no kept run: provenance.json is missing.")
    return KeptRun(folder, _table(folder / "results.csv"),
                   _table(folder / "predictions.csv"), read_provenance(folder))  # fmt: skip


def kept_runs(root: str | os.PathLike = "results", grids=None) -> list[KeptRun]:
    """Every kept grid run under ``root`` (its subfolders, by name), or those of ``grids``."""
    found = [load_run(p.parent) for p in sorted(Path(root).glob("*/provenance.json"))]
    return [r for r in found if r.results is not None and (grids is None or r.grid in grids)]
