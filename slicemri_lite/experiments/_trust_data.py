"""Chapter 9's cohorts: the book's participants scanned twice, and a cohort from four scanners.

- ``open_retest_cohort``: the first participants of the chapter's cohort (the ``ad``
  grid's at the profile: at ``cpu`` the book's cohort of Chapters 4 to 7) with two scans each: session 1 is the very scan of the book's cohort
  (same bytes), session 2 a rescan (new noise, bias field and misregistration, the same
  anatomy). Rows keep the book cohort's splits, so a model trained there is judged on
  participants it never saw.
- ``open_site_cohort``: new participants (another generator seed) spread over
  ``SITES[profile]`` scanners (``SyntheticConfig.n_sites``; site 0 is the book's own
  scanner), split by participant within each site: 50 % train, 10 % val, 40 % test.

``prepare_trust_data`` builds both, and their frozen slice features, in ``make book``'s
data step.
"""

from __future__ import annotations

import numpy as np

from slicemri_lite.data import Cohort, open_cohort
from slicemri_lite.experiments._profiles import Profile, as_profile
from slicemri_lite.experiments._runner import (
    grid_cohort_arguments,
    open_grid_cohort,
    prepare_features,
)
from slicemri_lite.train import FeatureSpec

__all__ = [
    "RETEST_SUBJECTS",
    "SITES",
    "TRUST_GRID",
    "TRUST_AXIS",
    "open_retest_cohort",
    "open_site_cohort",
    "prepare_trust_data",
    "trust_feature_spec",
]

TRUST_GRID = "ad"  # at cpu the book's cohort; AD-enriched elsewhere, as Chapter 6's
TRUST_AXIS = "sagittal"  # the paper's axis
RETEST_SUBJECTS = {"smoke": 40, "gpu-smoke": 40, "cpu": 80, "gpu": 200}
# (sites, participants): 60 per site at cpu
SITES = {"smoke": (3, 60), "gpu-smoke": (3, 60), "cpu": (4, 240), "gpu": (4, 800)}
SITE_SPLITS = (("train", 0.5), ("val", 0.1), ("test", 0.4))
SITE_SEED_OFFSET = 1000  # the site cohort's participants are not the book's


def _book_size(profile: Profile) -> dict:
    """The chapter cohort's grid and generator settings, as ``open_grid_cohort`` opens it."""
    arguments, _ = grid_cohort_arguments(TRUST_GRID, profile)
    return {
        "resolution": arguments["resolution"],
        "config": dict(arguments.get("synthetic_config") or {}),
    }


def open_retest_cohort(profile: Profile | str, seed: int = 0) -> Cohort:
    """The book cohort's first ``RETEST_SUBJECTS[profile]`` participants, scanned twice."""
    profile = as_profile(profile)
    book = open_grid_cohort(TRUST_GRID, profile, "synthetic", seed)
    size = _book_size(profile)
    n = min(RETEST_SUBJECTS[profile.name], len(book))
    retest = open_cohort(
        "synthetic",
        n_subjects=n,
        resolution=size["resolution"],
        seed=seed,
        scans_per_subject=2,
        synthetic_config=size["config"] or None,
        progress=False,
    )
    splits = dict(zip(book.table["participant_id"], book.table["split"], strict=True))
    table = retest.table.assign(split=retest.table["participant_id"].map(splits))
    meta = {**retest.meta, "splits": "the book cohort's (open_grid_cohort('brain-age'))"}
    return Cohort(retest.volumes, table, retest.affine, retest.effects, meta)


def open_site_cohort(profile: Profile | str, seed: int = 0) -> Cohort:
    """New participants over ``SITES[profile]`` scanners, split 50 / 10 / 40 within each site.

    The generator numbers participants from ``sub-0001`` in every cohort: this cohort's
    ``sub-0001`` is not the book cohort's (another seed draws other people). Join the two
    cohorts' tables on a cohort column as well, never on ``participant_id`` alone.
    """
    profile = as_profile(profile)
    n_sites, n_subjects = SITES[profile.name]
    size = _book_size(profile)
    cohort = open_cohort(
        "synthetic",
        n_subjects=n_subjects,
        resolution=size["resolution"],
        seed=seed + SITE_SEED_OFFSET,
        synthetic_config={**size["config"], "n_sites": n_sites},
        progress=False,
    )
    table = cohort.table.assign(split=_split_within_sites(cohort.table, seed))
    meta = {**cohort.meta, "splits": "50 / 10 / 40 % within each site"}
    return Cohort(cohort.volumes, table, cohort.affine, cohort.effects, meta)


def _split_within_sites(table, seed: int) -> np.ndarray:
    """train / val / test labels, drawn within each site (one row per participant)."""
    rng, split = np.random.default_rng(seed), np.empty(len(table), dtype=object)
    for site in sorted(table["site"].unique()):
        rows = rng.permutation(np.flatnonzero(table["site"].to_numpy() == site))
        edges = np.round(np.cumsum([f for _, f in SITE_SPLITS]) * len(rows)).astype(int)
        for (name, _), part in zip(SITE_SPLITS, np.split(rows, edges[:-1]), strict=True):
            split[part] = name
    return split


def trust_feature_spec(profile: Profile | str, seed: int = 0) -> FeatureSpec:
    """The frozen features Chapter 9's slice models read (the profile's encoder, ImageNet)."""
    return FeatureSpec(as_profile(profile).encoder, axis=TRUST_AXIS, seed=seed)


def prepare_trust_data(profile: Profile | str = "cpu", seed: int = 0) -> list[str]:
    """Build Chapter 9's two cohorts and their frozen features; one line per cohort."""
    profile = as_profile(profile)
    spec, done = trust_feature_spec(profile, seed), []
    for name, opener in (("retest", open_retest_cohort), ("sites", open_site_cohort)):
        cohort = opener(profile, seed)
        done.append(prepare_features(cohort, spec, profile.device, f"chapter 9 {name}"))
    return done
