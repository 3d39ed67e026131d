"""The ``Cohort`` container: MRI volumes, their participant table and their geometry."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

__all__ = ["Cohort", "REQUIRED_COLUMNS", "DIAGNOSES", "SPLITS"]

REQUIRED_COLUMNS = ("participant_id", "age", "sex", "diagnosis", "split")
DIAGNOSES = ("CN", "AD")
SPLITS = ("train", "val", "test")


@dataclass
class Cohort:
    """MRI volumes with one table row per volume.

    Attributes:
        volumes: ``(N, X, Y, Z)`` float32 or float16 array (may be a read-only memmap),
            voxel order as in ``affine``.
        table: one row per volume with at least ``participant_id``, ``age`` (years),
            ``sex``, ``diagnosis`` ("CN"/"AD") and ``split`` ("train"/"val"/"test").
            A participant scanned more than once has several rows.
        affine: ``(4, 4)`` voxel -> world (mm) matrix shared by all volumes.
        effects: ground-truth effect maps ``(X, Y, Z)`` (synthetic cohorts only).
        meta: provenance: source, generator arguments, resolution, version.
    """

    volumes: np.ndarray
    table: pd.DataFrame
    affine: np.ndarray
    effects: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, int, int]:
        """The grid ``(X, Y, Z)``."""
        return tuple(self.volumes.shape[1:])

    def __len__(self) -> int:
        return len(self.volumes)

    def __repr__(self) -> str:
        counts = {str(k): int(v) for k, v in self.table["split"].value_counts().items()}
        return (
            f"Cohort({self.meta.get('source', '?')}: {len(self)} volumes of "
            f"{self.table['participant_id'].nunique()} participants, grid {self.shape} "
            f"{self.volumes.dtype}, splits {counts}, effects {sorted(self.effects)})"
        )

    def indices(self, split: str) -> np.ndarray:
        """Row indices of one split ("train", "val" or "test")."""
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def subset(self, rows) -> Cohort:
        """A new cohort holding only ``rows`` (integer positions), in that order."""
        rows = np.asarray(rows, dtype=int)
        return Cohort(
            volumes=self.volumes[rows],
            table=self.table.iloc[rows].reset_index(drop=True),
            affine=self.affine.copy(),
            effects=self.effects,
            meta=dict(self.meta),
        )

    def save(self, path: str | os.PathLike, overwrite: bool = False):
        """Write the cohort cache to the directory ``path`` atomically; returns the path.

        See :func:`slicemri_lite.cache.save_cohort`.
        """
        from slicemri_lite.cache import save_cohort

        return save_cohort(self, path, overwrite=overwrite)
