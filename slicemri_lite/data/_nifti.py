"""Bring your own NIfTI files: validate, reorient, resample onto the grid, normalise, cache.

Input: a TSV with ``participant_id``, ``age`` and ``path`` (absolute, or relative to the
TSV's folder), optionally ``sex`` ("F"/"M") and ``diagnosis`` ("CN"/"AD"). Images should
be skull-stripped T1s already registered to MNI space (any orientation, any voxel size).

Every row and every image is checked before anything is written; all problems are
reported at once, naming the row, participant and file.
"""

from __future__ import annotations

import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import torch

from slicemri_lite._core.geometry import check_resolution, grid_affine, grid_brain_mask, grid_shape
from slicemri_lite._core.validation import check_choice
from slicemri_lite.data._cohort import DIAGNOSES, Cohort
from slicemri_lite.data._intensity import white_matter_level
from slicemri_lite.data._splits import split_subjects

__all__ = ["prepare_nifti", "prepare_image", "resample_to_grid", "NiftiInputError", "check_image"]

_SEX = {"f": "F", "female": "F", "m": "M", "male": "M"}
ON_ERROR = ("raise", "skip")


class NiftiInputError(ValueError):
    """Bad rows or images in a participants TSV; ``problems`` lists ``(row, participant_id, path, what)``."""

    def __init__(self, tsv: Path, problems: list[tuple]):
        self.problems = problems
        lines = [f"  row {row} ({pid}, {path}): {what}" for row, pid, path, what in problems]
        super().__init__(
            f"{tsv}: {len(problems)} problem(s); fix these rows or pass on_error='skip' to drop them:\n"
            + "\n".join(lines)
        )


def _read_table(tsv: Path) -> pd.DataFrame:
    if not tsv.is_file():
        raise FileNotFoundError(f"the participants file {tsv} does not exist.")
    table = pd.read_csv(tsv, sep="\t", dtype=str, keep_default_na=False)
    missing = [c for c in ("participant_id", "age", "path") if c not in table.columns]
    if missing:
        raise NiftiInputError(
            tsv,
            [
                (
                    "header",
                    "-",
                    "-",
                    f"missing column(s) {missing}; the columns are {list(table.columns)}",
                )
            ],
        )
    return table


def _row_problems(row: pd.Series, duplicated: bool) -> list[str]:
    """Problems with one TSV row's fields (not its image)."""
    problems = []
    if duplicated:
        problems.append(f"participant_id {row['participant_id']!r} appears more than once")
    age = pd.to_numeric(row["age"], errors="coerce")
    if not np.isfinite(age) or age < 0:
        problems.append(f"'age' must be a non-negative number; {row['age']!r} was provided")
    if "diagnosis" in row and row["diagnosis"].strip().upper() not in DIAGNOSES:
        problems.append(
            f"'diagnosis' must be one of {list(DIAGNOSES)}; {row['diagnosis']!r} was provided"
        )
    if "sex" in row and row["sex"].strip() and row["sex"].strip().lower() not in _SEX:
        problems.append(f"'sex' must be one of ['F', 'M'] (or empty); {row['sex']!r} was provided")
    return problems


def check_image(path: Path) -> str | None:
    """What is wrong with the image at ``path`` (missing, unreadable, not a 3D NIfTI, NaN/Inf, constant), or None."""
    if not path.is_file():
        return "file not found"
    try:
        img = nib.load(path)
    except Exception as err:  # nibabel raises several types for foreign files
        return f"not a readable NIfTI image ({type(err).__name__}: {err})"
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        return f"not a NIfTI image (nibabel reads it as {type(img).__name__})"
    shape = img.shape
    if len(shape) != 3 and not (len(shape) > 3 and all(n == 1 for n in shape[3:])):
        return f"image must be 3D; its shape is {shape}"
    try:
        data = np.asanyarray(img.dataobj)
    except Exception as err:  # truncated or corrupt data block
        return f"image data cannot be read (truncated or corrupt file? {type(err).__name__}: {err})"
    finite = np.isfinite(data)
    if not finite.all():
        return f"{int((~finite).sum())} voxels are NaN or Inf"
    if data.min() == data.max():
        return f"constant image (every voxel is {data.flat[0]})"
    return None


def resample_to_grid(
    img: nib.Nifti1Image, resolution: int, interpolation: str = "linear"
) -> np.ndarray:
    """Reorient ``img`` to RAS, blur away detail finer than the grid, resample: ``(X, Y, Z)`` float32."""
    from nilearn.image import resample_img, smooth_img

    img = nib.as_closest_canonical(nib.squeeze_image(img))
    voxel = np.asarray(img.header.get_zooms()[:3], dtype=float)
    fwhm = np.sqrt(np.clip(resolution**2 - voxel**2, 0, None))  # effective resolution ~ the grid's
    if fwhm.max() > 0.5:
        img = smooth_img(img, fwhm=fwhm)
    out = resample_img(
        img,
        target_affine=grid_affine(resolution),
        target_shape=grid_shape(resolution),
        interpolation=interpolation,
        force_resample=True,
        copy_header=True,
    )
    return np.asarray(out.get_fdata(), dtype=np.float32)


def _normalise(volume: np.ndarray, resolution: int) -> np.ndarray:
    """Divide by the 90th percentile inside the MNI brain mask (white matter ~1 on a T1)."""
    level = float(white_matter_level(torch.from_numpy(volume[grid_brain_mask(resolution)])))
    if level <= 0:
        raise ValueError(
            "no positive signal inside the MNI brain mask: is the image registered to MNI space?"
        )
    return volume / level


def _participant_table(table: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(
        {"participant_id": table["participant_id"], "age": pd.to_numeric(table["age"])}
    )
    sex = table["sex"] if "sex" in table else pd.Series("", index=table.index)
    out["sex"] = [_SEX.get(s.strip().lower(), "n/a") for s in sex]
    out["diagnosis"] = table["diagnosis"].str.strip().str.upper() if "diagnosis" in table else "CN"
    out["path"] = table["path"]
    return out.reset_index(drop=True)


def prepare_nifti(
    participants_tsv: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    resolution: int = 2,
    on_error: str = "raise",
    progress: bool = True,
) -> Cohort:
    """Validate, reorient, resample and normalise your NIfTI files into a cohort cache at ``out_dir``.

    Args:
        participants_tsv: TSV with ``participant_id``, ``age``, ``path`` (+ optional
            ``sex``, ``diagnosis``; without a ``diagnosis`` column every row is "CN").
        out_dir: the cohort cache folder to create (must not exist).
        resolution: grid in mm, 2 (91x109x91) or 4 (46x55x46).
        on_error: "raise" (one error naming every bad row) or "skip" (drop bad rows, print them).
        progress: show a progress bar.

    Returns:
        The saved cohort (``volumes`` float32 ``(N, X, Y, Z)``, split by ``split_subjects``).
    """
    from tqdm.auto import tqdm

    resolution = check_resolution(resolution)
    check_choice("on_error", on_error, ON_ERROR)
    tsv, out_dir = Path(participants_tsv).expanduser(), Path(out_dir).expanduser()
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose a new folder or delete it first.")
    table = _read_table(tsv)
    duplicated = table["participant_id"].duplicated(keep=False).to_numpy()
    paths = [Path(p) if Path(p).is_absolute() else tsv.parent / p for p in table["path"]]

    problems, volumes = [], {}
    for i in tqdm(range(len(table)), desc="preparing images", disable=not progress):
        row = table.iloc[i]
        whats = _row_problems(row, duplicated[i])
        image_problem = check_image(paths[i])
        if image_problem is None and not whats:
            try:
                volumes[i] = _normalise(
                    resample_to_grid(nib.load(paths[i]), resolution), resolution
                )
            except Exception as err:
                image_problem = f"{type(err).__name__}: {err}"
        whats += [image_problem] if image_problem else []
        problems += [
            (i + 2, row["participant_id"], row["path"], what) for what in whats
        ]  # row 1 = header

    if problems and on_error == "raise":
        raise NiftiInputError(tsv, problems)
    if problems:
        print(
            f"skipped {len({p[0] for p in problems})} row(s):\n"
            + str(NiftiInputError(tsv, problems)).split("\n", 1)[1]
        )
    keep = sorted(volumes)
    if not keep:
        raise NiftiInputError(tsv, problems or [("-", "-", "-", "the table has no rows")])
    cohort = Cohort(
        volumes=np.stack([volumes[i] for i in keep]).astype(np.float32),
        table=split_subjects(_participant_table(table.iloc[keep])),
        affine=grid_affine(resolution),
        meta={
            "source": f"nifti:{tsv}",
            "resolution": resolution,
            "skipped_rows": [p[0] for p in problems],
            "intensity": "divided by the 90th percentile inside the MNI brain mask",
        },
    )
    cohort.save(out_dir)
    return cohort


def prepare_image(
    path: str | os.PathLike, resolution: int = 2, normalise: bool = True
) -> np.ndarray:
    """One NIfTI file prepared as ``prepare_nifti`` prepares each image: ``(X, Y, Z)`` float32.

    Checked (``check_image``), reoriented and resampled onto the grid (``resample_to_grid``),
    then, with ``normalise``, divided by its white-matter level inside the MNI brain mask.
    """
    path = Path(path).expanduser()
    problem = check_image(path)
    if problem is not None:
        raise ValueError(f"{path}: {problem}")
    volume = resample_to_grid(nib.load(path), check_resolution(resolution))
    return _normalise(volume, resolution) if normalise else volume
