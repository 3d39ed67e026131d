"""save_model / load_model / predict_nifti: a trained model travels with its usage contract."""

from __future__ import annotations

import functools
import pickle

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import torch

from slicemri_lite.models import Conv3DNet, SliceSetNet
from slicemri_lite.train import load_model, predict_nifti, read_contract, save_model

SHAPE = (46, 55, 46)  # the 4 mm grid


@functools.lru_cache(maxsize=1)
def tiny_cohort():
    """6 synthetic participants on the 4 mm grid (built once per session)."""
    from slicemri_lite.data import synthetic_cohort

    return synthetic_cohort(6, seed=0, resolution=4, progress=False)


def _trained_like(model: torch.nn.Module, mean: float = 60.0, std: float = 12.0):
    """Random weights everywhere and a target scaling, as if fit had run."""
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.target_mean.fill_(mean)
        model.target_std.fill_(std)
    model.task = "age"
    return model.eval()


def _volumes(n: int = 2, shape=SHAPE) -> torch.Tensor:
    return torch.rand(n, 1, *shape, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize(
    "build",
    [
        lambda: SliceSetNet(
            "scratch",
            pretrained=False,
            axis="coronal",
            volume_shape=SHAPE,
            aggregation="attention",
            embed_dim=16,
        ),  # fmt: skip
        lambda: SliceSetNet.paper("efficientnet_lite0", "axial", "attention", volume_shape=SHAPE),
        lambda: Conv3DNet(volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8)),
    ],
    ids=["book-scratch", "paper-lite0", "conv3d"],
)
def test_round_trip_gives_identical_predictions(tmp_path, build):
    model = _trained_like(build())
    path = save_model(model, tmp_path / "model.pt")
    loaded = load_model(path)
    assert type(loaded) is type(model) and loaded.config == model.config
    assert loaded.task == "age" and not loaded.training
    x = _volumes()
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_the_contract_records_how_to_use_the_model(tmp_path):
    cohort = tiny_cohort()
    model = _trained_like(SliceSetNet.paper("scratch", "sagittal", volume_shape=(91, 109, 91)))
    with pytest.raises(ValueError, match=r"the cohort's grid \(46, 55, 46\) is not the model's"):
        save_model(model, tmp_path / "m.pt", cohort=cohort)
    model = _trained_like(SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE))
    contract = read_contract(save_model(model, tmp_path / "m.pt", cohort=cohort, task="age"))
    assert contract["architecture"] == "SliceSetNet" and contract["axis"] == "sagittal"
    assert contract["grid"]["shape"] == list(SHAPE) and contract["grid"]["resolution"] == 4
    np.testing.assert_allclose(contract["grid"]["affine"], cohort.affine)
    assert contract["intensity"] == "white_matter_level"
    assert contract["target_mean"] == [60.0] and contract["target_std"] == [12.0]
    assert contract["library_version"] and contract["task"] == "age"


def test_loading_runs_no_code(tmp_path):
    """Files are read with weights_only: a pickled object is refused, not executed."""
    model = _trained_like(Conv3DNet(volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8)))
    path = save_model(model, tmp_path / "model.pt")
    payload = torch.load(path, weights_only=True)
    payload["contract"]["extra"] = pd.Timestamp("2020-01-01")  # an arbitrary Python object
    torch.save(payload, tmp_path / "unsafe.pt")
    with pytest.raises(pickle.UnpicklingError):
        load_model(tmp_path / "unsafe.pt")


def test_bad_files_and_arguments_are_refused(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a model written by save_model"):
        load_model(tmp_path / "other.pt")
    model = Conv3DNet(volume_shape=SHAPE, embed_dim=8, channels=(4, 8, 8, 8, 8))
    with pytest.raises(ValueError, match=r"'task' must be one of \['age', 'ad'\]; None"):
        save_model(model, tmp_path / "m.pt")
    save_model(model, tmp_path / "m.pt", task="ad")
    with pytest.raises(ValueError, match="saved with its training cohort"):
        predict_nifti(tmp_path / "m.pt", [tmp_path / "x.nii.gz"])


def _save_nifti(volume: np.ndarray, affine: np.ndarray, path) -> str:
    nib.save(nib.Nifti1Image(np.asarray(volume, dtype=np.float32), affine), path)
    return str(path)


def test_predict_nifti_reproduces_the_prediction_on_the_cohort_volume(tmp_path):
    """Cohort volumes written as NIfTI (with the cohort's affine), prepared again and predicted,
    give the predictions on the cohort's own volumes. The synthetic cohort's intensities were
    normalised inside each brain's own mask, new images inside the MNI mask: a model that
    z-scores its input (the paper's) is blind to that difference."""
    cohort = tiny_cohort()
    model = _trained_like(SliceSetNet.paper("efficientnet_lite0", "coronal", volume_shape=SHAPE))
    path = save_model(model, tmp_path / "model.pt", cohort=cohort)
    rows = [0, 1, 2]
    files = [_save_nifti(cohort.volumes[i], cohort.affine, tmp_path / f"s{i}.nii.gz") for i in rows]
    tsv = tmp_path / "participants.tsv"
    pd.DataFrame(
        {"participant_id": ["a", "b", "c"], "path": [f"s{i}.nii.gz" for i in rows]}
    ).to_csv(tsv, sep="\t", index=False)
    found = predict_nifti(path, tsv)
    assert list(found.columns) == ["participant_id", "path", "predicted_age", "verdict", "reasons"]
    assert found["path"].tolist() == files
    with torch.no_grad():
        expected = model(torch.from_numpy(np.asarray(cohort.volumes[rows], np.float32))[:, None])
    np.testing.assert_allclose(found["predicted_age"], expected[:, 0].numpy(), rtol=0, atol=1e-3)


def test_predict_nifti_prepares_images_exactly_as_prepare_nifti(tmp_path):
    """A model trained on a prepare_nifti cohort predicts new files exactly as it predicts the
    cohort's prepared volumes (any model: here one that does not z-score its input)."""
    from slicemri_lite.data import prepare_nifti

    source = tiny_cohort()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(3):  # a brighter, raw-looking scan in RAS orientation at 2x3x2 mm
        img = nib.Nifti1Image(np.asarray(source.volumes[i], np.float32) * 700 * (1 + rng.random()),
                              source.affine)  # fmt: skip
        img = nib.as_closest_canonical(img)
        nib.save(img, tmp_path / f"raw{i}.nii.gz")
        rows.append({"participant_id": f"p{i}", "age": 50 + i, "path": f"raw{i}.nii.gz"})
    tsv = tmp_path / "participants.tsv"
    pd.DataFrame(rows).to_csv(tsv, sep="\t", index=False)
    cohort = prepare_nifti(tsv, tmp_path / "cohort", resolution=4, progress=False)
    model = _trained_like(
        SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE, embed_dim=16)
    )
    path = save_model(model, tmp_path / "model.pt", cohort=cohort)
    found = predict_nifti(load_model(path), [tmp_path / f"raw{i}.nii.gz" for i in range(3)])
    with torch.no_grad():
        expected = model(torch.from_numpy(np.asarray(cohort.volumes))[:, None])[:, 0].numpy()
    np.testing.assert_allclose(found["predicted_age"], expected, rtol=0, atol=1e-5)
    assert found["participant_id"].tolist() == ["raw0", "raw1", "raw2"]


def test_the_command_line_script_writes_the_predictions(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    cohort = tiny_cohort()
    model = _trained_like(SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE, embed_dim=8))
    path = save_model(model, tmp_path / "model.pt", cohort=cohort)
    files = [_save_nifti(cohort.volumes[i], cohort.affine, tmp_path / f"s{i}.nii") for i in (0, 1)]
    script = Path(__file__).resolve().parents[1] / "data_scripts" / "predict_nifti.py"
    spec = importlib.util.spec_from_file_location("predict_nifti_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(path), *files, "--out", str(tmp_path / "p.csv")]) == 0
    written = pd.read_csv(tmp_path / "p.csv")
    pd.testing.assert_frame_equal(written, predict_nifti(path, files), check_dtype=False)
    assert module.main([str(path), str(tmp_path / "missing.nii")]) == 1
    assert "file not found" in capsys.readouterr().err


def test_an_ad_model_predicts_probabilities_under_the_tasks_one_column(tmp_path, capsys):
    """predict_nifti and the command line name the prediction as PREDICTION_COLUMN does, and an
    AD model's logits become probabilities (the library's one sigmoid)."""
    import importlib.util
    from pathlib import Path

    from slicemri_lite._core.numeric import sigmoid
    from slicemri_lite.data import PREDICTION_COLUMN

    cohort = tiny_cohort()
    net = SliceSetNet("scratch", pretrained=False, volume_shape=SHAPE, embed_dim=8)
    model = _trained_like(net, mean=0.0, std=1.0)  # logits, as fit leaves an AD model
    path = save_model(model, tmp_path / "ad.pt", cohort=cohort, task="ad")
    files = [_save_nifti(cohort.volumes[i], cohort.affine, tmp_path / f"s{i}.nii") for i in (0, 1)]
    found = predict_nifti(path, files)
    assert list(found.columns) == [
        "participant_id",
        "path",
        PREDICTION_COLUMN["ad"],
        "verdict",
        "reasons",
    ]
    with torch.no_grad():
        logits = model(torch.from_numpy(np.asarray(cohort.volumes[[0, 1]], np.float32))[:, None])
    np.testing.assert_allclose(found["ad_probability"], sigmoid(logits[:, 0].numpy()), atol=1e-3)
    assert ((found["ad_probability"] > 0) & (found["ad_probability"] < 1)).all()
    np.testing.assert_allclose(sigmoid(np.array([-1e4, 0.0, 1e4], np.float32)), [0, 0.5, 1])
    script = Path(__file__).resolve().parents[1] / "data_scripts" / "predict_nifti.py"
    spec = importlib.util.spec_from_file_location("predict_nifti_script", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(path), *files, "--out", str(tmp_path / "p.csv")]) == 0
    assert "wrote 2 predictions (ad_probability)" in capsys.readouterr().out
    assert PREDICTION_COLUMN["ad"] in pd.read_csv(tmp_path / "p.csv").columns
