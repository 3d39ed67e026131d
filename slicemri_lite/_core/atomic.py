"""Atomic file and folder writes: a reader sees the old content or the new, never half of it.

Every writer in the library goes through these helpers::

    with atomic_path("results/results.csv") as tmp:   # tmp sits beside the target
        frame.to_csv(tmp, index=False)                 # write anything to tmp
    # renamed over the target only if the block finished; removed if it raised

``atomic_path(folder, directory=True)`` does the same for a whole folder (a cohort or
feature cache): the block fills a temporary folder that is renamed into place at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "write_csv_atomic"]


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


@contextmanager
def atomic_path(
    path: str | os.PathLike, directory: bool = False, overwrite: bool = True
) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    Args:
        path: the file (or folder, with ``directory=True``) to create or replace.
        directory: yield an empty temporary *folder* instead of a file path.
        overwrite: replace an existing ``path`` (else raise ``FileExistsError`` up front).

    On any exception (``KeyboardInterrupt`` included) the temporary path is removed and the
    previous ``path``, if any, is left untouched.
    """
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True to replace it, or pick another path."
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.partial-{uuid.uuid4().hex[:8]}"
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if directory and path.exists():  # a folder can't be renamed over a folder: swap
            old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:8]}"
            os.rename(path, old)
            os.rename(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp:
        with open(tmp, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    return Path(path)


def write_json_atomic(path: str | os.PathLike, data) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def write_csv_atomic(frame, path: str | os.PathLike, **to_csv) -> Path:
    """Write a pandas ``frame`` to ``path`` atomically (``index=False`` unless given)."""
    to_csv.setdefault("index", False)
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, **to_csv)
    return Path(path)
