"""A strict Jupyter Book build of the executed chapters: a warning or broken reference fails."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from notebook_tools import ROOT, chapters

pytestmark = pytest.mark.notebooks


def _stage_book(executed: dict[str, Path], stage: Path) -> None:
    """Copy the book's sources to ``stage`` with the executed notebooks and execution off."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["execute"]["execute_notebooks"] = "off"
    stage.mkdir(parents=True)
    (stage / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    shutil.copy(ROOT / "_toc.yml", stage / "_toc.yml")
    shutil.copytree(ROOT / "book", stage / "book", ignore=shutil.ignore_patterns("*.ipynb", "_*"))
    for stem, path in executed.items():
        shutil.copy(path, stage / "book" / f"{stem}.ipynb")


def test_book_builds_without_warnings(executed_chapter, tmp_path):
    from notebook_tools import EXECUTED

    executed = {}
    for path in chapters():
        executed_chapter(path.stem)
        executed[path.stem] = EXECUTED / "book" / path.name
    stage = tmp_path / "book-src"
    _stage_book(executed, stage)
    jupyter_book = Path(sys.executable).parent / "jupyter-book"
    result = subprocess.run(
        [str(jupyter_book), "build", "--all", "-W", "--keep-going", str(stage)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    html = stage / "_build" / "html"
    for path in chapters():
        page = (html / "book" / f"{path.stem}.html").read_text()
        assert f"book/{path.stem}.ipynb" in page, (
            "launch buttons should point at the chapter notebook"
        )
        assert "Traceback" not in page
