"""Template anatomy for the synthetic cohort, built once per process from nilearn's MNI152 maps.

Everything here lives in template (MNI) space and needs no download: nilearn ships the
MNI152 2009a T1, grey-matter, white-matter and brain-mask templates in its wheel.

* ``Template.source``: the images a subject is sampled from, ``(1, 7, Xs, Ys, Zs)``
  channels ``[t1, pial, grey_to_white, hippocampus, amygdala_entorhinal,
  temporoparietal_pial, brain_mask]`` (1 mm for the 2 mm grid, 2 mm for the 4 mm grid,
  lightly smoothed against aliasing):

  - ``pial``: the intensity drop per mm that the outer (pial) surface of the cortex
    moves inwards. To first order a boundary shifted by ``t`` mm changes a voxel by
    ``t`` times the tissue gradient (1/mm) times the tissue-CSF contrast, which is
    what partial volume shows at 1 to 4 mm voxels. Cortical thinning therefore also
    widens the sulci. Weighted 1 (occipital) to 1.3 (frontal).
  - ``grey_to_white``: grey-matter probability times the white minus grey contrast
    (adding it brightens grey matter towards white: lower grey-white contrast).
  - ``hippocampus`` and ``amygdala_entorhinal``: the intensity drop that losing all of
    the region's grey matter to CSF would cause. At these voxel sizes a structure that
    shrinks by a share ``s`` shows as its voxels holding ``s`` less tissue and more CSF
    (the widened temporal horn and hippocampal fissure of an atrophied medial temporal
    lobe), so ``s`` times this channel is its partial-volume image.
  - ``temporoparietal_pial``: ``pial`` without the frontal weighting, on the temporal
    and parietal cortex only, where Alzheimer's disease thins the cortex most.
* ``Template.ventricle_fields``: displacements (mm) that grow (positive amplitude) or
  shrink the lateral ventricles, ``(K, 3, Xv, Yv, Zv)`` on a 4 mm lattice, one per
  amplitude in ``ventricle_amplitudes``. Each is the exponential (scaling and
  squaring) of a smooth velocity field, so it never folds; ``ventricle_log_volume``
  holds the log ventricular volume ratio each one gives (measured on the template).

The medial temporal regions are ellipsoids placed by hand on the template; the book
measures the disease with a different mask (``analysis.mtl_grey_volume``: spheres at
published coordinates), so the measurement does not simply read back what was planted.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

__all__ = ["Template", "load_template", "mm_to_sample_coords", "release_grids", "sample"]

# Medial temporal lobe, MNI mm, (centre, semi-axes) mirrored left and right: the
# hippocampus, which tilts down towards its anterior end, and the amygdala with the
# entorhinal cortex below it.
_HIPPOCAMPUS = ((28.0, -22.0, -12.0), (6.0, 17.0, 7.0))
_AMYGDALA_ENTORHINAL = ((24.0, -6.0, -24.0), (8.0, 10.0, 9.0))
_HIPPOCAMPUS_TILT_DEG = 25.0


_VENTRICLE_AMPLITUDES = np.arange(-6.0, 17.0, 2.0)  # mm of velocity (largest per unit field)
_SQUARINGS = 6  # scaling and squaring steps: the velocity is divided by 2**6 first


@dataclass(frozen=True)
class Template:
    """Template-space tensors a subject is sampled from (see the module docstring)."""

    source: torch.Tensor  # (1, 7, Xs, Ys, Zs) float32
    source_affine: np.ndarray  # (4, 4) voxel -> mm
    ventricle_fields: torch.Tensor  # (K, 3, Xv, Yv, Zv) float32, mm
    ventricle_affine: np.ndarray  # (4, 4) voxel -> mm
    ventricle_amplitudes: np.ndarray  # (K,)
    ventricle_log_volume: np.ndarray  # (K,) increasing
    box_affine: np.ndarray  # (4, 4) voxel -> mm of the 2 mm template grid
    box_shape: tuple[int, int, int]  # its shape: the random warp's control points span it
    gm_contrast: float  # median T1 of grey matter minus that of CSF

    def ventricle_weights(self, log_volume: float) -> tuple[int, float]:
        """The two neighbouring ventricle fields for a log volume ratio: ``(k, w)``.

        The displacement is ``(1 - w) * fields[k] + w * fields[k + 1]``. Ratios beyond
        the table's range (volume x0.5 to about x3.7) are capped at its ends.
        """
        amplitude = np.interp(log_volume, self.ventricle_log_volume, self.ventricle_amplitudes)
        position = np.interp(
            amplitude, self.ventricle_amplitudes, np.arange(len(self.ventricle_amplitudes))
        )
        k = int(min(np.floor(position), len(self.ventricle_amplitudes) - 2))
        return k, float(position - k)


def sample(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``volume`` (1, C, X, Y, Z) at ``coords`` (P, 3): ``(C, P)``."""
    grid = coords.view(1, -1, 1, 1, 3)
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[
        0, :, :, 0, 0
    ]


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


def _ellipsoid_weight(shape, affine, region, tilt_deg: float = 0.0) -> np.ndarray:
    """Soft membership in [0, 1] of a mirrored ellipsoid (flat top, soft edge): ``(X, Y, Z)``."""
    (cx, cy, cz), (ax, ay, az) = region
    x, y, z = _axes_mm(shape, affine)
    tilt = np.deg2rad(tilt_deg)
    weight = np.zeros(shape, dtype=np.float32)
    for side in (-1.0, 1.0):
        dx, dy, dz = x - side * cx, y - cy, z - cz
        along = dy * np.cos(tilt) - dz * np.sin(tilt)
        up = dy * np.sin(tilt) + dz * np.cos(tilt)
        r2 = (dx / ax) ** 2 + (along / ay) ** 2 + (up / az) ** 2
        weight = np.maximum(weight, np.exp(-0.5 * r2**2))
    return weight


def _temporoparietal_weight(shape, affine) -> np.ndarray:
    """Soft membership in [0, 1] of the lateral temporal and the parietal lobes: ``(X, Y, Z)``.

    Boxes with soft (about 5 mm) edges in MNI mm: temporal |x| > 35, -75 < y < 5, z < 5;
    parietal -90 < y < -25, z > 15 (the precuneus included).
    """
    x, y, z = _axes_mm(shape, affine)

    def above(v, edge, width=5.0):
        return 1.0 / (1.0 + np.exp(-(v - edge) / width))

    temporal = above(np.abs(x), 35) * above(y, -75) * above(-y, -5) * above(-z, -5)
    parietal = above(-y, 25) * above(y, -90) * above(z, 15)
    return np.maximum(temporal, parietal).astype(np.float32)


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


@functools.lru_cache(maxsize=8)
def _voxel_grid(shape: tuple[int, int, int]) -> torch.Tensor:
    """Voxel indices ``(3, X, Y, Z)`` float32 of a grid."""
    axes = [torch.arange(n, dtype=torch.float32) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def release_grids() -> None:
    """Forget the cached voxel-index grids (``render.release_renderers`` calls this)."""
    _voxel_grid.cache_clear()


def _warp_voxels(volume: torch.Tensor, displacement: torch.Tensor, spacing: float, box=None):
    """Sample ``volume`` (1, C, X, Y, Z) at voxels plus ``displacement`` (1, 3, X, Y, Z) mm.

    ``box`` (three slices) restricts the output to a sub-block of the grid.
    """
    shape = tuple(volume.shape[2:])
    box = box or (slice(None),) * 3
    position = (
        _voxel_grid(shape)[(slice(None), *box)] + displacement[(0, slice(None), *box)] / spacing
    )
    scale = torch.tensor([2.0 / (n - 1) for n in shape]).view(3, 1, 1, 1)
    grid = (position * scale - 1.0).flip(0).permute(1, 2, 3, 0)[None]  # (1, x, y, z, 3) as z, y, x
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="border", align_corners=True)


def _exponential(velocity: torch.Tensor, spacing: float) -> torch.Tensor:
    """Displacement ``(1, 3, X, Y, Z)`` mm of the flow of a stationary ``velocity`` (scaling and squaring)."""
    phi = velocity / 2**_SQUARINGS
    for _ in range(_SQUARINGS):
        phi = phi + _warp_voxels(phi, phi, spacing)
    return phi


def _box(blob: np.ndarray, margin: int) -> tuple[slice, ...]:
    """The bounding box of ``blob > 0`` grown by ``margin`` voxels."""
    nonzero = np.argwhere(blob > 0)
    low, high = nonzero.min(0) - margin, nonzero.max(0) + margin + 1
    return tuple(
        slice(max(0, lo), min(n, hi)) for lo, hi, n in zip(low, high, blob.shape, strict=True)
    )


def _ventricle_table(ventricles: np.ndarray, field: np.ndarray):
    """Ventricle displacements on the 4 mm lattice ``(K, 3, ...)`` and their log volume ratios ``(K,)``.

    The flows are computed on the 4 mm lattice (the field is smooth), then upsampled to the
    2 mm template grid to measure the volume they give the ventricle mask.
    """
    blob = torch.from_numpy(ventricles.astype(np.float32))[None, None]
    box = _box(ventricles, 12)  # 24 mm around the ventricles: more than they ever grow
    unit = torch.from_numpy(field[:, ::2, ::2, ::2].copy())[None]  # (1, 3, Xv, Yv, Zv)
    step = float(_VENTRICLE_AMPLITUDES[1] - _VENTRICLE_AMPLITUDES[0])
    # flows of one stationary field compose by adding amplitudes: walk the table one step at a time
    forward, backward = _exponential(step * unit, 4.0), _exponential(-step * unit, 4.0)
    start = int(np.flatnonzero(_VENTRICLE_AMPLITUDES == 0)[0])
    table = {start: torch.zeros_like(unit)}
    for k in range(start + 1, len(_VENTRICLE_AMPLITUDES)):
        table[k] = table[k - 1] + _warp_voxels(forward, table[k - 1], 4.0)
    for k in range(start - 1, -1, -1):
        table[k] = table[k + 1] + _warp_voxels(backward, table[k + 1], 4.0)
    fields, log_volume = [], []
    for k in range(len(_VENTRICLE_AMPLITUDES)):
        fine = F.interpolate(table[k], size=ventricles.shape, mode="trilinear", align_corners=True)
        warped = float(_warp_voxels(blob, fine, 2.0, box).sum())
        log_volume.append(np.log(warped / float(blob.sum())))
        fields.append(table[k][0])
    return torch.stack(fields), np.maximum.accumulate(np.array(log_volume))


def _pial(gm: np.ndarray, wm: np.ndarray, spacing: float) -> np.ndarray:
    """Tissue-CSF boundary strength (1/mm) where there is cortex: ``(X, Y, Z)`` float32."""
    tissue = ndi.gaussian_filter(np.clip(gm + wm, 0, 1).astype(np.float32), 0.5)
    strength = np.linalg.norm(np.stack(np.gradient(tissue, spacing)), axis=0)
    cortex = np.clip(3.0 * ndi.gaussian_filter(gm.astype(np.float32), 2.0 / spacing), 0, 1)
    return strength * cortex


@functools.lru_cache(maxsize=2)
def load_template(source_resolution: int) -> Template:
    """Build (once per process) the template for sampling at ``source_resolution`` mm (1 or 2)."""
    (t1, gm, wm, mask), affine2 = _load_maps(2)
    box_shape = t1.shape
    csf = (mask - gm - wm) > 0.7
    gm_level, wm_level = float(np.median(t1[gm > 0.7])), float(np.median(t1[wm > 0.7]))
    gm_contrast = gm_level - float(np.median(t1[csf]))
    ventricles = _ventricles(t1, gm, wm, mask, affine2)
    vent_fields, vent_log = _ventricle_table(ventricles, _unit_gradient(ventricles, 2.0, 6.0))
    affine_v = affine2.copy()
    affine_v[:3, :3] *= 2.0

    if source_resolution == 2:
        maps, affine = (t1, gm, wm, mask), affine2
    else:
        maps, affine = _load_maps(source_resolution)
    t1, gm, wm, mask = maps
    spacing = float(affine[0, 0])
    pial = _pial(gm, wm, spacing) * gm_contrast
    frontal = 1.0 + 0.3 / (1.0 + np.exp(-_axes_mm(t1.shape, affine)[1] / 20.0))
    channels = [
        t1,
        pial * frontal,  # the frontal lobe thins most with age
        gm * (wm_level - gm_level),
        gm * _ellipsoid_weight(t1.shape, affine, _HIPPOCAMPUS, _HIPPOCAMPUS_TILT_DEG) * gm_contrast,
        gm * _ellipsoid_weight(t1.shape, affine, _AMYGDALA_ENTORHINAL) * gm_contrast,
        pial * _temporoparietal_weight(t1.shape, affine),
        mask,
    ]
    channels = [ndi.gaussian_filter(c.astype(np.float32), 0.7) for c in channels]
    return Template(
        source=torch.from_numpy(np.stack(channels)[None]),
        source_affine=affine,
        ventricle_fields=vent_fields,
        ventricle_affine=affine_v,
        ventricle_amplitudes=_VENTRICLE_AMPLITUDES,
        ventricle_log_volume=vent_log,
        box_affine=affine2,
        box_shape=tuple(int(n) for n in box_shape),
        gm_contrast=gm_contrast,
    )
