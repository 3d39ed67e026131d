"""Helpers the tests share for running chapters and reading what they recorded."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=1)
def keeper():
    """``tools/keep_chapter_run.py`` as a module (it reads glued values for kept runs)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("keep", ROOT / "tools" / "keep_chapter_run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def glued(nb: nbformat.NotebookNode) -> dict[str, str]:
    """Values recorded with ``myst_nb.glue``, as their ``text/plain`` form."""
    return keeper().glued_values(nb)


def glued_text(nb: nbformat.NotebookNode, name: str) -> str:
    """One glued string, without the quotes its ``text/plain`` form carries."""
    return str(glued(nb)[name]).strip("'\"")


def glued_float(nb: nbformat.NotebookNode, name: str) -> float:
    """One glued value as a float (raises KeyError naming the value when it is missing)."""
    values = glued(nb)
    if name not in values:
        raise KeyError(f"the chapter glued no value named {name!r}; it glued {sorted(values)}")
    return float(str(values[name]).strip("'\""))


def pages() -> list[Path]:
    """The book's notebooks that are not numbered chapters (e.g. preparing your scans)."""
    return sorted(p for p in BOOK.glob("*.ipynb") if p not in chapters())


_built: dict[str, Path] = {}


def stage_book(executed: dict[str, Path], stage: Path) -> None:
    """Copy the book's sources to ``stage`` with the executed notebooks and execution off."""
    import shutil

    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    stage.mkdir(parents=True)
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", stage / "_toc.yml")
    shutil.copytree(ROOT / "book", stage / "book", ignore=shutil.ignore_patterns("*.ipynb", "_*"))
    for stem, path in executed.items():
        shutil.copy(path, stage / "book" / f"{stem}.ipynb")


def build_book(executed_chapter, stage: Path) -> tuple[Path, str]:
    """Build the book strictly (``-W``) from executed notebooks, once per test session.

    Chapters run at PROFILE="smoke" through ``executed_chapter``; other notebook pages
    run as they are. Returns the HTML folder and the build's output; a failed build
    raises AssertionError with the end of that output.
    """
    import subprocess
    import sys

    if "html" not in _built:
        executed = {}
        for path in chapters():
            executed_chapter(path.stem)
            executed[path.stem] = EXECUTED / "book" / path.name
        for path in pages():
            execute_notebook(path, EXECUTED / "book")
            executed[path.stem] = EXECUTED / "book" / path.name
        stage_book(executed, stage)
        jupyter_book = Path(sys.executable).parent / "jupyter-book"
        result = subprocess.run(
            [str(jupyter_book), "build", "--all", "-W", "--keep-going", str(stage)],
            capture_output=True,
            text=True,
            timeout=900,
        )
        log = result.stdout[-4000:] + result.stderr[-4000:]
        assert result.returncode == 0, log
        _built["html"], _built["log"] = stage / "_build" / "html", log
    return _built["html"], _built["log"]
