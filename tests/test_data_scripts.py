"""The data scripts: what they write loads as a cohort, and bad input exits non-zero with the reason."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from slicemri_lite.data import load_cohort, synthetic_cohort

SCRIPTS = Path(__file__).resolve().parents[1] / "data_scripts"


def script(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_make_synthetic_writes_the_same_cohort_as_the_library(tmp_path, capsys):
    script("make_synthetic").main(
        ["--n", "3", "--resolution", "4", "--seed", "7", "--out", str(tmp_path / "c")]
    )
    written = load_cohort(tmp_path / "c")
    expected = synthetic_cohort(3, seed=7, resolution=4)
    np.testing.assert_array_equal(written.volumes, expected.volumes)
    assert "written to" in capsys.readouterr().out


@pytest.mark.slow
def test_make_synthetic_profile_fills_the_cache_the_chapters_open(tmp_path, monkeypatch, capsys):
    from slicemri_lite.data import cohort_cache_path, open_cohort
    from slicemri_lite.experiments import get_profile, grid_configs
    from slicemri_lite.train import _features as features

    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "no-torch-weights"))
    features.clear_memory_cache()
    script("make_synthetic").main(["--profile", "smoke"])
    out = capsys.readouterr().out
    assert "profile smoke" in out and "resnet18-imagenet-sagittal skipped" in out
    smoke = get_profile("smoke")
    brain_age = cohort_cache_path("synthetic", smoke.n_subjects, 4, 0, data_dir=tmp_path)
    assert brain_age.is_dir()  # the chapters' cohort (other grids add their own)
    cached = sorted((tmp_path / "cohorts").iterdir())
    # every frozen feature array the smoke brain-age grid reads is on disk, except offline
    frozen = {c.feature_spec(0).name for c in grid_configs("smoke") if c.needs_features}
    stored = {p.name for p in (tmp_path / "features" / brain_age.name).iterdir()}
    assert frozen - {"resnet18-imagenet-sagittal"} <= stored
    features.clear_memory_cache()
    opened = open_cohort("synthetic", n_subjects=smoke.n_subjects, resolution=smoke.resolution)
    assert len(opened) == smoke.n_subjects
    assert sorted((tmp_path / "cohorts").iterdir()) == cached  # opened, not built again


def test_make_synthetic_needs_a_profile_or_n_and_out(capsys):
    with pytest.raises(SystemExit):
        script("make_synthetic").main(["--n", "3"])
    assert "give --profile, or both --n and --out" in capsys.readouterr().err


def test_prepare_nifti_script_reports_bad_rows_and_fails(tmp_path, capsys):
    tsv = tmp_path / "participants.tsv"
    pd.DataFrame([{"participant_id": "a", "age": 40, "path": "missing.nii.gz"}]).to_csv(
        tsv, sep="\t", index=False
    )
    code = script("prepare_nifti").main(
        [str(tsv), "--out", str(tmp_path / "c"), "--resolution", "4"]
    )
    assert code == 1
    assert "row 2 (a, missing.nii.gz): file not found" in capsys.readouterr().err
    assert not (tmp_path / "c").exists()
