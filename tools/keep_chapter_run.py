"""Run a chapter with larger parameters and keep what it glued in ``results/``.

Some chapters measure more than fits their live budget (Chapter 7 scores a handful of
participants live). Their larger run is the chapter itself, executed with papermill and
bigger parameters: the same code, not a second copy of it. This script runs it and
keeps, in a new folder:

- ``glued.json``: every value the chapter glued (``myst_nb.glue``), as text;
- ``<name>.csv``: each glued value whose name ends in ``_json`` (a table as records);
- ``provenance.json``: the command, parameters, start time (UTC), wall time, machine,
  package versions and ``status`` (``complete``, or ``failed`` with the error).

Example (Chapter 7's full saliency sweep on two CPU cores)::

    python tools/keep_chapter_run.py book/07_interpretation.ipynb \\
        --out results/saliency_cpu -p PROFILE cpu -p SWEEP "{'n_scored': 50, 'levels': 5}"

(a value is read as a Python literal where it is one: numbers, dicts, ``None``).

The executed notebook itself is not kept (its figures are large); rerun the command
to see them.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import platform
import shlex
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nbformat
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from slicemri_lite._core.atomic import write_csv_atomic, write_json_atomic  # noqa: E402
from slicemri_lite._core.env import package_versions  # noqa: E402


def glued_values(nb: nbformat.NotebookNode) -> dict[str, str]:
    """``{name: text}`` for every value the notebook glued."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            values[name] = data.get(
                "application/papermill.record/text/plain", data.get("text/plain")
            )
    return values


def glued_tables(values: dict[str, str]) -> dict[str, pd.DataFrame]:
    """The glued values named ``*_json``, read back as tables of records."""
    tables = {}
    for name, text in values.items():
        if name.endswith("_json") and text is not None:
            records = json.loads(ast.literal_eval(text))
            tables[name.removesuffix("_json")] = pd.DataFrame(records)
    return tables


def parse_parameter(text: str):
    """A ``-p NAME VALUE`` value: a Python literal where it is one, else the string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _provenance(args, parameters: dict, started: float, status: str) -> dict:
    """What made the kept folder: command, parameters, machine and versions."""
    import torch

    return {
        "command": "python tools/keep_chapter_run.py " + shlex.join(sys.argv[1:]),
        "notebook": str(args.notebook),
        "parameters": parameters,
        "status": status,
        "started_utc": datetime.fromtimestamp(started, UTC).isoformat(timespec="seconds"),
        "wall_seconds": round(time.time() - started, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, torch threads "
        f"{torch.get_num_threads()}, cuda {'yes' if torch.cuda.is_available() else 'no'}",
        "versions": package_versions(),
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebook", type=Path, help="the chapter, e.g. book/07_....ipynb")
    parser.add_argument("--out", type=Path, required=True, help="folder to create")
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a parameter of the chapter's parameters cell (repeatable)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists already: choose a new folder or remove it")
    import papermill

    parameters = {name: parse_parameter(value) for name, value in args.p}
    started = time.time()
    args.out.mkdir(parents=True)
    write_json_atomic(
        args.out / "provenance.json", _provenance(args, parameters, started, "running")
    )
    with tempfile.TemporaryDirectory() as tmp:
        executed = Path(tmp) / args.notebook.name
        try:
            papermill.execute_notebook(
                str(args.notebook),
                str(executed),
                parameters=parameters,
                cwd=str(args.notebook.parent),
                progress_bar=False,
            )
        except Exception as error:  # keep the record of a failed run, then fail
            status = f"failed: {type(error).__name__}: {str(error)[:500]}"
            write_json_atomic(
                args.out / "provenance.json", _provenance(args, parameters, started, status)
            )
            raise
        values = glued_values(nbformat.read(executed, as_version=4))
    for name, table in glued_tables(values).items():
        write_csv_atomic(table, args.out / f"{name}.csv")
    write_json_atomic(args.out / "glued.json", values)
    write_json_atomic(
        args.out / "provenance.json", _provenance(args, parameters, started, "complete")
    )
    print(f"kept {len(values)} glued values in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
