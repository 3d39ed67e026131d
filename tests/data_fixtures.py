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


def planted_cohort(
    n: int = 24,
    shape: tuple[int, int, int] = (18, 22, 20),
    seed: int = 0,
    gain: float = 0.3,
    noise: float = 0.1,
    with_ad: bool = True,
    splits: str = "cycle",
):
    """Tiny noise volumes whose central block brightens with age (and darkens with AD).

    Args:
        n: volumes (one per participant).
        shape: the grid; the block is the middle half of each axis.
        seed: draws ages and noise.
        gain: block change per 35 years of age (and half of it for AD).
        noise: standard deviation of the voxel noise around 0.5.
        with_ad: every third participant has AD; else all are CN.
        splits: ``"cycle"`` (train, train, val, test, ...) or ``"blocks"`` (60/20/20 in order).
    """
    from slicemri_lite.data import Cohort

    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 90, n)
    is_ad = (np.arange(n) % 3 == 0) & with_ad
    volumes = rng.normal(0.5, noise, (n, *shape)).astype(np.float32)
    block = tuple(slice(d // 4, d - d // 4) for d in shape)
    signal = gain * ((age - 55) / 35 - 0.5 * is_ad)  # (n,)
    volumes[(slice(None), *block)] += signal[:, None, None, None].astype(np.float32)
    if splits == "cycle":
        split = np.resize(["train", "train", "val", "test"], n)
    else:
        n_train, n_val = int(0.6 * n), int(0.2 * n)
        split = np.repeat(["train", "val", "test"], [n_train, n_val, n - n_train - n_val])
    table = pd.DataFrame(
        {
            "participant_id": [f"sub-{i:03d}" for i in range(n)],
            "age": age,
            "sex": np.where(np.arange(n) % 2, "F", "M"),
            "diagnosis": np.where(is_ad, "AD", "CN"),
            "split": split,
        }
    )
    return Cohort(volumes=volumes, table=table, affine=np.diag([4.0, 4.0, 4.0, 1.0]))


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
