"""Slice extraction, display orientation and the slice browser, checked headlessly."""

from __future__ import annotations

import base64

import nibabel as nib
import numpy as np
import pytest

from slicemri_lite._core import geometry as geometry
from slicemri_lite.analysis import _viz as viz

SHAPE = (5, 6, 7)  # (X, Y, Z), all different so a wrong axis cannot pass
VOLUME = np.arange(np.prod(SHAPE)).reshape(SHAPE)
RAS = np.diag([2.0, 2.0, 2.0, 1.0])
LAS = geometry.grid_affine(2)


def test_orthogonal_slices_returns_each_axis_rotated_for_display():
    i, j, k = 1, 4, 2
    panels = viz.orthogonal_slices(VOLUME, (i, j, k))
    X, Y, Z = SHAPE
    assert panels["sagittal"].shape == (Z, Y)
    assert panels["coronal"].shape == (Z, X)
    assert panels["axial"].shape == (Y, X)
    for r in range(Z):
        for c in range(Y):  # up is +Z, right is +Y
            assert panels["sagittal"][r, c] == VOLUME[i, c, Z - 1 - r]
        for c in range(X):  # up is +Z, right is +X
            assert panels["coronal"][r, c] == VOLUME[c, j, Z - 1 - r]
    for r in range(Y):
        for c in range(X):  # up is +Y, right is +X
            assert panels["axial"][r, c] == VOLUME[c, Y - 1 - r, k]


def test_orthogonal_slices_defaults_to_the_centre_and_honours_axes():
    panels = viz.orthogonal_slices(VOLUME, axes=("coronal",))
    assert list(panels) == ["coronal"]
    np.testing.assert_array_equal(panels["coronal"], np.rot90(VOLUME[:, 3, :]))


def test_orthogonal_slices_accepts_a_nibabel_image():
    image = nib.Nifti1Image(VOLUME.astype(np.float32), RAS)
    panels = viz.orthogonal_slices(image, (0, 0, 6))
    np.testing.assert_array_equal(panels["axial"], np.rot90(VOLUME[:, :, 6]))


def test_panel_labels_follow_the_affine():
    assert viz.panel_labels(RAS, "coronal") == {
        "left": "L",
        "right": "R",
        "bottom": "I",
        "top": "S",
    }
    # FSL's grid stores X from right to left: the same panel shows the right hemisphere on the left.
    assert viz.panel_labels(LAS, "coronal") == {
        "left": "R",
        "right": "L",
        "bottom": "I",
        "top": "S",
    }
    assert viz.panel_labels(LAS, "sagittal") == {
        "left": "P",
        "right": "A",
        "bottom": "I",
        "top": "S",
    }
    assert viz.panel_labels(RAS, "axial") == {"left": "L", "right": "R", "bottom": "P", "top": "A"}


def test_slice_browser_sliders_cover_each_axis_and_start_at_the_centre():
    browser = viz.slice_browser(VOLUME.astype(float), affine=RAS)
    assert list(browser.sliders) == ["sagittal", "coronal", "axial"]
    for axis, slider in browser.sliders.items():
        n = SHAPE[geometry.axis_index(axis)]
        assert (slider.min, slider.max, slider.value) == (0, n - 1, n // 2)
    assert browser.index == (2, 3, 3)
    assert bytes(browser.image.value).startswith(b"\x89PNG")


def test_moving_a_slider_changes_only_its_axis_and_redraws():
    browser = viz.slice_browser(VOLUME.astype(float), index=(0, 1, 2))
    first = browser.image.value
    browser.sliders["axial"].value = 6
    assert browser.index == (0, 1, 6)
    np.testing.assert_array_equal(browser.frame()["axial"], np.rot90(VOLUME[:, :, 6]))
    np.testing.assert_array_equal(browser.frame()["sagittal"], np.rot90(VOLUME[0]))
    assert browser.image.value != first


def test_slice_browser_subset_of_axes():
    browser = viz.slice_browser(VOLUME.astype(float), axes=("coronal",))
    assert list(browser.sliders) == ["coronal"]
    assert list(browser.frame()) == ["coronal"]


def test_slice_browser_display_data_carries_the_first_frame_as_png():
    browser = viz.slice_browser(VOLUME.astype(float))
    bundle = browser._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == bytes(browser.image.value)


def test_plot_orthogonal_slices_draws_one_panel_per_axis():
    fig = viz.plot_orthogonal_slices(VOLUME, affine=RAS, axes=("sagittal", "axial"))
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == ["sagittal 2 / 5", "axial 3 / 7"]
    np.testing.assert_array_equal(axes[1].images[0].get_array(), np.rot90(VOLUME[:, :, 3]))


def test_plot_slices_grid_spans_the_axis_first_to_last():
    fig = viz.plot_slices_grid(VOLUME, "coronal", n_slices=4, ncols=3)
    titles = [ax.get_title() for ax in fig.get_axes() if ax.images]
    assert titles == ["0", "2", "3", "5"]
    shown = fig.get_axes()[3].images[0].get_array()
    np.testing.assert_array_equal(shown, np.rot90(VOLUME[:, 5, :]))


def test_bad_arguments_name_what_was_allowed():
    with pytest.raises(
        ValueError, match=r"'axis' must be one of \['sagittal', 'coronal', 'axial'\]; 'side'"
    ):
        viz.orthogonal_slices(VOLUME, axes=("side",))
    with pytest.raises(
        ValueError, match=r"'index' must be a voxel \(i, j, k\) inside the grid \(5, 6, 7\)"
    ):
        viz.slice_browser(VOLUME, index=(5, 0, 0))
    with pytest.raises(ValueError, match=r"'volume' must be an \(X, Y, Z\) array"):
        viz.plot_orthogonal_slices(np.zeros((2, 3)))


def test_crosshair_marks_the_other_slices_in_display_coordinates():
    fig = viz.plot_orthogonal_slices(VOLUME, index=(1, 4, 2), axes=("axial",))
    vertical, horizontal = fig.get_axes()[0].lines
    assert vertical.get_xdata()[0] == 1  # column = i
    assert horizontal.get_ydata()[0] == SHAPE[1] - 1 - 4  # row counted from the top = flipped j


def test_a_4d_image_is_refused():
    image = nib.Nifti1Image(np.zeros((2, 2, 2, 3), dtype=np.float32), RAS)
    with pytest.raises(ValueError, match=r"3D image; shape \(2, 2, 2, 3\)"):
        viz.slice_browser(image)
