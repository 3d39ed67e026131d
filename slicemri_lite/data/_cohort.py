"""The ``Cohort``: MRI volumes, their participant table and geometry, and its on-disk cache.

Layout of a cache folder::

    volumes.npy          (N, X, Y, Z) float16/float32, memory-mappable
    effect_<name>.npy    (X, Y, Z) float32 ground-truth maps (synthetic cohorts)
    participants.tsv     one row per volume
    meta.json            affine, grid, resolution, source, generator arguments,
                         format version and a SHA-256 checksum of every file above

The folder is written through ``slicemri_lite.atomic.atomic_path``: into a temporary
folder renamed into place only when complete, so a reader never sees half a cohort.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from slicemri_lite._core.atomic import atomic_path
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._splits import split_subjects

__all__ = [
    "Cohort",
    "RowView",
    "read_rows",
    "CohortCacheError",
    "DIAGNOSES",
    "FORMAT_VERSION",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "TASKS",
    "PREDICTION_COLUMN",
    "load_cohort",
    "save_cohort",
    "verify_cohort",
]

REQUIRED_COLUMNS = ("participant_id", "age", "sex", "diagnosis", "split")
DIAGNOSES = ("CN", "AD")
SPLITS = ("train", "val", "test")
TASKS = ("age", "ad")  # what a model predicts from a cohort: age in years, or AD vs CN
# the one column a prediction goes under, per task, in every table the library writes
PREDICTION_COLUMN = {"age": "predicted_age", "ad": "ad_probability"}


def _whole_file_memmap(volumes) -> bool:
    """Whether ``volumes`` maps a whole ``.npy`` file's data, C-contiguous (not a view)."""
    if not isinstance(volumes, np.memmap) or not volumes.flags.c_contiguous:
        return False
    filename = getattr(volumes, "filename", None)
    if not filename or not os.path.exists(filename):
        return False
    return int(volumes.offset) + volumes.nbytes == os.path.getsize(filename)


def read_rows(volumes, rows) -> np.ndarray:
    """``volumes[rows]`` as an in-memory array ``(n, X, Y, Z)``.

    Rows of a memory-mapped cohort (or a ``RowView`` of one) are read with plain file
    reads: pages read through the mapping would stay in the process's resident memory
    (at 2 mm, 440 volumes are 765 MB); pages read this way stay in the OS's file cache.
    """
    rows = np.asarray(rows, dtype=int).reshape(-1)
    if isinstance(volumes, RowView):
        return read_rows(volumes.base, volumes.rows[rows])
    if not _whole_file_memmap(volumes):
        return np.asarray(volumes[rows])
    out = np.empty((len(rows), *volumes.shape[1:]), dtype=volumes.dtype)
    row_bytes = out[0].nbytes if len(rows) else 0
    with open(volumes.filename, "rb", buffering=0) as file:
        for i, row in enumerate(rows):
            file.seek(int(volumes.offset) + int(row) * row_bytes)
            if file.readinto(memoryview(out[i]).cast("B")) != row_bytes:
                raise OSError(f"{volumes.filename}: row {row} could not be read whole.")
    return out


class RowView:
    """Some rows of a memory-mapped volume array, read from disk only when indexed.

    ``Cohort.subset`` of a cohort opened from its cache returns one, so that a subset
    (every grid run takes one, often two) copies no volumes: at 2 mm, 440 volumes are
    765 MB. Indexing with an int, a slice or integer positions, optionally followed by
    more indices, reads those rows; ``np.asarray(view)`` reads them all.

    Args:
        base: ``(N, X, Y, Z)`` array, usually a read-only ``np.memmap``.
        rows: ``(n,)`` integer positions into ``base``.
    """

    def __init__(self, base, rows):
        self.base = base
        self.rows = np.asarray(rows, dtype=int)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.base.shape[1:])

    @property
    def dtype(self):
        return self.base.dtype

    @property
    def ndim(self) -> int:
        return self.base.ndim

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        first, rest = (index[0], index[1:]) if isinstance(index, tuple) else (index, ())
        picked = self.rows[first]
        if np.ndim(picked) == 0:
            values = read_rows(self.base, [int(picked)])[0]
            return values[rest] if rest else values
        values = read_rows(self.base, picked)
        return values[(slice(None), *rest)] if rest else values

    def __array__(self, dtype=None, copy=None):
        values = read_rows(self.base, self.rows)
        return values if dtype is None else values.astype(dtype)

    def astype(self, dtype) -> np.ndarray:
        """All rows, read and converted: ``(n, X, Y, Z)``."""
        return np.asarray(self).astype(dtype)

    def subset(self, rows) -> RowView:
        """A view of some of these rows (integer positions into this view)."""
        return RowView(self.base, self.rows[np.asarray(rows, dtype=int)])


def _row_subset(volumes, rows: np.ndarray):
    """``volumes[rows]``: a ``RowView`` for memory-mapped volumes (nothing read), else a copy."""
    if isinstance(volumes, RowView):
        return volumes.subset(rows)
    if isinstance(volumes, np.memmap):
        return RowView(volumes, rows)
    return volumes[rows]


@dataclass
class Cohort:
    """MRI volumes with one table row per volume.

    Attributes:
        volumes: ``(N, X, Y, Z)`` float32 or float16 array (may be a read-only memmap, or a
            ``RowView`` of one),
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
        check_choice("split", split, SPLITS)
        return np.flatnonzero(self.table["split"].to_numpy() == split)

    def targets(self, task: str, rows=None) -> np.ndarray:
        """``(n,)`` float32 targets of ``rows`` (default all): age in years, or 1.0 for AD."""
        check_choice("task", task, TASKS)
        table = self.table if rows is None else self.table.iloc[np.asarray(rows, dtype=int)]
        if task == "age":
            return table["age"].to_numpy(np.float32)
        return (table["diagnosis"].to_numpy() == "AD").astype(np.float32)

    def subset(self, rows) -> Cohort:
        """A new cohort holding only ``rows`` (integer positions), in that order.

        The volumes of a cohort opened from its cache stay on disk: the subset's are a
        ``RowView`` that reads rows when indexed.
        """
        rows = np.asarray(rows, dtype=int)
        return Cohort(
            volumes=_row_subset(self.volumes, rows),  # memory-mapped: read when used
            table=self.table.iloc[rows].reset_index(drop=True),
            affine=self.affine.copy(),
            effects=self.effects,
            # a subset's content differs from the cache's: drop the cache's checksum
            meta={k: v for k, v in self.meta.items() if k != "volumes_sha256"},
        )

    def resplit(self, val: float = 0.15, test: float = 0.15, seed: int = 0) -> Cohort:
        """The same volumes with new participant-level splits (``split_subjects``).

        For designs that need another balance than the cohort's own, e.g. a large test
        split for statistical power with a small training set. The volumes are shared, so
        cached slice features (keyed by the volumes' content) stay valid.
        """
        table = split_subjects(self.table.drop(columns="split"), val=val, test=test, seed=seed)
        meta = {**self.meta, "splits": {"val": val, "test": test, "seed": seed}}
        return Cohort(self.volumes, table, self.affine, self.effects, meta)

    def save(self, path: str | os.PathLike, overwrite: bool = False):
        """Write the cohort cache to the directory ``path`` atomically; returns the path.

        See :func:`save_cohort`.
        """
        return save_cohort(self, path, overwrite=overwrite)


# ----------------------------------------------------------------------------- the cache

FORMAT = "slicemri-lite cohort"
FORMAT_VERSION = 1
_CACHE_KEYS = (
    "format",
    "format_version",
    "files",
    "n_volumes",
    "shape",
    "dtype",
    "affine",
    "cache",
    "volumes_sha256",
)


class CohortCacheError(RuntimeError):
    """A cohort cache folder is missing, incomplete or damaged."""


def sha256_file(path: Path, chunk: int = 1 << 23) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _check_cohort(cohort: Cohort) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in cohort.table.columns]
    if missing:
        raise ValueError(
            f"the cohort table lacks the columns {missing}; it has {list(cohort.table.columns)}."
        )
    if cohort.volumes.ndim != 4 or len(cohort.volumes) != len(cohort.table):
        raise ValueError(
            f"volumes must be (N, X, Y, Z) with N = {len(cohort.table)} table rows; "
            f"got shape {cohort.volumes.shape}."
        )
    if cohort.volumes.dtype not in (np.float16, np.float32):
        raise ValueError(
            f"volumes must be float16 or float32; {cohort.volumes.dtype} was provided."
        )


def _write_folder(cohort: Cohort, folder: Path) -> None:
    np.save(folder / "volumes.npy", np.ascontiguousarray(cohort.volumes))
    for name, effect in cohort.effects.items():
        np.save(folder / f"effect_{name}.npy", np.asarray(effect, dtype=np.float32))
    cohort.table.to_csv(folder / "participants.tsv", sep="\t", index=False)
    files = sorted(p.name for p in folder.iterdir())
    meta = {k: v for k, v in cohort.meta.items() if k not in _CACHE_KEYS}
    meta.update(
        format=FORMAT,
        format_version=FORMAT_VERSION,
        n_volumes=len(cohort),
        shape=list(cohort.shape),
        dtype=str(cohort.volumes.dtype),
        affine=np.asarray(cohort.affine, dtype=float).tolist(),
        files={name: sha256_file(folder / name) for name in files},
    )
    with open(folder / "meta.json", "w") as f:
        json.dump(meta, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())


def save_cohort(cohort: Cohort, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write ``cohort`` to the folder ``path``: into a temporary folder first, then renamed.

    Args:
        cohort: the cohort to save.
        path: the cache folder to create.
        overwrite: replace an existing folder at ``path`` (else refuse).

    Returns:
        ``path`` as a ``Path``.
    """
    _check_cohort(cohort)
    path = Path(path).expanduser()
    with atomic_path(path, directory=True, overwrite=overwrite) as folder:
        _write_folder(cohort, folder)
    return path


def _read_meta(path: Path) -> dict:
    hint = "Delete the folder and build the cohort again (see data_scripts/README.md)."
    if not path.is_dir():
        raise CohortCacheError(f"no cohort cache at {path}: the folder does not exist. {hint}")
    meta_file = path / "meta.json"
    if not meta_file.is_file():
        raise CohortCacheError(
            f"{path} is not a complete cohort cache: meta.json is missing (the write was "
            f"interrupted, or this is not a cohort folder). {hint}"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CohortCacheError(f"{meta_file} is damaged ({err}). {hint}") from err
    if meta.get("format") != FORMAT or not isinstance(meta.get("files"), dict):
        raise CohortCacheError(
            f"{meta_file} does not describe a slicemri-lite cohort cache. {hint}"
        )
    if meta.get("format_version") != FORMAT_VERSION:
        raise CohortCacheError(
            f"{path} has cache format version {meta.get('format_version')!r}; this version of "
            f"slicemri-lite reads version {FORMAT_VERSION}. {hint}"
        )
    return meta


def verify_cohort(path: str | os.PathLike) -> dict:
    """Check every file of the cache at ``path`` against its checksum; return its meta.

    Raises:
        CohortCacheError: naming the first missing or changed file and the fix.
    """
    path = Path(path).expanduser()
    meta = _read_meta(path)
    for name, expected in meta["files"].items():
        file = path / name
        if not file.is_file():
            raise CohortCacheError(
                f"{path} is damaged: {name} is missing. Delete the folder and build the cohort again."
            )
        if sha256_file(file) != expected:
            raise CohortCacheError(
                f"{path} is damaged: the checksum of {name} does not match meta.json (the file "
                "changed or was cut short after it was written). Delete the folder and build "
                "the cohort again."
            )
    return meta


def load_cohort(path: str | os.PathLike, mmap: bool = True, verify: bool = True) -> Cohort:
    """Load a cohort cache folder written by :func:`save_cohort`.

    Args:
        path: the cache folder.
        mmap: map ``volumes.npy`` read-only instead of reading it into memory.
        verify: check every file's SHA-256 against ``meta.json`` first (reads each file once).

    Returns:
        The cohort; ``volumes`` is ``(N, X, Y, Z)`` as saved.
    """
    path = Path(path).expanduser()
    meta = verify_cohort(path) if verify else _read_meta(path)
    volumes = np.load(path / "volumes.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
    table = pd.read_csv(
        path / "participants.tsv",
        sep="\t",
        keep_default_na=False,
        na_values=[""],
        dtype={"participant_id": str, "sex": str, "diagnosis": str, "split": str},
    )
    if volumes.shape != (meta["n_volumes"], *meta["shape"]) or len(table) != meta["n_volumes"]:
        raise CohortCacheError(
            f"{path} is damaged: volumes.npy is {volumes.shape} and participants.tsv has "
            f"{len(table)} rows, but meta.json says {meta['n_volumes']} volumes of {meta['shape']}."
        )
    effects = {
        name[len("effect_") : -len(".npy")]: np.load(path / name, allow_pickle=False)
        for name in sorted(meta["files"])
        if name.startswith("effect_")
    }
    cohort_meta = {k: v for k, v in meta.items() if k not in _CACHE_KEYS}
    cohort_meta["cache"] = str(path)
    cohort_meta["volumes_sha256"] = meta["files"]["volumes.npy"]  # identifies the content
    return Cohort(volumes, table, np.array(meta["affine"]), effects, cohort_meta)
