"""Cohorts: MRI volumes, their participant table and their geometry.

Contract (see DESIGN.md): ``Cohort``, ``load_cohort``, ``synthetic_cohort``,
``oasis_cohort``, ``prepare_nifti``, ``split_subjects``, plus ``open_cohort``, the one
call chapters and experiments use to get a cohort by name, built once and cached.

The pieces live in small modules (``cohort`` (with its cache), ``splits``, ``geometry``,
``synthetic``, ``oasis``, ``nifti``); this module gathers their public names.
"""

from __future__ import annotations

import os
from pathlib import Path

from slicemri_lite._core.env import data_dir as default_data_dir
from slicemri_lite._core.geometry import grid_affine, grid_brain_mask, grid_shape
from slicemri_lite.data._cohort import (
    DIAGNOSES,
    REQUIRED_COLUMNS,
    SPLITS,
    TASKS,
    Cohort,
    CohortCacheError,
    load_cohort,
    save_cohort,
    verify_cohort,
)
from slicemri_lite.data._nifti import NiftiInputError, prepare_nifti
from slicemri_lite.data._oasis import oasis_cohort
from slicemri_lite.data._splits import split_subjects
from slicemri_lite.data.synthetic._generator import (
    GENERATOR_VERSION,
    SyntheticConfig,
    reference_brains,
    render_participant,
    synthetic_cohort,
)
from slicemri_lite.data.synthetic._render import release_renderers

__all__ = [
    "Cohort",
    "CohortCacheError",
    "DIAGNOSES",
    "NiftiInputError",
    "REQUIRED_COLUMNS",
    "SPLITS",
    "TASKS",
    "SyntheticConfig",
    "cohort_cache_path",
    "grid_affine",
    "grid_brain_mask",
    "grid_shape",
    "load_cohort",
    "oasis_cohort",
    "open_cohort",
    "prepare_nifti",
    "reference_brains",
    "render_participant",
    "save_cohort",
    "split_subjects",
    "synthetic_cohort",
    "verify_cohort",
]

NAMED_DATA = ("synthetic", "oasis")


def cohort_cache_path(
    data: str,
    n_subjects: int | None,
    resolution: int,
    seed: int,
    scans_per_subject: int = 1,
    data_dir=None,
    synthetic_config: dict | None = None,
) -> Path:
    """Where ``open_cohort`` caches a named cohort: ``<data dir>/cohorts/<name and arguments>``.

    Non-default ``synthetic_config`` values add ``-cfg<hash of the values>`` to the name.
    """
    n = "all" if n_subjects is None else int(n_subjects)
    name = f"{data}-n{n}-r{resolution}-seed{seed}"
    if data == "synthetic":
        name += (
            f"-scans{scans_per_subject}-v{GENERATOR_VERSION}"
            if scans_per_subject != 1
            else f"-v{GENERATOR_VERSION}"
        )
        if synthetic_config:
            name += f"-cfg{_config_digest(synthetic_config)}"
    return default_data_dir(data_dir) / "cohorts" / name


# --- AD enrichment (Chapter 6): generator options through open_cohort ------------------
def _config_digest(values: dict) -> str:
    """8 hex digits identifying a set of ``SyntheticConfig`` overrides."""
    import hashlib
    import json

    text = json.dumps({k: float(v) for k, v in sorted(values.items())}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def _synthetic_config(values: dict | None) -> SyntheticConfig | None:
    """``SyntheticConfig`` with ``values`` replacing its defaults; unknown names are refused."""
    if not values:
        return None
    known = set(SyntheticConfig.__dataclass_fields__)
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(
            f"'synthetic_config' names {unknown}, which SyntheticConfig does not have; "
            f"it has {sorted(known)}."
        )
    return SyntheticConfig(**values)


# ------------------------------------------------------------------------------------------


def _build_once(build, path: Path) -> None:
    """Build and save a cohort unless ``path`` holds one; a concurrent builder may win the race."""
    if (path / "meta.json").is_file():
        return
    if path.exists():
        raise CohortCacheError(
            f"{path} is an incomplete cohort cache (no meta.json: an interrupted write or copy). "
            "Delete the folder and open the cohort again to rebuild it."
        )
    cohort = build()
    try:
        cohort.save(path)
    except OSError:
        if not (path / "meta.json").is_file():  # not a lost race: a real failure
            raise
    finally:
        del cohort  # the cohort is opened from its cache: free the built one's memory
        release_renderers()


def open_cohort(
    data: str | os.PathLike = "synthetic",
    n_subjects: int | None = None,
    *,
    resolution: int = 2,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    scans_per_subject: int = 1,
    progress: bool = True,
    synthetic_config: dict | None = None,
) -> Cohort:
    """Open a cohort by name, building and caching it on first use.

    Args:
        data: ``"synthetic"`` (generated, no download), ``"oasis"`` (OASIS-1 via nilearn,
            downloaded once), or the path of a cohort cache folder (e.g. from
            ``data_scripts/prepare_nifti.py``), which is loaded as it is.
        n_subjects: participants (required for ``"synthetic"``; ``None`` = all of OASIS).
        resolution: grid in mm, 2 (91x109x91) or 4 (46x55x46); ignored for a folder.
        seed: generator and split seed; ignored for a folder.
        data_dir: where caches live (default ``$SLICEMRI_DATA``, else ``~/slicemri_data``).
        scans_per_subject: repeat scans per participant (synthetic only).
        progress: show a progress bar while building.
        synthetic_config: ``SyntheticConfig`` values replacing the defaults (synthetic
            only), e.g. ``{"age_min": 50.0, "ad_prevalence": 0.5}`` for a cohort enriched
            in AD (Chapter 6); cached under its own name.

    Returns:
        The cohort, loaded from its cache (volumes memory-mapped, checksums verified).
    """
    if str(data) not in NAMED_DATA:
        path = Path(data).expanduser()
        if not path.is_dir():
            raise ValueError(
                f"'data' must be one of {list(NAMED_DATA)} or the folder of a cohort cache; "
                f"{str(data)!r} was provided and is no folder."
            )
        return load_cohort(path)
    if synthetic_config and data != "synthetic":
        raise ValueError(
            f"'synthetic_config' applies to data='synthetic' only; {data!r} was given."
        )
    config = _synthetic_config(synthetic_config)
    path = cohort_cache_path(
        str(data), n_subjects, resolution, seed, scans_per_subject, data_dir, synthetic_config
    )
    if data == "synthetic":
        if n_subjects is None:
            raise ValueError("'n_subjects' is required for data='synthetic'; None was provided.")
        _build_once(
            lambda: synthetic_cohort(
                n_subjects,
                seed=seed,
                resolution=resolution,
                scans_per_subject=scans_per_subject,
                config=config,
                progress=progress,
            ),
            path,
        )
    else:
        _build_once(
            lambda: oasis_cohort(n_subjects, resolution=resolution, seed=seed, progress=progress),
            path,
        )
    return load_cohort(path)
