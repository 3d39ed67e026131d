"""OASIS-1 (cross-sectional), the real public cohort, via ``nilearn.datasets.fetch_oasis_vbm``.

nilearn downloads one archive of about 905 MB whatever ``n_subjects`` is, and gives the
DARTEL-normalised grey-matter density maps of 403 participants aged 18 to 96, with
their age, sex (``mf``), MMSE and CDR (Clinical Dementia Rating).

Mapping to the cohort table:

* ``participant_id`` = the OASIS ID (``OAS1_0001_MR1``), ``sex`` = ``mf``.
* ``diagnosis`` = "AD" when CDR > 0 (very mild to moderate dementia), else "CN".
  CDR is missing for most participants under 60: OASIS rated only its older
  volunteers clinically. They are counted as "CN" (the young volunteers were
  recruited as healthy); ``cdr`` stays missing in the table so you can drop them.
* Volumes are the grey-matter maps as distributed (modulated density, about 0 to 1),
  resampled onto the grid, *not* re-scaled: their values carry tissue volume.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from slicemri_lite._core.geometry import check_resolution, grid_affine
from slicemri_lite.data._cohort import Cohort
from slicemri_lite.data._nifti import resample_to_grid
from slicemri_lite.data._splits import split_subjects

__all__ = ["oasis_cohort", "oasis_table", "oasis_folder"]


def oasis_folder(data_dir=None) -> Path:
    """The folder nilearn keeps OASIS-1 in (``<nilearn data dir>/oasis1``)."""
    from nilearn.datasets import get_data_dirs

    return Path(get_data_dirs(data_dir)[0]) / "oasis1"


def oasis_table(ext_vars: pd.DataFrame) -> pd.DataFrame:
    """Map nilearn's ``ext_vars`` (``id, mf, age, mmse, cdr, ...``) to the cohort table."""
    cdr = pd.to_numeric(ext_vars["cdr"], errors="coerce")
    return pd.DataFrame(
        {
            "participant_id": ext_vars["id"].astype(str).to_numpy(),
            "age": pd.to_numeric(ext_vars["age"]).astype(float).to_numpy(),
            "sex": ext_vars["mf"].astype(str).str.upper().to_numpy(),
            "diagnosis": np.where(cdr.to_numpy() > 0, "AD", "CN"),
            "cdr": cdr.to_numpy(),
            "mmse": pd.to_numeric(ext_vars["mmse"], errors="coerce").to_numpy(),
        }
    )


def _fetch(n_subjects, data_dir):
    from nilearn.datasets import fetch_oasis_vbm

    try:
        return fetch_oasis_vbm(n_subjects=n_subjects, data_dir=data_dir, verbose=1)
    except Exception as err:
        folder = oasis_folder(data_dir)
        raise RuntimeError(
            f"could not fetch OASIS-1 with nilearn ({type(err).__name__}: {err}). It needs the "
            f"internet once (one ~905 MB archive). Partial downloads sit in {folder} and nilearn "
            "resumes them: call oasis_cohort again (or run python data_scripts/fetch_oasis.py "
            f"--out DIR) when online; delete {folder} to start from scratch."
        ) from err


def oasis_cohort(
    n_subjects: int | None = None,
    *,
    resolution: int = 2,
    seed: int = 0,
    data_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> Cohort:
    """OASIS-1 grey-matter maps as a cohort on the grid at ``resolution`` mm.

    Args:
        n_subjects: the first ``n_subjects`` of nilearn's 403 (None = all).
        data_dir: nilearn's data folder (None = nilearn's default, ``~/nilearn_data``).
        resolution: 2 (the maps' own 91x109x91 grid) or 4.
        seed: seed of the subject-level split.
        progress: show a progress bar while resampling.

    Returns:
        A cohort with ``volumes`` float32 ``(N, X, Y, Z)`` and the columns of
        ``oasis_table`` plus ``split``.
    """
    from tqdm.auto import tqdm

    resolution = check_resolution(resolution)
    bunch = _fetch(n_subjects, data_dir)
    table = oasis_table(bunch.ext_vars.reset_index(drop=True))
    maps = list(bunch.gray_matter_maps)
    if len(maps) != len(table):
        raise RuntimeError(
            f"nilearn returned {len(maps)} grey-matter maps but {len(table)} table rows; "
            f"the download in {oasis_folder(data_dir)} looks incomplete: delete it and fetch again."
        )
    volumes = np.stack(
        [
            resample_to_grid(nib.load(p), resolution)
            for p in tqdm(maps, desc="OASIS-1", disable=not progress)
        ]
    )
    meta = {
        "source": "oasis1",
        "resolution": resolution,
        "generator": {"n_subjects": n_subjects, "seed": seed, "resolution": resolution},
        "intensity": "grey-matter density (modulated, DARTEL), not re-scaled",
        "diagnosis": "AD = CDR > 0; missing CDR (young volunteers) counted as CN",
    }
    return Cohort(
        volumes.astype(np.float32),
        split_subjects(table, seed=seed),
        grid_affine(resolution),
        meta=meta,
    )
