"""Voxel grids and world coordinates: the library's grids, affines, orientation and slicing axes.

**The grids.** Every cohort lives on FSL's MNI152 box. At 2 mm it is the paper's grid:
91 x 109 x 91 voxels, FSL's ``MNI152_T1_2mm`` affine (x runs from right to left, as FSL
stores it). ``resolution=4`` covers the same box with 46 x 55 x 46 voxels for CPU work.
Nothing else in the library assumes a fixed shape: a cohort carries its own affine, and
``voxel_size(affine)`` reads the voxel size from it.

**Voxel order.**

Volumes are ``(X, Y, Z)`` arrays (or ``(..., X, Y, Z)`` stacks of them) in a
canonical-like voxel order: the first voxel axis runs left <-> right, the second
posterior -> anterior, the third inferior -> superior. Both RAS+ (nilearn's
MNI152 templates, ``nibabel.as_closest_canonical``) and LAS (FSL's MNI152 grid,
which the paper uses) follow it; they differ only in the sign of X, which the
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

import functools
from collections.abc import Sequence

import nibabel as nib
import numpy as np

from slicemri_lite._core.validation import check_choice

__all__ = [
    "AXES",
    "RESOLUTIONS",
    "check_resolution",
    "grid_affine",
    "grid_shape",
    "grid_world_coords",
    "grid_brain_mask",
    "voxel_size",
    "axis_index",
    "voxel_to_world",
    "world_to_voxel",
    "orientation_codes",
    "take_slice",
    "slice_counts",
    "slice_mass",
]

AXES: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}
RESOLUTIONS = (2, 4)

# FSL MNI152 2 mm: voxel (0, 0, 0) sits at (90, -126, -72) mm; the box spans
# x in [-90, 90], y in [-126, 90], z in [-72, 108] mm.
_ORIGIN_MM = np.array([90.0, -126.0, -72.0])
_EXTENT_MM = np.array([180.0, 216.0, 180.0])


def axis_index(axis: str) -> int:
    """Voxel axis (0, 1 or 2) of a slicing axis name ("sagittal", "coronal" or "axial")."""
    return AXES[check_choice("axis", axis, AXES)]


# ----------------------------------------------------------------------------- the grids


def check_resolution(resolution: int) -> int:
    """Return ``resolution`` as an int, or raise naming the allowed values."""
    return int(check_choice("resolution", resolution, RESOLUTIONS))


def grid_affine(resolution: int = 2) -> np.ndarray:
    """The ``(4, 4)`` voxel -> MNI mm affine of the grid at ``resolution`` mm (2 or 4)."""
    r = check_resolution(resolution)
    affine = np.diag([-float(r), float(r), float(r), 1.0])
    affine[:3, 3] = _ORIGIN_MM
    return affine


def grid_shape(resolution: int = 2) -> tuple[int, int, int]:
    """The grid's ``(X, Y, Z)``: ``(91, 109, 91)`` at 2 mm, ``(46, 55, 46)`` at 4 mm."""
    r = check_resolution(resolution)
    return tuple(int(v) for v in np.floor(_EXTENT_MM / r).astype(int) + 1)


def grid_world_coords(resolution: int = 2) -> np.ndarray:
    """MNI coordinates (mm) of every voxel centre: ``(X, Y, Z, 3)`` float32."""
    shape = grid_shape(resolution)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    return voxel_to_world(ijk, grid_affine(resolution)).astype(np.float32)


@functools.lru_cache(maxsize=4)
def grid_brain_mask(resolution: int = 2) -> np.ndarray:
    """nilearn's MNI152 brain mask on the grid: ``(X, Y, Z)`` bool (read-only)."""
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    img = resample_img(
        load_mni152_brain_mask(resolution=2),
        target_affine=grid_affine(resolution),
        target_shape=grid_shape(resolution),
        interpolation="nearest",  # the grids share the template's 2 mm lattice
        force_resample=True,
        copy_header=True,
    )
    mask = np.asarray(img.get_fdata()) > 0.5
    mask.setflags(write=False)
    return mask


def voxel_size(affine) -> np.ndarray:
    """Voxel edge lengths (mm) ``(3,)``: the norms of the affine's first three columns."""
    return np.linalg.norm(_check_affine(affine)[:3, :3], axis=0)


# ----------------------------------------------------------------------------- coordinates


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


def slice_mass(volume, axis: str, normalise: bool = False, mask=None) -> np.ndarray:
    """``|volume|`` summed over each slice along ``axis``: ``(X, Y, Z) -> (S,)``, or
    ``(n, X, Y, Z) -> (n, S)``.

    Args:
        volume: an effect map, an attribution, a brain mask...
        axis: "sagittal", "coronal" or "axial".
        normalise: divide each row by its total (shares that sum to 1).
        mask: optional ``(X, Y, Z)`` bool; only voxels inside count.
    """
    volume = np.abs(np.asarray(volume, dtype=np.float64))
    if volume.ndim not in (3, 4):
        raise ValueError(
            f"'volume' must be (X, Y, Z) or (n, X, Y, Z); {volume.shape} was provided."
        )
    if mask is not None:
        volume = volume * np.asarray(mask, dtype=bool)
    keep = volume.ndim - 3 + axis_index(axis)
    mass = volume.sum(axis=tuple(d for d in range(volume.ndim - 3, volume.ndim) if d != keep))
    if normalise:
        total = mass.sum(axis=-1, keepdims=True)
        if (total <= 0).any():
            raise ValueError("the volume is zero everywhere (inside the mask): no shares to take.")
        mass = mass / total
    return mass
