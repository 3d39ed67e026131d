"""The synthetic brain cohort: MNI152 anatomy that ages and gets Alzheimer's disease.

Every participant ``i`` is drawn from ``numpy.random.default_rng([seed, i, 0])`` and each
of their scans from ``default_rng([seed, i, scan])``, so the first ``n`` participants
are the same whatever ``n_subjects`` is, and the same arguments give the same bytes.

Labels (see ``SyntheticConfig`` for every number and its source):

* ``age``: uniform between 20 and 90 years; ``sex``: "F" or "M" with equal odds.
* ``diagnosis``: "AD" for ``ad_prevalence`` (35 %) of participants aged 60 or more,
  "CN" for everyone else.

Anatomy (``ageing`` draws it, ``render`` images it), mostly shape:

* Ageing grows the lateral ventricles (slowly before 50, fast after 75), shrinks the
  hippocampi, thins the cortex from its pial side (so the sulci widen; the frontal lobe
  most) and lowers grey-white contrast a little. Every marker follows the participant's
  *brain age* (age + N(0, 4 years), a pace shared by all markers) at the participant's
  own rate (a lognormal factor per marker) from the participant's own size.
* AD adds hippocampal atrophy and ventricular growth at patients' rates for 2 to 8
  years, and medial temporal grey-matter loss.
* A smooth random deformation (about 2.5 mm, on scales of 30 to 60 mm) moves everything
  a little.

Nuisance: head size (women about 4 % smaller; one per participant) and, drawn anew
for every scan, a small rigid misregistration (1 degree, 1 mm), intensity scale and a smooth
multiplicative bias field, Gaussian noise inside the brain.

Intensities: skull-stripped T1, background 0, each volume divided by the 90th
percentile of its brain voxels, so white matter sits at about 1 (grey matter ~0.75,
CSF ~0.4); see ``intensity.white_matter_level``.

Ground truth: ``effects["age"]`` and ``effects["ad"]`` are differences of normalised,
noise-free renderings of the typical participant (``reference_brains``), and
``render_participant`` renders any participant with and without their own effects.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np
import pandas as pd
import torch

from slicemri_lite.ageing import (
    EFFECTS,
    Participant,
    draw_participant,
    markers,
    typical_participant,
)
from slicemri_lite.cohort import Cohort
from slicemri_lite.geometry import check_resolution, grid_affine
from slicemri_lite.render import draw_scan, identity_scan, random_warp, renderer
from slicemri_lite.splits import split_subjects
from slicemri_lite.validation import check_choice

__all__ = [
    "SyntheticConfig",
    "synthetic_cohort",
    "reference_brains",
    "render_participant",
    "GENERATOR_VERSION",
]

GENERATOR_VERSION = 3
_WORKERS = max(1, min(4, os.cpu_count() or 1))  # volumes rendered at once


@dataclass(frozen=True)
class SyntheticConfig:
    """Every number behind the synthetic cohort, with its source.

    Rates are annual log changes (0.01: about 1 % a year). "Assumption" marks a number
    no cited study gives; those were set once, before any model was run on the cohort.
    Sources (``book/references.bib``): Barnes et al. 2009 (Neurobiol Aging 30:1711),
    Cole & Franke 2017 (Trends Neurosci 40:681), Fjell & Walhovd 2010 (Rev Neurosci
    21:187), Fotenos et al. 2005 (Neurology 64:1032), Fraser et al. 2015 (NeuroImage
    112:364), Raz et al. 2005 (Cereb Cortex 15:1676), Salat et al. 2004 (Cereb Cortex
    14:721), Salat et al. 2009 (NeuroImage 48:21), Scahill et al. 2003 (Arch Neurol
    60:989), Storsve et al. 2014 (J Neurosci 34:8488), Tang et al. 2001 (J Neuroimaging
    11:393).
    """

    age_min: float = 20.0
    age_max: float = 90.0
    ad_min_age: float = 60.0  # nobody younger has AD
    ad_prevalence: float = 0.35  # share of AD among participants aged ad_min_age or more
    # a pace shared by all markers: brain age = age + N(0, sd), the "brain-age gap" that
    # brain-age studies find between people (Cole & Franke 2017); individual rates of
    # shrinkage correlate across regions (Raz 2005); sd: assumption
    brain_age_sd: float = 4.0
    # Ventricles grow slowly in early adulthood and faster late in life (Scahill 2003;
    # Fjell & Walhovd 2010); 5.6 +/- 3.6 %/yr at ages 74-87 (Tang 2001): we take 3 %/yr
    # from 75, the lower side, and 0.5 %/yr before 50 (assumption): x2.8 from 20 to 90.
    ventricle_rate_young: float = 0.005
    ventricle_rate_old: float = 0.03
    # per-person rate factors, log-sd 0.5 (coefficient of variation ~0.5: Tang 2001 found
    # sd/mean 0.64 for ventricular growth; Raz 2005: individual differences in every
    # region's shrinkage); the same spread for every marker (assumption)
    ventricle_rate_sd: float = 0.5
    ventricle_size_sd: float = 0.3  # log-sd of ventricle volume between people (assumption)
    # Hippocampus: 0.85 %/yr averaged over adult samples (Fraser 2015), 1.41 %/yr in
    # older controls (Barnes 2009); we take 0.3 %/yr before 50 and 1.4 %/yr from 75
    hippocampus_rate_young: float = 0.003
    hippocampus_rate_old: float = 0.014
    hippocampus_rate_sd: float = 0.5
    hippocampus_size_sd: float = 0.1  # log-sd between people (assumption)
    # Cortex: thickness falls by 0.35 %/yr of ~2.5 mm (Storsve 2014, ages 23-87), widely,
    # frontal cortex most (Salat 2004): 0.5 mm by 90
    cortex_thickness_mm: float = 2.5
    cortex_rate: float = 0.0035
    cortex_rate_sd: float = 0.5
    cortex_thickness_sd_mm: float = 0.1  # between people (assumption)
    # grey-white contrast falls with age (Salat 2009); share lost by 90: assumption
    contrast_loss_age: float = 0.1
    contrast_rate_sd: float = 0.5
    # AD: hippocampal atrophy 4.66 %/yr vs 1.41 %/yr in controls, an excess of 3.33 %/yr
    # (Barnes 2009), for 2 to 8 years before the scan (assumption), at a rate factor with
    # log-sd 0.3 (assumption); ventricles grow at twice the control late rate, as
    # whole-brain atrophy more than doubles in very mild AD (Fotenos 2005)
    ad_years_min: float = 2.0
    ad_years_max: float = 8.0
    ad_rate_sd: float = 0.3
    ad_hippocampus_rate: float = 0.0333
    ad_ventricle_rate: float = 0.03
    mtl_loss_ad: float = 0.15  # medial temporal grey matter lost at typical AD (assumption)
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


def _participant(seed: int, i: int, cfg: SyntheticConfig) -> Participant:
    rng = np.random.default_rng([seed, i, 0])
    p = draw_participant(rng, cfg, warp=None)  # the warp's draws come after the labels'
    return replace(p, warp=random_warp(rng, cfg.deformation_mm, cfg.fine_deformation_mm))


def _row(p: Participant) -> dict:
    return {
        "age": p.age,
        "sex": p.sex,
        "diagnosis": p.diagnosis,
        "brain_age": round(p.brain_age, 2),
        "ad_severity": round(p.ad_severity, 3),
    }


def _reference_brains(resolution: int, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    render = renderer(resolution).render

    def brain(age: float, severity: float) -> np.ndarray:
        p = typical_participant(age, severity)
        return render(markers(p, cfg), p.warp, identity_scan())

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
    (aged 75, typical AD): template size, every rate at its typical value, no individual
    deformation, no nuisance, no noise, normalised like every cohort volume. The cohort's
    ``effects`` are their differences: ``age`` = CN 90 - CN 20, ``ad`` = AD 75 - CN 75.
    """
    with _single_thread():
        return _reference_brains(check_resolution(resolution), config or SyntheticConfig())


def _effects(resolution: int, cfg: SyntheticConfig) -> dict[str, np.ndarray]:
    brains = _reference_brains(resolution, cfg)
    return {"age": brains["CN 90"] - brains["CN 20"], "ad": brains["AD 75"] - brains["CN 75"]}


def render_participant(
    cohort: Cohort,
    index: int,
    without: Sequence[str] = EFFECTS,
    *,
    noise: bool = False,
) -> dict[str, np.ndarray]:
    """Render one volume of a synthetic cohort with and without the participant's own effects.

    The participant keeps everything else: their anatomy (size, deformation), the scan's
    misregistration, bias field and intensity scale and, if ``noise``, the scan's noise.
    Both renderings are normalised as the cohort's volumes are.

    Args:
        cohort: a cohort made by ``synthetic_cohort`` (or loaded from its cache).
        index: row of ``cohort.table`` / ``cohort.volumes``.
        without: the effects to remove, any of ``"age"`` (back to the participant's own
            anatomy at 20) and ``"ad"`` (an AD patient as they would be without AD).
        noise: add the scan's noise; then ``"with"`` equals ``cohort.volumes[index]``
            (up to the cohort's dtype).

    Returns:
        ``{"with": ..., "without": ..., "effect": with - without}``, ``(X, Y, Z)`` float32 each.
    """
    generator = cohort.meta.get("generator") if cohort.meta else None
    if not generator or cohort.meta.get("source") != "synthetic":
        raise ValueError("render_participant needs a cohort made by synthetic_cohort.")
    if generator.get("version") != GENERATOR_VERSION:
        raise ValueError(
            f"this cohort was made by generator version {generator.get('version')!r}; "
            f"this library renders version {GENERATOR_VERSION}. Regenerate the cohort."
        )
    for name in without:
        check_choice("without", name, EFFECTS)
    if not 0 <= int(index) < len(cohort.table):
        raise ValueError(f"'index' must be in [0, {len(cohort.table)}); {index!r} was provided.")
    cfg = SyntheticConfig(**generator["config"])
    row = cohort.table.iloc[int(index)]
    i, scan_number = int(row["participant_id"].split("-")[1]) - 1, int(row.get("session", 1))
    p = _participant(int(generator["seed"]), i, cfg)
    scan = draw_scan(np.random.default_rng([generator["seed"], i, scan_number]), p.head_scale, cfg)
    if not noise:
        scan.noise_sd = 0.0
    kept = tuple(e for e in EFFECTS if e not in without)
    with _single_thread():
        render = renderer(int(generator["resolution"])).render
        full = render(markers(p, cfg), p.warp, scan)
        reduced = render(markers(p, cfg, kept), p.warp, scan)
    return {"with": full, "without": reduced, "effect": full - reduced}


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
    check_choice("dtype", dtype, ("float16", "float32"))
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

    render = renderer(resolution).render
    volumes = np.empty((n_subjects * scans_per_subject, *renderer(resolution).shape), dtype=dtype)
    rows, jobs = [], []
    for i in range(n_subjects):
        p = _participant(seed, i, cfg)
        for s in range(scans_per_subject):
            scan = draw_scan(np.random.default_rng([seed, i, s + 1]), p.head_scale, cfg)
            jobs.append((len(rows), p, scan))
            rows.append({"participant_id": f"sub-{i + 1:04d}", "session": s + 1, **_row(p)})

    def work(job) -> None:
        index, p, scan = job
        volumes[index] = render(markers(p, cfg), p.warp, scan)

    # one volume per worker thread (torch releases the GIL): every core busy, no OpenMP overhead
    with ThreadPoolExecutor(max_workers=_WORKERS) as pool:
        for _ in tqdm(
            pool.map(work, jobs), total=len(jobs), desc="synthetic cohort", disable=not progress
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
    return Cohort(volumes, table, grid_affine(resolution), _effects(resolution, cfg), meta)
