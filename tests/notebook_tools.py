"""Helpers the tests share for running chapters and reading what they recorded."""

from __future__ import annotations

from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
EXECUTED = ROOT / "_build" / "test-executed"


def chapters() -> list[Path]:
    """The book's numbered chapters, in order."""
    return sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))


def execute_notebook(
    path: Path, out_dir: Path, parameters: dict | None = None
) -> nbformat.NotebookNode:
    """Execute ``path`` with papermill into ``out_dir``; a failing cell raises.

    The kernel runs in the notebook's folder, as Jupyter Book runs it.
    """
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    papermill.execute_notebook(
        str(path),
        str(output),
        parameters=parameters or {},
        kernel_name="python3",
        cwd=str(path.parent),
        progress_bar=False,
        log_output=False,
    )
    return nbformat.read(output, as_version=4)


def glued(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Values recorded with ``myst_nb.glue``, as their ``text/plain`` form."""
    values = {}
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            name = output.get("metadata", {}).get("scrapbook", {}).get("name")
            if name is None:
                continue
            data = output.get("data", {})
            text = data.get("application/papermill.record/text/plain", data.get("text/plain"))
            values[name] = text
    return values


def glued_float(nb: nbformat.NotebookNode, name: str) -> float:
    """One glued value as a float (raises KeyError naming the value when it is missing)."""
    values = glued(nb)
    if name not in values:
        raise KeyError(f"the chapter glued no value named {name!r}; it glued {sorted(values)}")
    return float(str(values[name]).strip("'\""))
