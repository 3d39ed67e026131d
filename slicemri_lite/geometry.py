"""Voxel grids and world coordinates: affines, orientation codes and slicing axes.

Volumes are ``(X, Y, Z)`` arrays (or ``(..., X, Y, Z)`` stacks of them) in a
canonical-like voxel order: the first voxel axis runs left <-> right, the second
posterior -> anterior, the third inferior -> superior. Both RAS+ (nilearn's
MNI152 templates, ``nibabel.as_closest_canonical``) and LAS (FSL's MNI152 grid,
which the paper uses, see `slicemri_lite.grid`) follow it; they differ only in the sign of X, which the
affine records. The three slicing axes are named after the anatomical planes
they cut:

============  ==========  =========================  ==========================
name          voxel axis  one slice is               slices on the 2 mm grid
============  ==========  =========================  ==========================
``sagittal``  0 (X)       a ``(Y, Z)`` image         91
``coronal``   1 (Y)       a ``(X, Z)`` image         109
``axial``     2 (Z)       a ``(X, Y)`` image         91
============  ==========  =========================  ==========================
"""

from __future__ import annotations

from collections.abc import Sequence

import nibabel as nib
import numpy as np

__all__ = [
    "AXES",
    "axis_index",
    "voxel_to_world",
    "world_to_voxel",
    "orientation_codes",
    "take_slice",
    "slice_counts",
]

AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}


def axis_index(axis: str) -> int:
    """Voxel axis (0, 1 or 2) of a slicing axis name ("sagittal", "coronal" or "axial")."""
    if axis not in AXES:
        raise ValueError(f"'axis' must be one of {list(AXES)}; {axis!r} was provided.")
    return AXES[axis]


def _check_affine(affine) -> np.ndarray:
    affine = np.asarray(affine, dtype=float)
    if affine.shape != (4, 4):
        raise ValueError(
            f"'affine' must be a (4, 4) matrix; an array of shape {affine.shape} was provided."
        )
    if not np.allclose(affine[3], [0, 0, 0, 1]):
        raise ValueError(
            f"'affine' must have [0, 0, 0, 1] as its last row; {affine[3].tolist()} was provided."
        )
    return affine


def _check_points(points, name: str) -> np.ndarray:
    points = np.asarray(points, dtype=float)
    if points.shape[-1:] != (3,):
        raise ValueError(
            f"'{name}' must have shape (..., 3); an array of shape {points.shape} was provided."
        )
    return points


def voxel_to_world(ijk, affine) -> np.ndarray:
    """World coordinates (mm) of voxel coordinates.

    Args:
        ijk: ``(..., 3)`` voxel coordinates (integers or fractional).
        affine: ``(4, 4)`` voxel -> world matrix.

    Returns:
        ``(..., 3)`` float array of world coordinates ``(x, y, z)`` in mm.
    """
    affine = _check_affine(affine)
    ijk = _check_points(ijk, "ijk")
    return ijk @ affine[:3, :3].T + affine[:3, 3]


def world_to_voxel(xyz, affine) -> np.ndarray:
    """Voxel coordinates (fractional) of world coordinates; the inverse of `voxel_to_world`.

    Args:
        xyz: ``(..., 3)`` world coordinates in mm.
        affine: ``(4, 4)`` voxel -> world matrix.

    Returns:
        ``(..., 3)`` float array; round it (``np.rint``) to index the nearest voxel.
    """
    inverse = np.linalg.inv(_check_affine(affine))
    xyz = _check_points(xyz, "xyz")
    return xyz @ inverse[:3, :3].T + inverse[:3, 3]


def orientation_codes(affine) -> tuple[str, str, str]:
    """The direction each voxel axis increases toward, e.g. ``("R", "A", "S")`` or ``("L", "A", "S")``."""
    return tuple(nib.aff2axcodes(_check_affine(affine)))


def take_slice(volume: np.ndarray, axis: str, index: int) -> np.ndarray:
    """One slice of a volume, in voxel order (no rotation for display).

    Args:
        volume: ``(..., X, Y, Z)`` array; leading dimensions (subjects, channels) are kept.
        axis: "sagittal" (fixes X), "coronal" (fixes Y) or "axial" (fixes Z).
        index: slice index along that axis, ``0 <= index < n`` (negative counts from the end).

    Returns:
        ``(..., Y, Z)``, ``(..., X, Z)`` or ``(..., X, Y)`` for the three axes.
    """
    volume = np.asarray(volume)
    if volume.ndim < 3:
        raise ValueError(
            f"'volume' must have at least 3 dimensions (..., X, Y, Z); shape {volume.shape} was provided."
        )
    dim = volume.ndim - 3 + axis_index(axis)
    n = volume.shape[dim]
    if not -n <= index < n:
        raise IndexError(
            f"'index' must be in [0, {n - 1}] for {axis} slices; {index} was provided."
        )
    return np.take(volume, index, axis=dim)


def slice_counts(shape: Sequence[int]) -> dict[str, int]:
    """Number of slices along each axis of an ``(X, Y, Z)`` grid, e.g. 91/109/91 on the 2 mm grid."""
    if len(shape) != 3:
        raise ValueError(f"'shape' must be (X, Y, Z); {tuple(shape)} was provided.")
    return {name: int(shape[dim]) for name, dim in AXES.items()}
