"""Student and instructor editions: solutions out (by tag), stubs in, and they run."""

from __future__ import annotations

import sys

import nbformat
import pytest
from notebook_tools import ROOT, chapters

sys.path.insert(0, str(ROOT / "tools"))

from editions import STUB_TAG, make_edition, write_editions  # noqa: E402
from timings import substitutions  # noqa: E402

REF = "0123abc"


def _tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


@pytest.fixture(scope="module", params=[p.name for p in chapters()])
def chapter(request):
    path = ROOT / "book" / request.param
    return path.name[:2], nbformat.read(path, as_version=4)


def _edition(chapter, edition):
    number, nb = chapter
    return make_edition(nb, edition, substitutions(), REF, number)


def test_student_edition_replaces_every_solution_with_a_stub(chapter):
    _, nb = chapter
    student = _edition(chapter, "student")
    solutions = [c for c in nb.cells if "solution" in _tags(c)]
    stubs = [c for c in student.cells if STUB_TAG in _tags(c)]
    assert solutions, "every chapter has exercises with solution cells"
    assert not [c for c in student.cells if "solution" in _tags(c)]
    assert len(stubs) == len(solutions)
    solution_code = {c.source for c in solutions}
    for stub in stubs:
        assert stub.source.startswith("# Exercise ")
        assert stub.source.splitlines()[-1].startswith("raise NotImplementedError(")
        assert stub.source not in solution_code
        compile(stub.source, "stub", "exec")  # the starter code is valid Python


def test_editions_keep_parameters_clear_outputs_and_open_with_the_run_time(chapter):
    number, nb = chapter
    for edition in ("student", "instructor"):
        out = _edition(chapter, edition)
        header = out.cells[0]
        assert f"{edition}-header" in _tags(header)
        assert substitutions()[f"run_time_{number}"].split(" (")[0] in header.source
        assert "{{" not in "".join(c.source for c in out.cells if c.cell_type == "markdown")
        params = [c for c in out.cells if "parameters" in _tags(c)]
        assert [c.source for c in params] == [
            c.source for c in nb.cells if "parameters" in _tags(c)
        ]
        assert all(not c.get("outputs") for c in out.cells if c.cell_type == "code")
        install = next(c for c in out.cells if "google.colab" in c.source)
        assert f'REF = "{REF}"' in install.source


def test_instructor_edition_keeps_the_solutions(chapter):
    _, nb = chapter
    instructor = _edition(chapter, "instructor")
    assert [c.source for c in instructor.cells if "solution" in _tags(c)] == [
        c.source for c in nb.cells if "solution" in _tags(c)
    ]
    assert not [c for c in instructor.cells if STUB_TAG in _tags(c)]


def test_an_unknown_edition_is_refused(chapter):
    with pytest.raises(ValueError, match="'edition' must be one of"):
        _edition(chapter, "teacher")


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("SLICEMRI_BUILD_REF", REF)
    out = tmp_path_factory.mktemp("student")
    write_editions("student", out)
    return out


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_make_student_writes_one_notebook_per_chapter(student_dir):
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == [p.name for p in chapters()]


@pytest.mark.notebooks
@pytest.mark.parametrize("name", [p.name for p in chapters()])
def test_student_notebook_runs_up_to_its_first_exercise(student_dir, name, tmp_path):
    """Everything before the first stub runs at PROFILE="smoke"; the stub itself raises."""
    import papermill

    nb = nbformat.read(student_dir / name, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if STUB_TAG in _tags(c))
    nb.cells = nb.cells[: first + 1]
    truncated = tmp_path / name
    nbformat.write(nb, truncated)
    with pytest.raises(papermill.PapermillExecutionError) as error:
        papermill.execute_notebook(
            str(truncated),
            str(tmp_path / f"out_{name}"),
            parameters={"PROFILE": "smoke"},
            kernel_name="python3",
            cwd=str(tmp_path),
            progress_bar=False,
        )
    assert error.value.ename == "NotImplementedError", error.value
    assert error.value.cell_index == first + 1  # papermill adds the injected parameters
