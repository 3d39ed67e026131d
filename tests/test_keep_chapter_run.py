"""tools/keep_chapter_run.py: a chapter run with larger parameters, kept with provenance."""

from __future__ import annotations

import json

import nbformat
import pandas as pd
import pytest
from notebook_tools import keeper

keep = keeper()


def _chapter(path, body: str) -> None:
    """A two-cell notebook: a parameters cell, then ``body``."""
    params = nbformat.v4.new_code_cell("N = 2")
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[params, nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)


GLUE_TABLE = """
import pandas as pd
from myst_nb import glue
table = pd.DataFrame({"i": range(N), "square": [i * i for i in range(N)]})
glue("squares_json", table.to_json(orient="records"), display=False)
glue("total", int(table["square"].sum()), display=False)
"""


@pytest.mark.slow
def test_kept_run_writes_glued_tables_and_provenance(tmp_path):
    chapter = tmp_path / "chapter.ipynb"
    _chapter(chapter, GLUE_TABLE)
    out = tmp_path / "kept"
    assert keep.main([str(chapter), "--out", str(out), "-p", "N", "4"]) == 0
    squares = pd.read_csv(out / "squares.csv")
    assert squares["square"].tolist() == [0, 1, 4, 9]  # the parameter reached the chapter
    assert json.loads((out / "glued.json").read_text())["total"] == "14"
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"] == "complete" and provenance["parameters"] == {"N": 4}
    assert {"started_utc", "wall_seconds", "machine", "versions"} <= set(provenance)


@pytest.mark.slow
def test_failed_run_is_recorded_as_failed_and_keeps_no_tables(tmp_path):
    chapter = tmp_path / "chapter.ipynb"
    _chapter(chapter, "raise ValueError('planted failure')")
    out = tmp_path / "kept"
    with pytest.raises(Exception, match="planted failure"):
        keep.main([str(chapter), "--out", str(out)])
    provenance = json.loads((out / "provenance.json").read_text())
    assert provenance["status"].startswith("failed") and "planted failure" in provenance["status"]
    assert not (out / "glued.json").exists()


def test_an_existing_folder_is_refused(tmp_path):
    chapter = tmp_path / "chapter.ipynb"
    _chapter(chapter, "x = 1")
    with pytest.raises(SystemExit):
        keep.main([str(chapter), "--out", str(tmp_path)])


def test_parameters_are_read_as_literals_where_they_are():
    assert keep.parse_parameter("16") == 16
    assert keep.parse_parameter("cpu") == "cpu"
    assert keep.parse_parameter("None") is None
