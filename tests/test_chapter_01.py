"""Chapter 1 "Looking at brain MRI", executed at PROFILE="smoke": the values it glued and shows."""

from __future__ import annotations

import html
import re

import pytest
from notebook_tools import glued, glued_float

pytestmark = pytest.mark.notebooks

CHAPTER = "01_looking_at_mri"


@pytest.fixture(scope="module")
def nb(executed_chapter):
    return executed_chapter(CHAPTER)


def _outputs(nb, tag=None):
    for cell in nb.cells:
        if cell.cell_type == "code" and (tag is None or tag in cell.metadata.get("tags", [])):
            yield from ((cell, output) for output in cell.get("outputs", []))


def test_slice_counts_on_the_papers_grid(nb):
    counts = {axis: glued_float(nb, f"n_{axis}") for axis in ("sagittal", "coronal", "axial")}
    assert counts == {"sagittal": 91, "coronal": 109, "axial": 91}
    for axis, n in counts.items():
        # the edge slices are air: some, but not most, slices show no brain
        assert n / 2 < glued_float(nb, f"n_{axis}_brain") < n


def test_grids_and_orientations(nb):
    values = {name: value.strip("'\"") for name, value in glued(nb).items()}
    assert values["grid_shape"] == "91 x 109 x 91"
    assert values["grid_codes"] == "LAS"
    assert values["template_codes"] == "RAS"
    assert glued_float(nb, "voxel_mm") == 2.0


def test_voxel_world_round_trip_is_exact(nb):
    assert glued_float(nb, "roundtrip_error") < 1e-9


def test_flipping_data_but_not_affine_mirrors_the_lesion(nb):
    lesion_x, flipped_x = glued_float(nb, "lesion_x"), glued_float(nb, "flipped_x")
    assert lesion_x == pytest.approx(-40, abs=1)  # marked in the left hemisphere
    assert flipped_x == pytest.approx(-lesion_x, abs=1e-6)
    assert glued_float(nb, "lr_error_mm") == pytest.approx(2 * abs(lesion_x))


def test_every_plotting_cell_shows_an_image(nb):
    plotting = [
        c
        for c in nb.cells
        if c.cell_type == "code"
        and re.search(r"(plotting|analysis)\.plot_|slice_browser\(", c.source)
    ]
    assert len(plotting) >= 6
    for cell in plotting:
        pngs = [o for o in cell.outputs if "image/png" in o.get("data", {})]
        assert pngs, f"no figure under the cell:\n{cell.source}"


def test_view_img_viewer_is_embedded_with_its_javascript(nb):
    pages = [
        html.unescape(o["data"]["text/html"])
        for _, o in _outputs(nb)
        if "text/html" in o.get("data", {}) and "brainsprite" in o["data"]["text/html"]
    ]
    assert len(pages) == 1
    page = pages[0]
    assert "jQuery" in page and "brainsprite" in page  # libraries inline, not fetched
    assert not re.search(r"<script[^>]+src=", page), "the viewer loads a script from elsewhere"


def test_slice_browser_is_a_widget_with_its_first_frame(nb):
    bundles = [
        o["data"]
        for _, o in _outputs(nb)
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert len(bundles) == 1
    assert "image/png" in bundles[0]


def test_exercise_solutions_are_hidden_and_ran(nb):
    solutions = [c for c in nb.cells if "hide-cell" in c.metadata.get("tags", [])]
    assert len(solutions) >= 2
    for cell in solutions:
        assert cell.execution_count is not None
        assert any(o.output_type == "stream" for o in cell.outputs)
        assert not any(o.output_type == "error" for o in cell.outputs)
