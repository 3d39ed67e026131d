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
  medial temporal lobe (its tissue lost to CSF), thins the cortex from its pial side (so the sulci widen; the frontal lobe
  most) and lowers grey-white contrast a little. Every marker follows the participant's
  *brain age* (age + N(0, 4 years), a pace shared by all markers) at the participant's
  own rate (a lognormal factor per marker) from the participant's own size.
* AD adds, in proportion to the patient's stage, the differences measured between
  patients and age-matched controls: hippocampus 24 % and amygdala-entorhinal cortex
  32 % smaller (tissue lost to CSF), temporo-parietal cortex 0.25 mm thinner,
  ventricles 16 % larger (for the typical patient; stages vary about tenfold).
* A smooth random deformation (about 2.5 mm, on scales of 30 to 60 mm) moves everything
  a little.

Nuisance, as in affinely registered scans: the registration's residual scale (1 %, one
per participant) and, drawn anew for every scan, a small rigid misregistration (0.5
degree, 0.5 mm), intensity scale and a smooth multiplicative bias field, Gaussian noise
inside the brain.

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
from dataclasses import asdict, replace

import numpy as np
import pandas as pd
import torch

from slicemri_lite._core.geometry import check_resolution, grid_affine
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import Cohort
from slicemri_lite.data._splits import split_subjects
from slicemri_lite.data.synthetic._ageing import (
    EFFECTS,
    Participant,
    draw_participant,
    markers,
    typical_participant,
)
from slicemri_lite.data.synthetic._config import SyntheticConfig
from slicemri_lite.data.synthetic._render import (
    draw_scan,
    draw_site,
    identity_scan,
    random_warp,
    renderer,
)

__all__ = [
    "SyntheticConfig",
    "synthetic_cohort",
    "reference_brains",
    "render_participant",
    "GENERATOR_VERSION",
]

GENERATOR_VERSION = 4
_WORKERS = max(1, min(4, os.cpu_count() or 1))  # volumes rendered at once


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
    site = draw_site(i % int(cfg.n_sites), cfg)
    rng = np.random.default_rng([generator["seed"], i, scan_number])
    scan = draw_scan(rng, p.head_scale, cfg, site)
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
    *,
    resolution: int = 2,
    seed: int = 0,
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
    sites = [draw_site(k, cfg) for k in range(int(cfg.n_sites))]
    for i in range(n_subjects):
        p = _participant(seed, i, cfg)
        site = sites[i % len(sites)]
        for s in range(scans_per_subject):
            rng = np.random.default_rng([seed, i, s + 1])
            scan = draw_scan(rng, p.head_scale, cfg, site)
            jobs.append((len(rows), p, scan))
            row = {"participant_id": f"sub-{i + 1:04d}", "session": s + 1, **_row(p)}
            rows.append(row | ({"site": f"site-{site.index}"} if len(sites) > 1 else {}))

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
