"""Voxel <-> world geometry, orientation codes and slicing axes against known answers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from slicemri_lite._core import geometry as geometry

PAPER_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


def test_paper_grid_is_las():
    np.testing.assert_array_equal(geometry.grid_affine(2), PAPER_AFFINE)
    assert geometry.orientation_codes(PAPER_AFFINE) == ("L", "A", "S")
    assert geometry.orientation_codes(np.diag([2.0, 2, 2, 1])) == ("R", "A", "S")


def test_voxel_to_world_known_points_on_the_paper_grid():
    # Voxel (0, 0, 0) is the right-posterior-inferior corner; (45, 63, 36) is the origin.
    np.testing.assert_allclose(geometry.voxel_to_world([0, 0, 0], PAPER_AFFINE), [90, -126, -72])
    np.testing.assert_allclose(geometry.voxel_to_world([45, 63, 36], PAPER_AFFINE), [0, 0, 0])
    np.testing.assert_allclose(geometry.world_to_voxel([-40, 0, 0], PAPER_AFFINE), [65, 63, 36])


@pytest.mark.parametrize(
    "affine",
    [
        PAPER_AFFINE,
        np.diag([1.0, 1.0, 1.0, 1.0]),
        # oblique, anisotropic: a rotation about z times voxel sizes, plus a shift
        np.array([[0.8, -0.6, 0, 5], [0.6, 0.8, 0, -3], [0, 0, 1, 7], [0, 0, 0, 1]])
        @ np.diag([1.5, 1.0, 3.0, 1.0]),
    ],
)
def test_voxel_world_round_trip(affine):
    rng = np.random.default_rng(0)
    ijk = rng.uniform(0, 100, size=(50, 3))
    back = geometry.world_to_voxel(geometry.voxel_to_world(ijk, affine), affine)
    np.testing.assert_allclose(back, ijk, atol=1e-9)
    # and the other way round, batched with extra leading dimensions
    xyz = rng.uniform(-90, 90, size=(4, 5, 3))
    np.testing.assert_allclose(
        geometry.voxel_to_world(geometry.world_to_voxel(xyz, affine), affine), xyz, atol=1e-9
    )


def test_voxel_to_world_agrees_with_nibabel():
    ijk = np.array([[3, 4, 5], [90, 0, 17]])
    expected = nib.affines.apply_affine(PAPER_AFFINE, ijk)
    np.testing.assert_allclose(geometry.voxel_to_world(ijk, PAPER_AFFINE), expected)


def test_flipping_data_without_the_affine_mirrors_world_positions():
    shape, affine = geometry.grid_shape(2), geometry.grid_affine(2)
    volume = np.zeros(shape)
    volume[65, 63, 36] = 1.0  # x = -40 mm: left hemisphere
    flipped = volume[::-1]  # a pipeline that flips the data but keeps the affine
    where = geometry.voxel_to_world(np.argwhere(flipped)[0], affine)
    np.testing.assert_allclose(where, [40, 0, 0])
    # nibabel's reorientation flips data and affine together: the point stays put
    canonical = nib.as_closest_canonical(nib.Nifti1Image(volume, affine))
    assert geometry.orientation_codes(canonical.affine) == ("R", "A", "S")
    voxel = np.argwhere(canonical.get_fdata())[0]
    np.testing.assert_allclose(geometry.voxel_to_world(voxel, canonical.affine), [-40, 0, 0])


def test_take_slice_fixes_the_named_axis():
    volume = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (N, X, Y, Z)
    np.testing.assert_array_equal(geometry.take_slice(volume, "sagittal", 1), volume[:, 1, :, :])
    np.testing.assert_array_equal(geometry.take_slice(volume, "coronal", 2), volume[:, :, 2, :])
    np.testing.assert_array_equal(geometry.take_slice(volume, "axial", 4), volume[:, :, :, 4])
    assert geometry.take_slice(volume[0], "coronal", 0).shape == (3, 5)


def test_slice_counts_on_the_paper_grid():
    counts = geometry.slice_counts(geometry.grid_shape(2))
    assert counts == {"sagittal": 91, "coronal": 109, "axial": 91}


def test_bad_arguments_name_what_was_allowed():
    with pytest.raises(
        ValueError, match=r"'axis' must be one of \['sagittal', 'coronal', 'axial'\]; 'foo'"
    ):
        geometry.take_slice(np.zeros((2, 2, 2)), "foo", 0)
    with pytest.raises(IndexError, match=r"\[0, 1\] for axial slices; 2 was provided"):
        geometry.take_slice(np.zeros((2, 2, 2)), "axial", 2)
    with pytest.raises(ValueError, match=r"'affine' must be a \(4, 4\) matrix"):
        geometry.voxel_to_world([0, 0, 0], np.eye(3))
    with pytest.raises(ValueError, match=r"'ijk' must have shape \(\.\.\., 3\)"):
        geometry.voxel_to_world([0, 0], PAPER_AFFINE)
