"""The voxel grids every cohort lives on: FSL's MNI152 grid at 2 mm, and a coarse 4 mm one.

The 2 mm grid is the paper's: 91 x 109 x 91 voxels, FSL's ``MNI152_T1_2mm`` affine
(x runs from right to left, as FSL stores it). The 4 mm grid covers the same box
with 46 x 55 x 46 voxels. Nothing else in the library assumes a fixed shape: a
cohort carries its own affine.
"""

from __future__ import annotations

import functools

import numpy as np

__all__ = ["RESOLUTIONS", "grid_affine", "grid_shape", "grid_world_coords", "grid_brain_mask"]

RESOLUTIONS = (2, 4)

# FSL MNI152 2 mm: voxel (0, 0, 0) sits at (90, -126, -72) mm; the box spans
# x in [-90, 90], y in [-126, 90], z in [-72, 108] mm.
_ORIGIN_MM = np.array([90.0, -126.0, -72.0])
_EXTENT_MM = np.array([180.0, 216.0, 180.0])


def check_resolution(resolution: int) -> int:
    """Return ``resolution`` as an int, or raise naming the allowed values."""
    if resolution not in RESOLUTIONS:
        raise ValueError(
            f"'resolution' must be one of {list(RESOLUTIONS)}; {resolution!r} was provided."
        )
    return int(resolution)


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
    affine = grid_affine(resolution)
    return (ijk @ affine[:3, :3].T + affine[:3, 3]).astype(np.float32)


@functools.lru_cache(maxsize=4)
def grid_brain_mask(resolution: int = 2) -> np.ndarray:
    """nilearn's MNI152 brain mask on the grid: ``(X, Y, Z)`` bool (read-only)."""
    import nibabel as nib
    from nilearn.datasets import load_mni152_brain_mask
    from nilearn.image import resample_img

    shape = grid_shape(resolution)
    img = resample_img(
        load_mni152_brain_mask(resolution=2),
        target_affine=grid_affine(resolution),
        target_shape=shape,
        interpolation="nearest",  # the grids share the template's 2 mm lattice
        force_resample=True,
        copy_header=True,
    )
    mask = np.asarray(nib.Nifti1Image.get_fdata(img)) > 0.5
    mask.setflags(write=False)
    return mask
