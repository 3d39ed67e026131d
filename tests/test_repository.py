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
