"""The repository's own promises: environment files in step, notebooks clean, book config sane."""

from __future__ import annotations

import re
import tomllib

import nbformat
import pytest
import yaml
from notebook_tools import BOOK, ROOT, chapters

# conda-forge names that differ from the PyPI names in pyproject.toml
CONDA_TO_PYPI = {"pytorch": "torch"}


def _split_requirement(req: str) -> tuple[str, str]:
    """``"numpy>=1.24"`` -> ``("numpy", ">=1.24")``."""
    name, spec = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req).groups()
    return name.lower().replace("_", "-"), spec.replace(" ", "")


def _pyproject_requirements() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        reqs += extra
    return dict(_split_requirement(r) for r in reqs)


def _environment_requirements() -> dict[str, str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    reqs = {}
    for dep in env["dependencies"]:
        items = dep["pip"] if isinstance(dep, dict) else [dep]
        for item in items:
            name, spec = _split_requirement(item)
            if name in {"python", "pip"}:
                continue
            reqs[CONDA_TO_PYPI.get(name, name)] = spec
    return reqs


def test_environment_yml_matches_pyproject():
    pyproject, environment = _pyproject_requirements(), _environment_requirements()
    assert set(environment) == set(pyproject), (
        f"only in environment.yml: {sorted(set(environment) - set(pyproject))}; "
        f"only in pyproject.toml: {sorted(set(pyproject) - set(environment))}"
    )
    differing = {
        n: (pyproject[n], environment[n]) for n in pyproject if pyproject[n] != environment[n]
    }
    assert not differing, f"version ranges differ (pyproject, environment.yml): {differing}"


def test_pyproject_keeps_torch_open_for_colab():
    assert _pyproject_requirements()["torch"] == ">=2.3"


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def test_config_has_launch_buttons_and_branch():
    config = _config()
    assert config["repository"]["branch"] == "main"
    assert config["repository"]["url"].startswith("https://github.com/")
    assert config["launch_buttons"]["binderhub_url"] == "https://mybinder.org"
    assert config["launch_buttons"]["colab_url"] == "https://colab.research.google.com"
    assert config["execute"]["execute_notebooks"] == "cache"
    for pattern in ("README.md", "tests", ".venv"):
        assert pattern in config["exclude_patterns"]


def _toc_files() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]
    for part in toc["parts"]:
        files += [chapter["file"] for chapter in part["chapters"]]
    return files


def test_toc_lists_exactly_the_existing_chapters():
    listed = _toc_files()
    for name in listed:
        assert any((ROOT / f"{name}{ext}").exists() for ext in (".md", ".ipynb")), (
            f"{name} is in _toc.yml but missing"
        )
    listed_chapters = {name for name in listed if re.search(r"/\d\d_", name)}
    assert listed_chapters == {f"book/{path.stem}" for path in chapters()}


@pytest.fixture(scope="module", params=[p.name for p in chapters()])
def notebook(request) -> nbformat.NotebookNode:
    return nbformat.read(BOOK / request.param, as_version=4)


def _tagged(nb, tag: str) -> list:
    return [cell for cell in nb.cells if tag in cell.metadata.get("tags", [])]


def test_notebook_committed_without_outputs(notebook):
    dirty = [
        i
        for i, c in enumerate(notebook.cells)
        if c.cell_type == "code" and (c.outputs or c.execution_count)
    ]
    assert not dirty, f"cells {dirty} have outputs: run `make strip`"


def test_notebook_has_one_literal_parameters_cell(notebook):
    cells = _tagged(notebook, "parameters")
    assert len(cells) == 1
    namespace: dict = {}
    exec(cells[0].source, {"__builtins__": {}}, namespace)  # literals only: no names, no imports
    assert namespace.get("PROFILE") == "auto"


def test_install_cell_is_the_shared_one_and_points_at_config_url(notebook):
    template = (BOOK / "_install_cell.ipy").read_text().strip()
    cells = [c for c in _tagged(notebook, "remove-cell") if "google.colab" in c.source]
    assert len(cells) == 1, "each chapter needs exactly one Colab install cell tagged remove-cell"
    assert cells[0].source.strip() == template
    assert f'REPOSITORY = "{_config()["repository"]["url"]}"' in template


def test_notebook_prints_versions_and_has_exercises(notebook):
    sources = "\n".join(c.source for c in notebook.cells)
    assert "slicemri_lite.about()" in sources
    assert _tagged(notebook, "hide-cell"), "exercise solutions are cells tagged hide-cell"


def _is_check(node) -> bool:
    """True for a statement that only checks: assert, np.testing.*, or loops/ifs of those."""
    import ast

    if isinstance(node, ast.Assert):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
        return "testing.assert" in ast.unparse(node.value.func)
    if isinstance(node, ast.For | ast.If):
        return all(_is_check(n) for n in node.body + node.orelse)
    return False


def _python(source: str) -> str:
    """``source`` without IPython magics (``%...``), which are not Python."""
    return "\n".join("" if line.lstrip().startswith("%") else line for line in source.splitlines())


def test_check_only_cells_are_removed_from_the_page(notebook):
    import ast

    shown = [
        cell.source.splitlines()[0]
        for cell in notebook.cells
        if cell.cell_type == "code"
        and "remove-cell" not in cell.metadata.get("tags", [])
        and all(_is_check(n) for n in ast.parse(_python(cell.source)).body)
    ]
    assert not shown, f"cells that only check must be tagged remove-cell: {shown}"


def test_solutions_are_tagged_solution_and_collapsed(notebook):
    solutions = _tagged(notebook, "solution")
    assert solutions, "each chapter has exercises with a solution cell tagged solution"
    assert solutions == _tagged(notebook, "hide-cell")


def test_notebook_code_fits_the_page(notebook):
    config = tomllib.loads((BOOK / "ruff.toml").read_text())
    assert config["line-length"] == 88 and "E501" not in config["lint"]["ignore"]
    long = [
        line
        for cell in notebook.cells
        if cell.cell_type == "code"
        for line in cell.source.splitlines()
        if len(line) > 88
    ]
    assert not long, f"code lines over 88 characters: {long}"


def test_chapter_opening_states_its_run_time(notebook):
    assert re.search(r"\{\{ run_time_\d\d \}\}", notebook.cells[0].source)


def test_timings_in_config_are_in_step_with_results():
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from timings import measured_times, substitutions, updated_config

    text = (ROOT / "_config.yml").read_text()
    assert updated_config(text, substitutions()) == text, "run python tools/timings.py --write"
    subs = _config()["parse"]["myst_substitutions"]
    assert set(subs) == {f"run_time_{p.name[:2]}" for p in chapters()} | {"timings_table"}
    assert measured_times()["cpu"]["01"] in subs["run_time_01"]
    assert "GPU: not yet measured" in subs["run_time_01"]


def test_timings_are_read_from_the_results_table(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from timings import measured_times, run_time_sentence

    (tmp_path / "timings_cpu.md").write_text("| Chapter 2 at `cpu` | 20 s | x |\n")
    (tmp_path / "timings_gpu.md").write_text("| Chapter 2 at `gpu` | 9 s | T4 |\n")
    times = measured_times(tmp_path)
    assert times == {"cpu": {"02": "20 s"}, "gpu": {"02": "9 s"}}
    assert run_time_sentence("02", times).startswith("20 s at `cpu` (")
    assert "GPU: 9 s" in run_time_sentence("02", times)
    assert "`cpu`: not yet measured" in run_time_sentence("01", times)


def test_a_chapters_time_from_an_empty_data_directory_is_said_where_measured(tmp_path):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from timings import cold_start_times, measured_times, run_time_sentence

    (tmp_path / "timings_cpu.md").write_text(
        "| Chapter 2 at `cpu` | 20 s | x |\n"
        "| Chapter 2 at `cpu`, empty data directory | 4 min 2 s | y |\n"
    )
    times, cold = measured_times(tmp_path), cold_start_times(tmp_path)
    assert cold == {"02": "4 min 2 s"} and times["cpu"] == {"02": "20 s"}
    sentence = run_time_sentence("02", times, cold)
    assert sentence.startswith("20 s at `cpu` (2 CPU cores, as on Binder; 4 min 2 s from an")
    assert "empty data directory" not in run_time_sentence("03", times, cold)


def test_install_cell_is_pinned_to_the_build_commit(monkeypatch):
    import sys

    sys.path.insert(0, str(ROOT / "tools"))
    from pin_install import build_ref, pin_source

    template = (BOOK / "_install_cell.ipy").read_text()
    assert 'REF = "main"' in template and "@{REF}" in template
    pinned = pin_source(template, "1a2b3c4")
    assert 'REF = "1a2b3c4"' in pinned and 'REF = "main"' not in pinned
    monkeypatch.setenv("SLICEMRI_BUILD_REF", "v1.2.0")
    assert build_ref() == "v1.2.0"
    monkeypatch.delenv("SLICEMRI_BUILD_REF")
    assert re.fullmatch(r"[0-9a-f]{40}", build_ref()), "the checkout's commit"
    monkeypatch.setenv("SLICEMRI_BUILD_REF", "main; rm -rf /")
    with pytest.raises(ValueError, match="'ref' must be"):
        build_ref()
    with pytest.raises(ValueError, match="exactly one line"):
        pin_source("print(1)", "abc")


def test_pages_for_teaching_and_real_data_are_listed_and_linked():
    listed = _toc_files()
    intro = (BOOK / "intro.md").read_text()
    for page in ("glossary", "preparing_your_scans", "ethics_and_limits", "troubleshooting"):
        assert f"book/{page}" in listed
        assert f"({page}." in intro, f"the intro does not link {page}"
    assert "timings" in " ".join(listed) and "book/api/index" in listed


def test_glossary_terms_used_in_chapters_exist():
    glossary = (BOOK / "glossary.md").read_text()
    # Sphinx matches {term} case-insensitively
    defined = {t.lower() for t in re.findall(r"^([A-Z][^\n]*)$", glossary, re.MULTILINE)}
    for path in chapters():
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            for text, target in re.findall(r"\{term\}`([^`<]+?)\s*(?:<([^>]+)>)?`", cell.source):
                assert (target or text).lower() in defined, (
                    f"{path.name}: no glossary term {text!r}"
                )


def test_the_intro_lists_every_chapter_and_the_profiles_as_they_are():
    from slicemri_lite.experiments import BOOK_COHORT, PROFILES

    intro = (BOOK / "intro.md").read_text()
    listed = re.findall(r"^(\d)\. \*", intro, re.M)
    assert listed == [p.name[1] for p in chapters()], "the intro's chapter list is stale"
    rows = dict(re.findall(r'^\| `"([a-z-]+)"` \|[^|]*\| ([^|]*) \|', intro, re.M))
    for name, profile in PROFILES.items():
        assert f"{profile.n_subjects} participants at {profile.resolution} mm" in rows[name], (
            f"the intro's profile table is stale for {name!r}: {rows.get(name)!r}"
        )
    book = BOOK_COHORT
    n_test = round(book["n_subjects"] * book["test"])
    said = f"{book['n_subjects']} participants at {book['resolution']} mm ({n_test} of them"
    assert said in rows["cpu"], f"the intro's cpu row does not give the book's cohort: {said}"


def test_every_chapter_with_results_says_smoke_numbers_mean_nothing():
    """At a smoke size a page prints experiments.SMOKE_NOTE right after its profile."""
    import json

    for path in sorted((ROOT / "book").glob("0[2-8]_*.ipynb")):
        sources = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]]
        at = next(i for i, s in enumerate(sources) if "profile = get_profile(PROFILE)" in s)
        note = sources[at + 1]
        assert note.startswith("if profile.is_smoke:") and "SMOKE_NOTE" in note, path.name


def test_binder_builds_the_cpu_data_into_its_image():
    """Binder readers start warm: postBuild runs make book's data step at cpu."""
    lines = [line.strip() for line in (ROOT / "postBuild").read_text().splitlines()]
    assert "python -m pip install --no-deps -e ." in lines
    assert "python data_scripts/make_synthetic.py --profile cpu" in lines
    assert lines.index("python data_scripts/make_synthetic.py --profile cpu") > lines.index(
        "python -m pip install --no-deps -e ."
    )
