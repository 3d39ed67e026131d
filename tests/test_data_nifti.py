"""prepare_nifti: every bad input is named, and orientation / voxel size give known answers."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from slicemri_lite.data import (
    CohortCacheError,
    NiftiInputError,
    grid_brain_mask,
    grid_world_coords,
    load_cohort,
    prepare_nifti,
)


def linear_intensity(xyz: np.ndarray) -> np.ndarray:
    """A known image: 200 + 0.5 x + 0.3 y - 0.2 z (mm), positive over the whole grid."""
    return 200.0 + 0.5 * xyz[..., 0] + 0.3 * xyz[..., 1] - 0.2 * xyz[..., 2]


def ras_image(voxel_mm: float) -> nib.Nifti1Image:
    """The linear image on a RAS grid 10 mm wider than the target grid on every side."""
    lo, hi = np.array([-100.0, -136.0, -82.0]), np.array([100.0, 100.0, 118.0])
    shape = tuple(int(n) for n in np.round((hi - lo) / voxel_mm) + 1)
    affine = np.diag([voxel_mm, voxel_mm, voxel_mm, 1.0])
    affine[:3, 3] = lo
    ijk = np.indices(shape).transpose(1, 2, 3, 0).astype(float)
    return nib.Nifti1Image(linear_intensity(ijk * voxel_mm + lo).astype(np.float32), affine)


def flipped_and_permuted(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """The same image stored differently: axis 0 flipped, then axes permuted to (z, x, y)."""
    data, affine = img.get_fdata(), img.affine
    n0 = data.shape[0]
    flip = np.array([[-1, 0, 0, n0 - 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], dtype=float)
    data = np.flip(data, axis=0)
    # new[a, b, c] = old[b, c, a]: voxel (a, b, c) of the new image is voxel (b, c, a) of the old
    perm = np.array([[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    return nib.Nifti1Image(np.transpose(data, (2, 0, 1)).astype(np.float32), affine @ flip @ perm)


def expected_volume(resolution: int) -> np.ndarray:
    """The known answer: the linear image on the grid, divided by its 90th brain percentile."""
    truth = linear_intensity(grid_world_coords(resolution).astype(float))
    brain = np.sort(truth[grid_brain_mask(resolution)])
    return truth / brain[int(round(0.9 * len(brain))) - 1]


def write_tsv(folder, rows: list[dict]):
    path = folder / "participants.tsv"
    pd.DataFrame(rows).to_csv(path, sep="\t", index=False)
    return path


def good_rows(folder, n: int = 3) -> list[dict]:
    rows = []
    for i in range(n):
        nib.save(ras_image(4.0), folder / f"s{i}.nii.gz")
        rows.append(
            {
                "participant_id": f"p{i}",
                "age": 30 + 10 * i,
                "sex": "F",
                "diagnosis": "CN",
                "path": f"s{i}.nii.gz",
            }
        )
    return rows


@pytest.mark.parametrize("voxel_mm", [2.0, 1.5])
def test_reoriented_and_resized_images_prepare_to_the_known_answer(tmp_path, voxel_mm):
    original = ras_image(voxel_mm)
    nib.save(original, tmp_path / "ras.nii.gz")
    nib.save(flipped_and_permuted(original), tmp_path / "other.nii.gz")
    assert nib.aff2axcodes(flipped_and_permuted(original).affine) != ("R", "A", "S")
    tsv = write_tsv(
        tmp_path,
        [
            {"participant_id": "ras", "age": 40, "path": "ras.nii.gz"},
            {"participant_id": "other", "age": 50, "path": "other.nii.gz"},
        ],
    )
    cohort = prepare_nifti(tsv, tmp_path / "cohort", resolution=4, progress=False)
    expected = expected_volume(4)
    np.testing.assert_allclose(cohort.volumes[0], cohort.volumes[1], rtol=0, atol=1e-5)
    np.testing.assert_allclose(cohort.volumes[0], expected, rtol=0, atol=2e-4)
    assert list(cohort.table["diagnosis"]) == ["CN", "CN"]  # no diagnosis column: everyone CN


def test_prepared_cohort_is_a_loadable_cache(tmp_path):
    tsv = write_tsv(tmp_path, good_rows(tmp_path))
    cohort = prepare_nifti(tsv, tmp_path / "cohort", resolution=4, progress=False)
    loaded = load_cohort(tmp_path / "cohort")
    assert loaded.volumes.shape == (3, 46, 55, 46)
    np.testing.assert_array_equal(loaded.volumes, cohort.volumes)
    assert list(loaded.table["participant_id"]) == ["p0", "p1", "p2"]
    assert set(loaded.table["split"]) <= {"train", "val", "test"}


def bad_inputs(folder) -> dict[str, tuple[dict, str]]:
    """One bad row per kind of problem: (row, words the error must contain)."""
    shape, affine = (20, 20, 20), np.diag([4.0, 4, 4, 1])
    rng = np.random.default_rng(0)
    nib.save(
        nib.Nifti1Image(rng.random((20, 20, 20, 3)).astype(np.float32), affine),
        folder / "4d.nii.gz",
    )
    nib.save(
        nib.Nifti1Image(rng.random((20, 20)).astype(np.float32), np.eye(4)), folder / "2d.nii.gz"
    )
    nan = rng.random(shape).astype(np.float32)
    nan[3, 4, 5] = np.nan
    nib.save(nib.Nifti1Image(nan, affine), folder / "nan.nii.gz")
    nib.save(nib.Nifti1Image(np.full(shape, 7.0, np.float32), affine), folder / "constant.nii.gz")
    nib.save(nib.MGHImage(rng.random(shape).astype(np.float32), affine), folder / "brain.mgz")
    (folder / "garbage.nii.gz").write_bytes(b"this is not an image" * 10)
    nib.save(ras_image(4.0), folder / "whole.nii")
    data = (folder / "whole.nii").read_bytes()
    (folder / "truncated.nii").write_bytes(data[: len(data) // 2])
    nib.save(ras_image(4.0), folder / "ok.nii.gz")
    row = {"participant_id": None, "age": 60, "sex": "M", "diagnosis": "CN", "path": "ok.nii.gz"}
    return {
        "missing": ({**row, "path": "nowhere.nii.gz"}, "file not found"),
        "unreadable": ({**row, "path": "garbage.nii.gz"}, "not a readable NIfTI"),
        "truncated": ({**row, "path": "truncated.nii"}, "truncated"),
        "mgh": ({**row, "path": "brain.mgz"}, "not a NIfTI"),
        "4d": ({**row, "path": "4d.nii.gz"}, "must be 3D"),
        "2d": ({**row, "path": "2d.nii.gz"}, "must be 3D"),
        "nan": ({**row, "path": "nan.nii.gz"}, "NaN or Inf"),
        "constant": ({**row, "path": "constant.nii.gz"}, "constant image"),
        "age": ({**row, "age": "sixty"}, "'age' must be a non-negative number"),
        "diagnosis": (
            {**row, "diagnosis": "MCI"},
            "'diagnosis' must be one of ['CN', 'AD']; 'MCI'",
        ),
    }


def test_every_bad_row_is_named_in_one_error_and_nothing_is_written(tmp_path):
    cases = bad_inputs(tmp_path)
    rows = [{**row, "participant_id": name} for name, (row, _) in cases.items()]
    rows += [
        {"participant_id": "dup", "age": 50, "sex": "F", "diagnosis": "AD", "path": "ok.nii.gz"}
    ] * 2
    rows += good_rows(tmp_path, 2)
    tsv = write_tsv(tmp_path, rows)
    with pytest.raises(NiftiInputError) as err:
        prepare_nifti(tsv, tmp_path / "cohort", resolution=4, progress=False)
    message = str(err.value)
    for row_number, (name, (row, words)) in enumerate(cases.items(), start=2):
        line = next(line for line in message.splitlines() if f"row {row_number} ({name}, " in line)
        assert words in line and row["path"] in line, (name, line)
    assert message.count("appears more than once") == 2
    assert "p0" not in message and "p1" not in message
    assert not (tmp_path / "cohort").exists()
    with pytest.raises(CohortCacheError):
        load_cohort(tmp_path / "cohort")


def test_skip_drops_bad_rows_and_reports_them(tmp_path, capsys):
    cases = bad_inputs(tmp_path)
    rows = good_rows(tmp_path, 3) + [{**cases["nan"][0], "participant_id": "bad"}]
    cohort = prepare_nifti(
        write_tsv(tmp_path, rows),
        tmp_path / "cohort",
        resolution=4,
        on_error="skip",
        progress=False,
    )
    assert list(cohort.table["participant_id"]) == ["p0", "p1", "p2"]
    assert cohort.meta["skipped_rows"] == [5]
    assert "row 5 (bad, nan.nii.gz): " in capsys.readouterr().out


def test_missing_columns_and_bad_arguments_are_refused(tmp_path):
    tsv = write_tsv(tmp_path, [{"participant_id": "a", "path": "x.nii.gz"}])
    with pytest.raises(NiftiInputError, match=r"missing column\(s\) \['age'\]"):
        prepare_nifti(tsv, tmp_path / "c", resolution=4)
    with pytest.raises(
        ValueError, match="'on_error' must be one of \\['raise', 'skip'\\]; 'ignore'"
    ):
        prepare_nifti(tsv, tmp_path / "c", on_error="ignore")
    with pytest.raises(ValueError, match="'resolution' must be one of \\[2, 4\\]; 3"):
        prepare_nifti(tsv, tmp_path / "c", resolution=3)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        prepare_nifti(tmp_path / "none.tsv", tmp_path / "c")
    (tmp_path / "exists").mkdir()
    with pytest.raises(FileExistsError):
        prepare_nifti(tsv, tmp_path / "exists")
