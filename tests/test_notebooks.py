"""Every chapter runs top to bottom at PROFILE="smoke", and a failing cell fails the run."""

from __future__ import annotations

import nbformat
import papermill
import pytest
from notebook_tools import chapters, execute_notebook

pytestmark = pytest.mark.notebooks


@pytest.mark.parametrize("stem", [p.stem for p in chapters()])
def test_chapter_executes_at_smoke(executed_chapter, stem):
    nb = executed_chapter(stem)
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and 'PROFILE = "smoke"' in injected[0].source
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, "a chapter with no figure: did the plots render?"


def test_a_failing_cell_fails_the_run(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    params = nbformat.v4.new_code_cell('PROFILE = "auto"')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [
        params,
        nbformat.v4.new_code_cell("assert PROFILE == 'smoke'\nraise ValueError('broken cell')"),
    ]
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(papermill.PapermillExecutionError, match="broken cell"):
        execute_notebook(path, tmp_path / "out", {"PROFILE": "smoke"})
