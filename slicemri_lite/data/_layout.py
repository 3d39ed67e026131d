"""The data directory's caches: what is there, how big, and one command to clear it.

``<data dir>`` is ``$SLICEMRI_DATA``, else ``~/slicemri_data`` (see ``slicemri_lite.env``)::

    cohorts/<name>-v<generator version>/    one cohort (slicemri_lite.cohort)
    features/<cohort folder>/<encoder spec>/ its frozen slice features (slicemri_lite.features)

Caches invalidate themselves: a new synthetic generator version builds a cohort under a
new name, and features are keyed by the cohort's checksum, the encoder spec and
``FEATURES_VERSION``, so stale folders are never read, only left behind. ``clear`` removes
them (``--stale``: only synthetic cohorts an older generator version made, and features
whose cohort is gone or stale, or whose version is old)::

    python -m slicemri_lite.data list
    python -m slicemri_lite.data clear --stale
    python -m slicemri_lite.data clear features
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd

from slicemri_lite._core.env import data_dir as default_data_dir
from slicemri_lite._core.validation import check_choice

__all__ = ["cache_table", "clear_cache", "main"]

KINDS = ("cohorts", "features", "all")
FEATURES_VERSION = 1  # bump when the way features are computed changes (train._features)


def _size_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def _cohort_is_stale(folder: Path) -> bool:
    """A synthetic cohort that an older generator version made (nothing opens it again)."""
    from slicemri_lite.data.synthetic._generator import GENERATOR_VERSION

    try:
        meta = json.loads((folder / "meta.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False  # not a cohort this library wrote whole: left for the reader to judge
    version = (
        meta.get("generator", {}).get("version") if meta.get("source") == "synthetic" else None
    )
    return version is not None and version != GENERATOR_VERSION


def _is_stale(folder: Path, root: Path) -> bool:
    """A feature folder whose cohort is gone or stale, or that an older library version wrote."""
    cohort = root / "cohorts" / folder.parent.name
    try:
        version = json.loads((folder / "meta.json").read_text()).get("version")
    except (OSError, json.JSONDecodeError):
        return True
    return not cohort.is_dir() or _cohort_is_stale(cohort) or version != FEATURES_VERSION


def cache_table(data_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """One row per cached cohort or feature folder: ``kind``, ``name``, ``mb``, ``stale``
    (never read again: see the module docstring)."""
    root = default_data_dir(data_dir)
    rows = [{"kind": "cohorts", "name": f.name, "mb": _size_mb(f), "stale": _cohort_is_stale(f)}
            for f in sorted((root / "cohorts").glob("*")) if f.is_dir()]  # fmt: skip
    for folder in sorted((root / "features").glob("*/*")):
        if folder.is_dir():
            name = f"{folder.parent.name}/{folder.name}"
            rows.append({"kind": "features", "name": name, "mb": _size_mb(folder),
                         "stale": _is_stale(folder, root)})  # fmt: skip
    return pd.DataFrame(rows, columns=["kind", "name", "mb", "stale"])


def clear_cache(
    kind: str = "all", stale_only: bool = False, data_dir: str | os.PathLike | None = None
) -> list[str]:
    """Delete cached folders of ``kind`` ("cohorts", "features" or "all"); returns their names.

    ``stale_only`` deletes only the folders that nothing reads any more (``cache_table``'s
    ``stale``).
    """
    check_choice("kind", kind, KINDS)
    root = default_data_dir(data_dir)
    table = cache_table(root)
    chosen = table if kind == "all" else table[table["kind"] == kind]
    if stale_only:
        chosen = chosen[chosen["stale"]]
    for row in chosen.itertuples():
        shutil.rmtree(root / row.kind / row.name, ignore_errors=True)
    return [f"{row.kind}/{row.name}" for row in chosen.itertuples()]


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(prog="python -m slicemri_lite.data")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list cached cohorts and features with their sizes")
    clear = sub.add_parser("clear", help="delete cached cohorts and/or features")
    clear.add_argument("kind", nargs="?", default="all", choices=KINDS)
    clear.add_argument("--stale", action="store_true", help="only folders nothing reads")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    print(f"data directory: {default_data_dir()}")
    if args.command == "list":
        table = cache_table()
        print(table.to_string(index=False) if len(table) else "nothing cached")
        print(f"total {table['mb'].sum():.1f} MB")
    else:
        removed = clear_cache(args.kind, args.stale)
        print("\n".join(f"removed {name}" for name in removed) or "nothing to remove")
    return 0


if __name__ == "__main__":
    sys.exit(main())
