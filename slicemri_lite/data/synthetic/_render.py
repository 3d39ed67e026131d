"""Rendering a synthetic participant: template anatomy, deformed and imaged, on the grid.

A volume is the MNI152 template sampled at displaced points: the participant's
ventricles (``ageing.Markers``), their individual smooth deformation, and the scan's
rigid misregistration and head size. Cortical thinning, grey-white contrast and the
medial temporal lobe's loss of tissue to CSF act on the sampled intensities
(``anatomy`` explains why that is a boundary shift at these voxel sizes). Then a smooth
bias field, an intensity scale and noise, skull stripping, and division by the white
matter level (``intensity.white_matter_level``).
"""

from __future__ import annotations

import functools
import gc
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from slicemri_lite._core.env import trim_heap
from slicemri_lite._core.geometry import grid_brain_mask, grid_shape, grid_world_coords
from slicemri_lite.data._intensity import white_matter_level
from slicemri_lite.data.synthetic._ageing import Markers
from slicemri_lite.data.synthetic._anatomy import (
    Template,
    load_template,
    mm_to_sample_coords,
    release_grids,
    sample,
)

__all__ = [
    "SITE_SEED",
    "Scan",
    "Site",
    "draw_site",
    "WARP_SHAPE",
    "draw_scan",
    "identity_scan",
    "random_warp",
    "release_renderers",
    "renderer",
]

WARP_SHAPE = (7, 9, 7)  # control points of the random deformation over the template box
_MARGIN_MM = 30.0  # grid points farther than this from the template brain stay 0


@dataclass
class Scan:
    """How one scan of a brain came out: geometry and intensity nuisance."""

    to_anatomy: np.ndarray  # (4, 4) grid mm -> participant mm (rigid + head size, inverted)
    bias: np.ndarray  # (9,) coefficients of the low-order log bias field
    intensity: float
    noise_sd: float
    noise_seed: int
    # the scanner's own (``Site``); a reference-site scan keeps these defaults
    gamma: float = 1.0
    contrast_shift: float = 0.0
    fwhm_mm: float = 0.0


SITE_SEED = 20_230_301  # scanner k is drawn from default_rng([SITE_SEED, k]) in every cohort


@dataclass(frozen=True)
class Site:
    """One scanner's systematic differences from the reference scanner (site 0).

    ``bias``: ``(9,)`` coefficients added to every scan's log bias field; ``noise_factor``
    multiplies the noise sd; ``gamma``, ``contrast_shift`` and ``fwhm_mm`` as in ``Scan``.
    """

    index: int
    gamma: float = 1.0
    contrast_shift: float = 0.0
    bias: tuple[float, ...] = (0.0,) * 9
    noise_factor: float = 1.0
    fwhm_mm: float = 0.0


def draw_site(index: int, cfg) -> Site:
    """Scanner ``index``: site 0 is the reference; others are drawn from ``cfg``'s site sizes."""
    if int(index) < 0:
        raise ValueError(f"a site index must be 0 or more; {index!r} was provided.")
    if int(index) == 0:
        return Site(0)
    rng = np.random.default_rng([SITE_SEED, int(index)])
    return Site(
        index=int(index),
        gamma=float(np.exp(cfg.site_gamma_sd * rng.standard_normal())),
        contrast_shift=float(cfg.site_contrast_sd * rng.standard_normal()),
        bias=tuple(float(b) for b in cfg.site_bias_sd * rng.standard_normal(9)),
        noise_factor=float(np.exp(cfg.site_noise_log_sd * rng.standard_normal())),
        fwhm_mm=float(cfg.site_fwhm_max_mm * rng.uniform()),
    )


def random_warp(rng, deformation_mm: float, fine_deformation_mm: float) -> np.ndarray:
    """Control-point displacements ``(1, 3, 7, 9, 7)`` mm: a large-scale plus a finer random field."""
    coarse = torch.from_numpy(
        deformation_mm * rng.standard_normal((1, 3, 4, 5, 4)).astype(np.float32)
    )
    coarse = F.interpolate(coarse, size=WARP_SHAPE, mode="trilinear", align_corners=True)
    fine = fine_deformation_mm * rng.standard_normal((1, 3, *WARP_SHAPE)).astype(np.float32)
    return coarse.numpy() + fine


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    rx, ry, rz = angles_rad
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )


def draw_scan(rng, head_scale: float, cfg, site: Site | None = None) -> Scan:
    """Draw one scan's nuisance (``cfg``: a ``SyntheticConfig``) on ``site``'s scanner.

    The site adds nothing to ``rng``'s draws: a reference-site scan is the same scan.
    """
    forward = np.eye(4)  # participant mm -> grid mm: x = R (s y) + t
    forward[:3, :3] = _rotation(np.deg2rad(cfg.rotation_deg) * rng.standard_normal(3)) * head_scale
    forward[:3, 3] = cfg.translation_mm * rng.standard_normal(3)
    scan = Scan(
        to_anatomy=np.linalg.inv(forward),
        bias=cfg.bias_sd * rng.standard_normal(9),
        intensity=float(1.0 + cfg.intensity_sd * rng.standard_normal()),
        noise_sd=cfg.noise_sd,
        noise_seed=int(rng.integers(2**32)),
    )
    if site is not None and site.index != 0:
        scan.bias = scan.bias + np.asarray(site.bias)
        scan.noise_sd = scan.noise_sd * site.noise_factor
        scan.gamma, scan.contrast_shift = site.gamma, site.contrast_shift
        scan.fwhm_mm = site.fwhm_mm
    return scan


def _tissue_lost(log_volume: float) -> float:
    """Share of a structure's tissue lost to CSF at a log volume ratio (negative: grown).

    A larger than template structure brightens its voxels at most by a third of the
    grey-CSF contrast: partial volume cannot hold more than all tissue.
    """
    return float(np.clip(-np.expm1(log_volume), -1.0 / 3.0, 1.0))


def identity_scan() -> Scan:
    """A perfect scan: no misregistration, bias, scaling or noise."""
    return Scan(np.eye(4), np.zeros(9), 1.0, 0.0, 0)


class Renderer:
    """Turns a participant's markers and warp and a scan's nuisance into a volume on the grid.

    Only grid points within ``_MARGIN_MM`` of the template brain are computed (the rest
    is background), and the smooth displacement is computed on the 4 mm grid, then
    interpolated: the sampling of the template itself is the only full-resolution step.
    """

    def __init__(self, resolution: int):
        self.shape = grid_shape(resolution)
        self.resolution = resolution
        self.template: Template = load_template(1 if resolution == 2 else 2)
        outside_mm = ndi.distance_transform_edt(~grid_brain_mask(resolution)) * resolution
        region = outside_mm <= _MARGIN_MM
        self.region = torch.from_numpy(np.flatnonzero(region))  # (P,)
        # the region's outer shell (inside the grid): a brain reaching it would be clipped
        shell = region & ~ndi.binary_erosion(region, border_value=1)
        self.shell = torch.from_numpy(shell.ravel()[region.ravel()])  # (P,) bool
        points = torch.from_numpy(grid_world_coords(resolution).reshape(-1, 3))
        self.points = points[self.region]  # (P, 3) mm
        # the displacement is smooth: at 2 mm, compute it on the 4 mm grid and interpolate
        self.coarse = resolution < 4
        if self.coarse:
            self.coarse_points = torch.from_numpy(grid_world_coords(4).reshape(-1, 3))  # (Pc, 3)
        u = self.points / 100.0  # low-order polynomial basis for the log bias field, (P, 9)
        self.bias_basis = torch.cat([u, u**2 - 0.3, u[:, [0, 0, 1]] * u[:, [1, 2, 2]]], dim=1)

    def _shift(self, m: Markers, warp: np.ndarray, to_anatomy: torch.Tensor) -> torch.Tensor:
        """Displacement (mm) from participant to template space at every point: ``(P, 3)``."""
        tpl = self.template
        points = self.coarse_points if self.coarse else self.points
        y = points @ to_anatomy[:3, :3].T + to_anatomy[:3, 3]
        fields = tpl.ventricle_fields
        at_v = mm_to_sample_coords(y, tpl.ventricle_affine, fields.shape[2:])
        k, w = tpl.ventricle_weights(m.ventricle_log)
        shift = sample(fields[k : k + 1], at_v) * (1 - w)
        if w > 0:
            shift += sample(fields[k + 1 : k + 2], at_v) * w
        at_box = mm_to_sample_coords(y, tpl.box_affine, tpl.box_shape)
        shift += sample(torch.from_numpy(warp), at_box)  # control points span the template box
        if self.coarse:
            # the 4 mm grid's voxels are every other 2 mm voxel, so align_corners matches them
            fine = F.interpolate(
                shift.reshape(1, 3, *grid_shape(4)),
                size=self.shape,
                mode="trilinear",
                align_corners=True,
            )
            shift = fine.reshape(3, -1)[:, self.region]
        return shift.T

    def render(self, m: Markers, warp: np.ndarray, scan: Scan) -> np.ndarray:
        """One volume ``(X, Y, Z)`` float32 with white matter at about 1."""
        tpl = self.template
        to_anatomy = torch.as_tensor(scan.to_anatomy, dtype=torch.float32)
        z = self.points @ to_anatomy[:3, :3].T + to_anatomy[:3, 3]
        z = z + self._shift(m, warp, to_anatomy)  # (P, 3) template mm
        at_source = mm_to_sample_coords(z, tpl.source_affine, tpl.source.shape[2:])
        t1, pial, grey_to_white, hippocampus, amygdala_entorhinal, tp_pial, mask = sample(
            tpl.source, at_source
        )
        image = (
            t1
            - m.thinning_mm * pial
            - m.ad_thinning_mm * tp_pial
            + (m.contrast + scan.contrast_shift) * grey_to_white
            - _tissue_lost(m.hippocampus_log) * hippocampus
            - _tissue_lost(m.amygdala_entorhinal_log) * amygdala_entorhinal
        )
        bias = torch.exp(self.bias_basis @ torch.as_tensor(scan.bias, dtype=torch.float32))
        image = image * bias * scan.intensity
        if scan.noise_sd > 0:
            rng = np.random.default_rng(scan.noise_seed)
            noise = torch.from_numpy(rng.standard_normal(image.shape[0], dtype=np.float32))
            image = image + scan.noise_sd * scan.intensity * noise
        if mask[self.shell].max() > 0.01:
            raise RuntimeError(
                f"a synthetic brain reached the edge of the computed region; raise _MARGIN_MM ({_MARGIN_MM})."
            )
        image = image * mask.clamp(0, 1)  # skull-stripped: background is 0
        if scan.fwhm_mm > 0:  # the scanner's effective resolution
            image = self._blur(image, scan.fwhm_mm)
        image = image / white_matter_level(image[mask > 0.5])
        if scan.gamma != 1.0:  # the scanner's intensity curve (white matter stays ~1)
            image = image.clamp(min=0) ** scan.gamma
        volume = torch.zeros(int(np.prod(self.shape)))
        volume[self.region] = image
        return volume.view(self.shape).numpy()

    def _blur(self, image: torch.Tensor, fwhm_mm: float) -> torch.Tensor:
        """Gaussian blur of FWHM ``fwhm_mm`` over the grid, ``(P,)`` -> ``(P,)``."""
        volume = np.zeros(int(np.prod(self.shape)), dtype=np.float32)
        volume[self.region.numpy()] = image.numpy()
        sigma = fwhm_mm / (2 * np.sqrt(2 * np.log(2))) / self.resolution
        blurred = ndi.gaussian_filter(volume.reshape(self.shape), sigma, mode="constant")
        return torch.from_numpy(blurred.ravel()[self.region.numpy()])


@functools.lru_cache(maxsize=2)
def renderer(resolution: int) -> Renderer:
    """The renderer for a grid (built once per process)."""
    return Renderer(resolution)


def release_renderers() -> None:
    """Forget the renderers and the templates they sample (about 0.25 GB for the 2 mm grid).

    Building a cohort keeps them for its next participant; once the cohort is saved
    nothing needs them, and a chapter that goes on to train would carry them to its
    end (Binder gives a reader about 2 GB). The next ``renderer`` call builds them again.
    """
    renderer.cache_clear()
    load_template.cache_clear()
    release_grids()
    gc.collect()
    trim_heap()
