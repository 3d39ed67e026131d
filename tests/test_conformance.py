"""The conformance report: predict_nifti's verdict (ok / warn / refuse) and the failed checks."""

from __future__ import annotations

import functools

import nibabel as nib
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from slicemri_lite.data import grid_brain_mask
from slicemri_lite.models import SliceSetNet
from slicemri_lite.train import (
    FLOORS,
    ConformanceReference,
    conformance_reference,
    conformance_scores,
    load_model,
    predict_nifti,
    read_contract,
    save_model,
    verdicts,
)

SHAPE = (46, 55, 46)


@functools.lru_cache(maxsize=1)
def _cohort():
    """30 synthetic participants at 4 mm, 12 of them in val (thresholds)."""
    from slicemri_lite.data import synthetic_cohort

    return synthetic_cohort(30, seed=1, resolution=4, progress=False).resplit(val=0.4, test=0.1)


@functools.lru_cache(maxsize=1)
def _model_and_reference():
    torch.manual_seed(0)
    model = SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE, embed_dim=8).eval()
    model.task = "age"
    return model, conformance_reference(_cohort(), model)


@pytest.fixture
def saved(tmp_path):
    model, reference = _model_and_reference()
    return save_model(model, tmp_path / "model.pt", cohort=_cohort(), conformance=reference)


def _nifti(volume, path, affine=None) -> str:
    affine = _cohort().affine if affine is None else affine
    nib.save(nib.Nifti1Image(np.asarray(volume, np.float32), affine), path)
    return str(path)


def _ok_row() -> int:
    """A validation scan under every threshold (most are: warn sits at the 99th percentile)."""
    cohort, (_, reference) = _cohort(), _model_and_reference()
    model = _model_and_reference()[0]
    val = cohort.indices("val")
    volumes = np.stack([np.asarray(cohort.volumes[r], np.float32) for r in val])
    with torch.no_grad():
        pooled = model.encoder_features(torch.from_numpy(volumes)[:, None]).mean(1).numpy()
    judged = verdicts(reference, conformance_scores(reference, volumes, pooled))
    ok = [r for r, (verdict, _) in zip(val, judged, strict=True) if verdict == "ok"]
    assert len(ok) >= len(val) // 2
    return ok[0]


def test_a_scan_like_the_training_scans_is_ok(saved, tmp_path):
    volume = _cohort().volumes[_ok_row()]
    found = predict_nifti(saved, [_nifti(volume, tmp_path / "like.nii.gz")])
    assert found.loc[0, "verdict"] == "ok" and found.loc[0, "reasons"] == ""
    assert {f"check_{c}" for c in ("missing_brain", "outside_brain", "features")} <= set(found)


def test_a_scan_with_its_skull_is_refused_for_intensity_outside_the_brain(saved, tmp_path):
    volume = np.asarray(_cohort().volumes[_ok_row()], np.float32).copy()
    brain = grid_brain_mask(4)
    skull = ndi.binary_dilation(brain, iterations=5) & ~ndi.binary_dilation(brain, iterations=3)
    volume[skull] = 1.2  # bright bone marrow and scalp, as a T1 shows them
    found = predict_nifti(saved, [_nifti(volume, tmp_path / "skull.nii.gz")])
    assert found.loc[0, "verdict"] == "refuse"
    assert "outside_brain" in found.loc[0, "reasons"]


def test_a_misregistered_scan_is_flagged_by_the_registration_check(saved, tmp_path):
    volume = np.asarray(_cohort().volumes[_ok_row()], np.float32)
    moved = ndi.shift(
        ndi.rotate(volume, 12, axes=(1, 2), reshape=False, order=1), (0, 4, 3), order=1
    )
    found = predict_nifti(saved, [_nifti(moved, tmp_path / "moved.nii.gz")])
    assert found.loc[0, "verdict"] in ("warn", "refuse")
    assert "misregistration" in found.loc[0, "reasons"]


def test_a_volume_of_noise_is_refused(saved, tmp_path):
    noise = np.random.default_rng(0).uniform(0, 1, SHAPE)
    found = predict_nifti(saved, [_nifti(noise, tmp_path / "noise.nii.gz")])
    assert found.loc[0, "verdict"] == "refuse"
    assert {"histogram", "outside_brain"} <= {
        r.split()[0] for r in found.loc[0, "reasons"].split("; ")
    }


def test_coarse_voxels_warn_by_the_header(saved, tmp_path):
    """8 mm voxels on a 4 mm grid: twice as coarse, between the warn (1.5) and refuse (3) limits."""
    volume = np.asarray(_cohort().volumes[_ok_row()], np.float32)[::2, ::2, ::2]
    affine = _cohort().affine.copy()
    affine[:3, :3] *= 2
    found = predict_nifti(saved, [_nifti(volume, tmp_path / "coarse.nii.gz", affine)])
    assert found.loc[0, "check_voxel_size"] == pytest.approx(2.0)
    assert "voxel_size 2 > warn 1.5" in found.loc[0, "reasons"]


def test_a_tilted_image_is_refused_by_its_header(saved, tmp_path):
    """Axes tilted 20 degrees from the world's: an image still in the scanner's space."""
    from nibabel.affines import from_matvec

    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    tilt = from_matvec(np.array([[1, 0, 0], [0, c, -s], [0, s, c]]))
    volume = _cohort().volumes[_ok_row()]
    found = predict_nifti(
        saved, [_nifti(volume, tmp_path / "tilted.nii.gz", tilt @ _cohort().affine)]
    )
    assert found.loc[0, "check_obliquity"] == pytest.approx(20, abs=0.5)
    assert found.loc[0, "verdict"] == "refuse" and "obliquity" in found.loc[0, "reasons"]


def test_the_reference_travels_with_the_model(saved):
    model, reference = _model_and_reference()
    loaded = load_model(saved)
    assert isinstance(loaded.conformance, ConformanceReference)
    assert loaded.conformance.thresholds.keys() == reference.thresholds.keys()
    for check, (warn, refuse) in reference.thresholds.items():
        assert loaded.conformance.thresholds[check] == pytest.approx((warn, refuse))
        assert refuse > warn
    np.testing.assert_allclose(loaded.conformance.features, reference.features, atol=1e-6)
    contract = read_contract(saved)
    assert set(contract["conformance"]["checks"]) == set(reference.thresholds)


def test_a_model_saved_without_a_reference_says_unchecked(tmp_path):
    model, _ = _model_and_reference()
    path = save_model(model, tmp_path / "bare.pt", cohort=_cohort())
    found = predict_nifti(path, [_nifti(_cohort().volumes[0], tmp_path / "s.nii.gz")])
    assert found.loc[0, "verdict"] == "unchecked"
    assert "conformance" in found.loc[0, "reasons"]


def test_verdicts_follow_the_worst_check():
    reference = ConformanceReference(
        4,
        np.zeros(SHAPE, np.float32),
        np.zeros(99),
        {"histogram": (1.0, 2.0), "outside_brain": (0.1, 0.2)},
    )
    scores = [{"histogram": 0.5, "outside_brain": 0.05}, {"histogram": 1.5, "outside_brain": 0.05},
              {"histogram": 1.5, "outside_brain": 0.3}]  # fmt: skip
    found = verdicts(reference, scores)
    assert [v for v, _ in found] == ["ok", "warn", "refuse"]
    assert found[2][1] == "outside_brain 0.3 > refuse 0.2; histogram 1.5 > warn 1"


def test_thresholds_come_from_the_validation_split():
    """warn: the 99th percentile of the validation scans' scores; refuse three times as far."""
    cohort, (_, reference) = _cohort(), _model_and_reference()
    val = cohort.indices("val")
    volumes = np.stack([np.asarray(cohort.volumes[r], np.float32) for r in val])
    scores = conformance_scores(reference, volumes)
    values = np.array([s["histogram"] for s in scores])
    warn, refuse = reference.thresholds["histogram"]
    assert warn == pytest.approx(np.quantile(values, 0.99))
    assert refuse == pytest.approx(np.median(values) + 3 * (warn - np.median(values)))


def test_a_floor_keeps_a_near_constant_check_from_firing_on_invisible_differences():
    """Skull-stripped validation scans have ~0 intensity outside the brain: without a floor
    the thresholds would sit at ~0 and any speck would be refused."""
    _, reference = _model_and_reference()
    warn, refuse = reference.thresholds["outside_brain"]
    assert warn >= FLOORS["outside_brain"] and refuse >= 3 * FLOORS["outside_brain"]
