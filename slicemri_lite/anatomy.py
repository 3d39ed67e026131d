"""Template anatomy for the synthetic cohort, built once per process from nilearn's MNI152 maps.

Everything here lives in template (MNI) space and needs no download: nilearn ships the
MNI152 2009a T1, grey-matter, white-matter and brain-mask templates in its wheel.

* ``Template.source``: the images a subject is sampled from, ``(1, 4, Xs, Ys, Zs)``
  channels ``[t1, gm_loss, hippocampal_loss, brain_mask]`` (1 mm for the 2 mm grid,
  2 mm for the 4 mm grid, lightly smoothed against aliasing). ``gm_loss`` and
  ``hippocampal_loss`` are the intensity drops that losing all grey matter there
  would cause (grey-matter probability times the grey-matter minus CSF contrast).
* ``Template.fields``: two displacement fields (mm), ``(1, 6, X2, Y2, Z2)`` on the
  2 mm template grid: channels 0-2 move tissue towards the lateral ventricles (so the
  ventricles grow), channels 3-5 move it away from the hippocampi and amygdalae (so
  they shrink). Each is scaled to a largest displacement of 1 mm.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage as ndi

__all__ = ["Template", "load_template", "mm_to_sample_coords"]

# Medial temporal lobe, MNI mm: hippocampal body and the amygdala / entorhinal cortex,
# each (centre, semi-axes); the hippocampus tilts down towards its anterior end.
_MTL_REGIONS = (
    ((28.0, -22.0, -12.0), (6.0, 17.0, 7.0)),
    ((24.0, -4.0, -20.0), (7.0, 7.0, 7.0)),
)
_HIPPOCAMPUS_TILT_DEG = 25.0


@dataclass(frozen=True)
class Template:
    """Template-space tensors a subject is sampled from (see the module docstring)."""

    source: torch.Tensor  # (1, 4, Xs, Ys, Zs) float32
    source_affine: np.ndarray  # (4, 4) voxel -> mm
    fields: torch.Tensor  # (1, 6, X2, Y2, Z2) float32, mm
    fields_affine: np.ndarray  # (4, 4) voxel -> mm
    gm_contrast: float  # median T1 of grey matter minus that of CSF


def mm_to_sample_coords(points_mm: torch.Tensor, affine: np.ndarray, shape) -> torch.Tensor:
    """Map world points ``(..., 3)`` mm to ``grid_sample`` coordinates of a volume.

    The volume is a tensor ``(N, C, X, Y, Z)``; ``grid_sample`` wants ``(z, y, x)``
    voxel positions scaled to [-1, 1] (``align_corners=True``).
    """
    to_voxel = np.linalg.inv(affine)
    scale = 2.0 / (np.asarray(shape, dtype=float) - 1.0)
    matrix = torch.as_tensor((to_voxel[:3, :3] * scale[:, None])[::-1].copy(), dtype=torch.float32)
    offset = torch.as_tensor((to_voxel[:3, 3] * scale - 1.0)[::-1].copy(), dtype=torch.float32)
    return points_mm @ matrix.T + offset


def _axes_mm(shape, affine) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """World x, y, z of a diagonal-affine grid as broadcastable ``(X,1,1), (1,Y,1), (1,1,Z)``."""
    if np.count_nonzero(affine[:3, :3] - np.diag(np.diag(affine[:3, :3]))):
        raise ValueError("template affines are expected to be diagonal")
    return tuple(
        (np.arange(n, dtype=np.float32) * affine[a, a] + affine[a, 3]).reshape(
            [-1 if b == a else 1 for b in range(3)]
        )
        for a, n in enumerate(shape)
    )


def _load_maps(resolution: int):
    from nilearn import datasets

    loaders = (
        datasets.load_mni152_template,
        datasets.load_mni152_gm_template,
        datasets.load_mni152_wm_template,
        datasets.load_mni152_brain_mask,
    )
    images = [load(resolution=resolution) for load in loaders]
    return [img.get_fdata(dtype=np.float32) for img in images], images[0].affine


def _mtl_weight(shape, affine) -> np.ndarray:
    """Soft medial-temporal-lobe membership in [0, 1] on a grid: ``(X, Y, Z)`` float32."""
    x, y, z = _axes_mm(shape, affine)
    box = (
        np.abs(x[:, 0, 0]) < 50,
        (y[0, :, 0] > -60) & (y[0, :, 0] < 20),
        (z[0, 0] > -45) & (z[0, 0] < 10),
    )
    x, y, z = x[box[0]], y[:, box[1]], z[..., box[2]]
    tilt = np.deg2rad(_HIPPOCAMPUS_TILT_DEG)
    inner = np.zeros((len(x), y.shape[1], z.shape[2]), dtype=np.float32)
    for (cx, cy, cz), (ax, ay, az) in _MTL_REGIONS:
        for side in (-1.0, 1.0):
            dx, dy, dz = x - side * cx, y - cy, z - cz
            along = dy * np.cos(tilt) - dz * np.sin(tilt)
            up = dy * np.sin(tilt) + dz * np.cos(tilt)
            r2 = (dx / ax) ** 2 + (along / ay) ** 2 + (up / az) ** 2
            inner = np.maximum(inner, np.exp(-0.5 * r2**2))  # flat top, soft edge
    weight = np.zeros(shape, dtype=np.float32)
    weight[np.ix_(*box)] = inner
    return weight


def _ventricles(t1, gm, wm, mask, affine) -> np.ndarray:
    """Lateral (and third) ventricles: dark CSF near the brain's centre, ``(X, Y, Z)`` bool."""
    csf = np.clip(mask - gm - wm, 0, 1)
    x, y, z = _axes_mm(t1.shape, affine)
    box = (np.abs(x) < 28) & (y > -45) & (y < 30) & (z > -2) & (z < 32)
    candidate = (csf > 0.5) & (t1 < 0.4) & box
    labels, n = ndi.label(candidate)
    sizes = ndi.sum(candidate, labels, range(1, n + 1))
    return np.isin(labels, 1 + np.flatnonzero(sizes >= 100))


def _unit_gradient(blob: np.ndarray, spacing: float, sigma_mm: float) -> np.ndarray:
    """Gradient of a smoothed blob, scaled to a largest length of 1: ``(3, X, Y, Z)``."""
    smooth = ndi.gaussian_filter(blob.astype(np.float32), sigma_mm / spacing)
    grad = np.stack(np.gradient(smooth, spacing))
    return grad / np.linalg.norm(grad, axis=0).max()


@functools.lru_cache(maxsize=2)
def load_template(source_resolution: int) -> Template:
    """Build (once per process) the template for sampling at ``source_resolution`` mm (1 or 2)."""
    (t1, gm, wm, mask), affine2 = _load_maps(2)
    gm_contrast = float(np.median(t1[gm > 0.7]) - np.median(t1[(mask - gm - wm) > 0.7]))
    ventricle = _unit_gradient(_ventricles(t1, gm, wm, mask, affine2), 2.0, 6.0)
    mtl = -_unit_gradient(gm * _mtl_weight(t1.shape, affine2), 2.0, 4.0)
    fields = torch.from_numpy(np.concatenate([ventricle, mtl])[None].astype(np.float32))

    if source_resolution == 2:
        maps, affine = (t1, gm, wm, mask), affine2
    else:
        maps, affine = _load_maps(source_resolution)
    t1, gm, _, mask = maps
    frontal = 1.0 + 0.3 / (1.0 + np.exp(-_axes_mm(t1.shape, affine)[1] / 20.0))
    channels = [
        t1,
        gm * frontal * gm_contrast,  # ageing thins the cortex, the frontal lobe most
        gm * _mtl_weight(t1.shape, affine) * gm_contrast,
        mask,
    ]
    channels = [ndi.gaussian_filter(c.astype(np.float32), 0.7) for c in channels]
    source = torch.from_numpy(np.stack(channels)[None])
    return Template(source, affine, fields, affine2, gm_contrast)
