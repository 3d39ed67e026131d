"""The synthetic brain cohort: MNI152 anatomy that ages and gets Alzheimer's disease.

Every participant ``i`` is drawn from ``numpy.random.default_rng([seed, i, 0])`` and each
of their scans from ``default_rng([seed, i, scan])``, so the first ``n`` participants
are the same whatever ``n_subjects`` is, and the same arguments give the same bytes.

Labels (see ``SyntheticConfig`` for every number):

* ``age``: uniform between 20 and 90 years; ``sex``: "F" or "M" with equal odds.
* ``diagnosis``: "AD" for ``ad_prevalence`` (35 %) of participants aged 60 or more,
  "CN" for everyone else.

Anatomy (a smooth deformation of the template, plus tissue loss):

* Ageing enlarges the lateral ventricles and thins grey matter (frontal lobe most).
  Both follow the participant's *brain age* = age + N(0, 4 years), so age can never
  be read off perfectly: the ventricles change slowly before 60 and fast after,
  grey matter declines steadily with a smaller late acceleration.
* AD (severity uniform in [0.4, 1.6], mean 1) shrinks the hippocampi and amygdalae,
  removes grey matter there, and enlarges the ventricles further.
* Individual anatomy: head size, ventricle and hippocampal size vary between people,
  and a smooth random deformation (about 2.5 mm, on scales of 30 to 60 mm) moves
  everything a little.

Nuisance: head size (women about 4 % smaller; one per participant) and, drawn anew
for every scan, a small rigid misregistration (1 degree, 1 mm), intensity scale and a smooth
multiplicative bias field, Gaussian noise inside the brain.

Intensities: skull-stripped T1, background 0, each volume divided by the 90th
percentile of its brain voxels, so white matter sits at about 1 (grey matter ~0.75,
CSF ~0.4); see ``white_matter_level``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import ndimage as ndi

from slicemri_lite.anatomy import Template, load_template, mm_to_sample_coords
from slicemri_lite.cohort import Cohort
from slicemri_lite.geometry import (
    check_resolution,
    grid_affine,
    grid_brain_mask,
    grid_shape,
    grid_world_coords,
)
from slicemri_lite.splits import split_subjects

__all__ = [
    "SyntheticConfig",
    "synthetic_cohort",
    "reference_brains",
    "ageing",
    "white_matter_level",
    "GENERATOR_VERSION",
]

GENERATOR_VERSION = 2
_WARP_SHAPE = (7, 9, 7)  # control points of the random deformation over the template box
_WORKERS = max(1, min(4, os.cpu_count() or 1))  # volumes rendered at once
_MARGIN_MM = 30.0  # grid points farther than this from the template brain stay 0


@dataclass(frozen=True)
class SyntheticConfig:
    """Every number behind the synthetic cohort (years, mm, or fractions)."""

    age_min: float = 20.0
    age_max: float = 90.0
    ad_min_age: float = 60.0  # nobody younger has AD
    ad_prevalence: float = 0.35  # share of AD among participants aged ad_min_age or more
    brain_age_sd: float = 4.0  # brain age minus age: the part of ageing no scan explains
    ventricle_mm_age: float = 3.0  # ventricle wall displacement, age 90 vs 20
    ventricle_mm_ad: float = 1.5  # extra displacement at AD severity 1
    ventricle_sd_mm: float = 0.8  # individual ventricle size
    mtl_mm_age: float = 0.6  # hippocampal shrinkage, age 90 vs 20
    mtl_mm_ad: float = 1.5  # at AD severity 1
    mtl_sd_mm: float = 0.4  # individual hippocampal size
    gm_loss_age: float = 0.2  # fraction of grey-matter contrast lost, age 90 vs 20
    mtl_loss_ad: float = 0.3  # fraction of medial temporal grey matter lost at AD severity 1
    deformation_mm: float = (
        2.0  # large-scale random deformation (sd per control point, ~60 mm apart)
    )
    fine_deformation_mm: float = 1.5  # finer random deformation (control points ~30 mm apart)
    female_head_scale: float = 0.96  # mean head size of women relative to men
    head_scale_sd: float = 0.03
    rotation_deg: float = 1.0  # residual misregistration sd per axis
    translation_mm: float = 1.0
    intensity_sd: float = 0.1  # global intensity scale sd
    bias_sd: float = 0.05  # bias field: sd of each low-order coefficient
    noise_sd: float = 0.03  # Gaussian noise, in template T1 units (white matter ~0.87)


def ageing(age: float | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ageing load for ventricles and for grey matter: 0 at 20 years, 1 at 90.

    Ventricles change slowly until 60 and fast after; grey matter declines steadily,
    with a smaller late acceleration.
    """
    steady = (np.asarray(age, dtype=float) - 20.0) / 70.0
    late = (np.maximum(np.asarray(age, dtype=float) - 60.0, 0.0) / 30.0) ** 2
    return 0.3 * steady + 0.7 * late, 0.7 * steady + 0.3 * late


@dataclass
class _Anatomy:
    """What one participant's brain looks like, in template space."""

    ventricle_mm: float
    mtl_mm: float
    gm_loss: float  # fraction of grey-matter contrast lost
    mtl_loss: float
    warp: np.ndarray  # (1, 3, 7, 9, 7) control-point displacements, mm
    head_scale: float = 1.0


@dataclass
class _Scan:
    """How one scan of that brain came out: geometry and intensity nuisance."""

    to_anatomy: np.ndarray  # (4, 4) grid mm -> participant mm (rigid + head size, inverted)
    bias: np.ndarray  # (9,) coefficients of the low-order log bias field
    intensity: float
    noise_sd: float
    noise_seed: int


def _draw_participant(rng, cfg: SyntheticConfig):
    age = round(float(rng.uniform(cfg.age_min, cfg.age_max)), 1)
    sex = "F" if rng.uniform() < 0.5 else "M"
    ad = age >= cfg.ad_min_age and rng.uniform() < cfg.ad_prevalence
    severity = float(rng.uniform(0.4, 1.6)) if ad else 0.0
    brain_age = age + cfg.brain_age_sd * float(rng.standard_normal())
    vent_load, gm_load = ageing(brain_age)
    anatomy = _Anatomy(
        ventricle_mm=cfg.ventricle_mm_age * vent_load
        + cfg.ventricle_mm_ad * severity
        + cfg.ventricle_sd_mm * float(rng.standard_normal()),
        mtl_mm=cfg.mtl_mm_age * vent_load
        + cfg.mtl_mm_ad * severity
        + cfg.mtl_sd_mm * float(rng.standard_normal()),
        gm_loss=cfg.gm_loss_age * gm_load,
        mtl_loss=cfg.mtl_loss_ad * severity,
        warp=_random_warp(rng, cfg),
        head_scale=(cfg.female_head_scale if sex == "F" else 1.0)
        + cfg.head_scale_sd * float(rng.standard_normal()),
    )
    row = {
        "age": age,
        "sex": sex,
        "diagnosis": "AD" if ad else "CN",
        "brain_age": round(brain_age, 2),
        "ad_severity": round(severity, 3),
    }
    return row, anatomy


def _random_warp(rng, cfg: SyntheticConfig) -> np.ndarray:
    """Control-point displacements ``(1, 3, 7, 9, 7)`` mm: a large-scale plus a finer random field."""
    coarse = torch.from_numpy(
        cfg.deformation_mm * rng.standard_normal((1, 3, 4, 5, 4)).astype(np.float32)
    )
    coarse = F.interpolate(coarse, size=_WARP_SHAPE, mode="trilinear", align_corners=True)
    fine = cfg.fine_deformation_mm * rng.standard_normal((1, 3, *_WARP_SHAPE)).astype(np.float32)
    return coarse.numpy() + fine


def _rotation(angles_rad: np.ndarray) -> np.ndarray:
    rx, ry, rz = angles_rad
    cx, sx, cy, sy, cz, sz = np.cos(rx), np.sin(rx), np.cos(ry), np.sin(ry), np.cos(rz), np.sin(rz)
    return (
        np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
        @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
        @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    )


def _draw_scan(rng, head_scale: float, cfg: SyntheticConfig) -> _Scan:
    forward = np.eye(4)  # participant mm -> grid mm: x = R (s y) + t
    forward[:3, :3] = _rotation(np.deg2rad(cfg.rotation_deg) * rng.standard_normal(3)) * head_scale
    forward[:3, 3] = cfg.translation_mm * rng.standard_normal(3)
    return _Scan(
        to_anatomy=np.linalg.inv(forward),
        bias=cfg.bias_sd * rng.standard_normal(9),
        intensity=float(1.0 + cfg.intensity_sd * rng.standard_normal()),
        noise_sd=cfg.noise_sd,
        noise_seed=int(rng.integers(2**32)),
    )


def _identity_scan() -> _Scan:
    return _Scan(np.eye(4), np.zeros(9), 1.0, 0.0, 0)


def white_matter_level(brain: torch.Tensor) -> torch.Tensor:
    """The intensity a T1 volume is divided by: the 90th percentile of its brain voxels ``(P,)``.

    White matter is the brightest tissue of a T1 image and ageing hardly changes its
    intensity, so this level (unlike the mean or median) does not move when grey
    matter thins or ventricles grow.
    """
    k = max(1, int(round(0.9 * brain.numel())))
    return brain.kthvalue(k).values


def _sample(volume: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of ``volume`` (1, C, X, Y, Z) at ``coords`` (P, 3): ``(C, P)``."""
    grid = coords.view(1, -1, 1, 1, 3)
    return F.grid_sample(volume, grid, mode="bilinear", padding_mode="zeros", align_corners=True)[
        0, :, :, 0, 0
    ]


class _Renderer:
    """Turns a participant's anatomy and a scan's nuisance into a volume on the grid.

    Only grid points within ``_MARGIN_MM`` of the template brain are computed (the rest
    is background), and the smooth displacement is computed on the 4 mm grid, then
    interpolated: the sampling of the template itself is the only full-resolution step.
    """

    def __init__(self, resolution: int):
        self.shape = grid_shape(resolution)
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

    def _shift(self, anatomy: _Anatomy, to_anatomy: torch.Tensor) -> torch.Tensor:
        """Displacement (mm) from participant to template space at every point: ``(P, 3)``."""
        tpl = self.template
        points = self.coarse_points if self.coarse else self.points
        y = points @ to_anatomy[:3, :3].T + to_anatomy[:3, 3]
        at_fields = mm_to_sample_coords(y, tpl.fields_affine, tpl.fields.shape[2:])
        basis = _sample(tpl.fields, at_fields)  # (6, Pc)
        shift = anatomy.ventricle_mm * basis[:3] + anatomy.mtl_mm * basis[3:]
        shift += _sample(torch.from_numpy(anatomy.warp), at_fields)
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

    def render(self, anatomy: _Anatomy, scan: _Scan) -> np.ndarray:
        """One volume ``(X, Y, Z)`` float32 with white matter at about 1."""
        tpl = self.template
        m = torch.as_tensor(scan.to_anatomy, dtype=torch.float32)
        z = self.points @ m[:3, :3].T + m[:3, 3] + self._shift(anatomy, m)  # (P, 3) template mm
        at_source = mm_to_sample_coords(z, tpl.source_affine, tpl.source.shape[2:])
        t1, gm, mtl, mask = _sample(tpl.source, at_source)
        image = t1 - anatomy.gm_loss * gm - anatomy.mtl_loss * mtl
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
        image = image / white_matter_level(image[mask > 0.5])
        volume = torch.zeros(int(np.prod(self.shape)))
        volume[self.region] = image
        return volume.view(self.shape).numpy()


def _reference_brains(renderer: _Renderer, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    def brain(age: float, severity: float) -> np.ndarray:
        vent, gm = ageing(age)
        anatomy = _Anatomy(
            ventricle_mm=cfg.ventricle_mm_age * vent + cfg.ventricle_mm_ad * severity,
            mtl_mm=cfg.mtl_mm_age * vent + cfg.mtl_mm_ad * severity,
            gm_loss=cfg.gm_loss_age * gm,
            mtl_loss=cfg.mtl_loss_ad * severity,
            warp=np.zeros((1, 3, *_WARP_SHAPE), dtype=np.float32),
        )
        return renderer.render(anatomy, _identity_scan())

    return {
        "CN 20": brain(20.0, 0.0),
        "CN 90": brain(90.0, 0.0),
        "CN 75": brain(75.0, 0.0),
        "AD 75": brain(75.0, 1.0),
    }


def reference_brains(
    resolution: int = 2, config: SyntheticConfig | None = None
) -> dict[str, np.ndarray]:
    """Noise-free brains of a typical participant, ``(X, Y, Z)`` float32 each.

    Keys: ``"CN 20"`` and ``"CN 90"`` (controls aged 20 and 90), ``"CN 75"`` and ``"AD 75"``
    (aged 75, AD at severity 1): no individual anatomy, no nuisance, no noise. The
    cohort's ``effects`` are their differences: ``age`` = CN 90 - CN 20, ``ad`` = AD 75 - CN 75.
    """
    with _single_thread():
        return _reference_brains(
            _Renderer(check_resolution(resolution)), config or SyntheticConfig()
        )


def _effects(renderer: _Renderer, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    brains = _reference_brains(renderer, cfg)
    return {"age": brains["CN 90"] - brains["CN 20"], "ad": brains["AD 75"] - brains["CN 75"]}


def synthetic_cohort(
    n_subjects: int,
    seed: int = 0,
    resolution: int = 2,
    *,
    scans_per_subject: int = 1,
    dtype: str = "float16",
    config: SyntheticConfig | None = None,
    progress: bool = False,
) -> Cohort:
    """Generate a synthetic cohort on the grid at ``resolution`` mm (2: 91x109x91, 4: 46x55x46).

    Args:
        n_subjects: number of participants.
        seed: same seed and arguments, same bytes.
        resolution: 2 (the paper's grid) or 4 (the coarse CPU grid).
        scans_per_subject: repeat scans per participant (same brain, new nuisance).
        dtype: "float16" or "float32" for ``volumes``.
        config: every number behind the cohort (``SyntheticConfig()`` by default).
        progress: show a tqdm progress bar.

    Returns:
        A cohort with ``volumes`` ``(n_subjects * scans_per_subject, X, Y, Z)``, a table with
        ``participant_id, session, age, sex, diagnosis, brain_age, ad_severity, split`` (split by
        ``split_subjects`` under ``seed``) and ``effects["age"]``, ``effects["ad"]`` ``(X, Y, Z)``.
    """
    resolution = check_resolution(resolution)
    if int(n_subjects) < 1 or int(scans_per_subject) < 1:
        raise ValueError(
            f"'n_subjects' and 'scans_per_subject' must be at least 1; {n_subjects!r} and {scans_per_subject!r} were provided."
        )
    if dtype not in ("float16", "float32"):
        raise ValueError(f"'dtype' must be one of ['float16', 'float32']; {dtype!r} was provided.")
    cfg = config or SyntheticConfig()
    with _single_thread():
        return _generate(n_subjects, seed, resolution, scans_per_subject, dtype, cfg, progress)


@contextlib.contextmanager
def _single_thread():
    """Run torch on one intra-op thread, then restore the setting.

    Each subject is a few small tensor operations; with several threads OpenMP's
    synchronisation costs more than it saves, and several times more when other
    processes share the cores (measured: 4 to 13 times slower on 2 busy cores).
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _generate(n_subjects, seed, resolution, scans_per_subject, dtype, cfg, progress) -> Cohort:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    renderer = _Renderer(resolution)
    volumes = np.empty((n_subjects * scans_per_subject, *renderer.shape), dtype=dtype)
    rows, jobs = [], []
    for i in range(n_subjects):
        row, anatomy = _draw_participant(np.random.default_rng([seed, i, 0]), cfg)
        for s in range(scans_per_subject):
            scan = _draw_scan(np.random.default_rng([seed, i, s + 1]), anatomy.head_scale, cfg)
            jobs.append((len(rows), anatomy, scan))
            rows.append({"participant_id": f"sub-{i + 1:04d}", "session": s + 1, **row})

    def render(job) -> None:
        index, anatomy, scan = job
        volumes[index] = renderer.render(anatomy, scan)

    # one volume per worker thread (torch releases the GIL): every core busy, no OpenMP overhead
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for _ in tqdm(
            pool.map(render, jobs), total=len(jobs), desc="synthetic cohort", disable=not progress
        ):
            pass
    table = split_subjects(pd.DataFrame(rows), seed=seed)
    meta = {
        "source": "synthetic",
        "resolution": resolution,
        "generator": {
            "version": GENERATOR_VERSION,
            "n_subjects": int(n_subjects),
            "seed": int(seed),
            "resolution": resolution,
            "scans_per_subject": int(scans_per_subject),
            "dtype": dtype,
            "config": asdict(cfg),
        },
        "intensity": "skull-stripped T1, background 0, divided by the 90th percentile of brain voxels (white matter ~1)",
    }
    return Cohort(volumes, table, grid_affine(resolution), _effects(renderer, cfg), meta)
