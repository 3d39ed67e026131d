"""Small inputs the data tests share: one synthetic cohort, NIfTI images, a fake OASIS folder."""

from __future__ import annotations

import functools
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

# nilearn's fetch_oasis_vbm (DARTEL) lists subjects 1, 2, 3, ... skipping its missing ones;
# the first six are OAS1_0001 .. OAS1_0006.
OASIS_IDS = (1, 2, 3, 4, 5, 6)
OASIS_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])


@functools.lru_cache(maxsize=1)
def small_cohort():
    """40 participants at 4 mm, seed 0 (built once per test session)."""
    from slicemri_lite.data import synthetic_cohort

    return synthetic_cohort(40, seed=0, resolution=4)


def make_fake_oasis(data_dir: Path, cdr=(np.nan, 0.0, 0.5, 1.0, np.nan, 0.0)) -> Path:
    """Lay out ``data_dir/oasis1`` as nilearn leaves it after downloading OASIS-1 (DARTEL).

    Each participant folder ``OAS1_000k_MR1`` holds the grey- and white-matter maps
    (``mwrc1`` / ``mwrc2`` ... ``_mpr_anon_fslswapdim_bet.nii.gz``, 91x109x91 at 2 mm in
    FSL's orientation), next to ``oasis_cross-sectional.csv`` and ``data_usage_agreement.txt``.
    Subject k's grey-matter map is a smooth blob whose value at its centre is 0.1 * k.
    """
    folder = data_dir / "oasis1"
    ijk = np.indices((91, 109, 91)).astype(np.float32)
    blob = np.exp(
        -(((ijk[0] - 45) / 20) ** 2 + ((ijk[1] - 63) / 25) ** 2 + ((ijk[2] - 36) / 20) ** 2)
    )
    rows = []
    for k, rating in zip(OASIS_IDS, cdr, strict=True):
        sid = f"OAS1_{k:04d}_MR1"
        (folder / sid).mkdir(parents=True, exist_ok=True)
        for prefix, scale in (("mwrc1", 0.1 * k), ("mwrc2", 0.05 * k)):
            img = nib.Nifti1Image((scale * blob).astype(np.float32), OASIS_AFFINE)
            nib.save(img, folder / sid / f"{prefix}{sid}_mpr_anon_fslswapdim_bet.nii.gz")
        rows.append(
            {
                "ID": sid,
                "M/F": "F" if k % 2 else "M",
                "Hand": "R",
                "Age": 20 + 12 * k,
                "Educ": 3,
                "SES": 2,
                "MMSE": 29 if rating != rating else 30 - 4 * rating,
                "CDR": rating,
                "eTIV": 1500,
                "nWBV": 0.8,
                "ASF": 1.2,
                "Delay": np.nan,
            }
        )
    pd.DataFrame(rows).to_csv(folder / "oasis_cross-sectional.csv", index=False)
    (folder / "data_usage_agreement.txt").write_text("OASIS data usage agreement (test copy)\n")
    return data_dir
