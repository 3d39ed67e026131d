"""OASIS-1 through nilearn's fetcher, against a fake nilearn data folder laid out like the real one."""

from __future__ import annotations

import numpy as np
import pytest
from data_fixtures import make_fake_oasis

from slicemri_lite.data import _oasis as oasis
from slicemri_lite.data import grid_affine, oasis_cohort


def test_fake_folder_maps_to_the_cohort_table(tmp_path):
    cohort = oasis_cohort(6, data_dir=make_fake_oasis(tmp_path), resolution=4, progress=False)
    t = cohort.table
    assert list(t["participant_id"]) == [f"OAS1_{k:04d}_MR1" for k in range(1, 7)]
    assert list(t["age"]) == [32.0, 44.0, 56.0, 68.0, 80.0, 92.0]
    assert list(t["sex"]) == ["F", "M", "F", "M", "F", "M"]
    # CDR nan, 0, 0.5, 1, nan, 0: AD = CDR > 0; missing CDR counts as CN and stays missing
    assert list(t["diagnosis"]) == ["CN", "CN", "AD", "AD", "CN", "CN"]
    assert t["cdr"].isna().tolist() == [True, False, False, False, True, False]
    assert set(t["split"]) <= {"train", "val", "test"}


def test_maps_are_resampled_onto_the_grid_without_rescaling(tmp_path):
    cohort = oasis_cohort(6, data_dir=make_fake_oasis(tmp_path), resolution=4, progress=False)
    assert cohort.volumes.shape == (6, 46, 55, 46)
    np.testing.assert_array_equal(cohort.affine, grid_affine(4))
    peaks = cohort.volumes.reshape(6, -1).max(1)
    np.testing.assert_allclose(peaks / peaks[0], np.arange(1, 7), rtol=1e-3)  # map k peaks at 0.1 k
    np.testing.assert_allclose(peaks[0], 0.1, rtol=0.02)


def test_paper_grid_keeps_the_maps_as_they_are(tmp_path):
    cohort = oasis_cohort(2, data_dir=make_fake_oasis(tmp_path), resolution=2, progress=False)
    import nibabel as nib

    original = nib.load(
        tmp_path / "oasis1" / "OAS1_0002_MR1" / "mwrc1OAS1_0002_MR1_mpr_anon_fslswapdim_bet.nii.gz"
    )
    np.testing.assert_allclose(cohort.volumes[1], original.get_fdata(), atol=1e-6)


def test_download_failure_says_how_to_retry_and_where_files_are(tmp_path, monkeypatch):
    import nilearn.datasets

    def offline(**kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(nilearn.datasets, "fetch_oasis_vbm", offline)
    with pytest.raises(RuntimeError) as err:
        oasis_cohort(3, data_dir=tmp_path)
    message = str(err.value)
    assert "Network is unreachable" in message and "905 MB" in message
    assert str(tmp_path / "oasis1") in message and "resumes" in message
    assert oasis.oasis_folder(tmp_path) == tmp_path / "oasis1"
