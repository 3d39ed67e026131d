"""The README's "your own data" example runs as written and learns.

A small synthetic cohort is written out as NIfTI files with a participants TSV, prepared
by the README's own ``prepare_nifti.py`` command line, and the README's Python block runs
on it with its UPPERCASE parameters set here (fewer participants than the README's
measurement; the same code). Then the README's ``predict_nifti.py`` command runs on new scans.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from notebook_tools import ROOT

README = ROOT / "README.md"
N_PARTICIPANTS = 60  # 42 train, 9 val, 9 test
N_NEW = 3
PARAMETERS = {"COHORT": "my_cohort", "NEW_SCANS": "new_scans.tsv", "EPOCHS": 30}


def blocks(language: str) -> list[str]:
    """The README's fenced code blocks in ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", README.read_text(), re.S | re.M)


def with_parameters(code: str, values: dict) -> str:
    """``code`` with each ``NAME = ...`` line at its top given this test's value."""
    for name, value in values.items():
        code, n = re.subn(rf"^{name} = .*$", f"{name} = {value!r}", code, count=1, flags=re.M)
        assert n == 1, f"the README's example has no {name} parameter"
    return code


def data_script_commands() -> list[list[str]]:
    """The README's ``data_scripts/...`` command lines, run with this test's Python."""
    lines = [line for block in blocks("bash") for line in block.splitlines()]
    return [[sys.executable, *shlex.split(line.split("#")[0])[1:]]
            for line in lines if line.startswith(".venv/bin/python data_scripts/")]  # fmt: skip


def write_scans(folder, n: int, n_new: int) -> pd.DataFrame:
    """Synthetic participants as NIfTI files (scaled as raw scans are) in ``folder``:
    ``participants.tsv`` with the first ``n``, ``new_scans.tsv`` with the rest; returns all."""
    from slicemri_lite.data import synthetic_cohort

    cohort = synthetic_cohort(n + n_new, seed=0, resolution=4, progress=False)
    table = cohort.table.reset_index(drop=True)[["participant_id", "age", "sex", "diagnosis"]]
    table["path"] = [f"scans/{pid}.nii.gz" for pid in table["participant_id"]]
    (folder / "scans").mkdir()
    for volume, path in zip(cohort.volumes, table["path"], strict=True):
        image = nib.Nifti1Image(np.asarray(volume, np.float32) * 600, cohort.affine)
        nib.save(image, folder / path)
    table.iloc[:n].to_csv(folder / "participants.tsv", sep="\t", index=False)
    table.iloc[n:][["participant_id", "path"]].to_csv(
        folder / "new_scans.tsv", sep="\t", index=False
    )
    return table


def run_command(command: list[str], cwd) -> str:
    """Run a README command line in ``cwd`` (its script from this checkout); its stdout."""
    command = [command[0], str(ROOT / command[1]), *command[2:]]
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{shlex.join(command[1:])} failed:\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_readme_uses_only_the_library_faces():
    (example,) = blocks("python")
    imports = re.findall(r"^from (slicemri_lite\S*) import", example, re.M)
    assert imports and all(m.count(".") == 1 and "._" not in m for m in imports), imports
    prepare, predict = data_script_commands()
    assert (
        prepare[1] == "data_scripts/prepare_nifti.py"
        and predict[1] == "data_scripts/predict_nifti.py"
    )


@pytest.mark.slow
def test_the_readme_example_learns_and_predicts_new_scans(tmp_path, monkeypatch, capsys):
    from slicemri_lite.data import PREDICTION_COLUMN, load_cohort
    from slicemri_lite.train import load_model, predict

    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path / "cache"))
    table = write_scans(tmp_path, N_PARTICIPANTS, N_NEW)
    prepare, predict_script = data_script_commands()
    run_command(prepare, tmp_path)
    assert len(load_cohort(tmp_path / "my_cohort")) == N_PARTICIPANTS

    (example,) = blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(with_parameters(example, PARAMETERS), str(README), "exec"), {})
    printed = capsys.readouterr().out
    assert "recipe 'book': adamw, lr 0.001" in printed  # frozen features: the book's recipe

    # it learned: not one age for everyone, and better than the training mean
    cohort = load_cohort(tmp_path / "my_cohort")
    model = load_model(tmp_path / "brain_age.pt")
    truth = cohort.targets("age", cohort.indices("test"))
    predicted = predict(model, cohort, "test")
    assert predicted.std() > 0.25 * truth.std(), (predicted, truth)
    mae = np.abs(predicted - truth).mean()
    mean_mae = np.abs(cohort.targets("age", cohort.indices("train")).mean() - truth).mean()
    assert mae < mean_mae, (mae, mean_mae)
    shown = re.search(r"test MAE ([\d.]+) years \(training mean: ([\d.]+)\)", printed)
    assert shown and float(shown[1]) == pytest.approx(mae, abs=0.01)
    assert float(shown[2]) == pytest.approx(mean_mae, abs=0.01)

    # the command line predicts the new scans as the Python call did
    run_command(predict_script, tmp_path)
    written = pd.read_csv(tmp_path / "predictions.csv", dtype={"participant_id": str})
    new = table.iloc[N_PARTICIPANTS:]
    report = [PREDICTION_COLUMN["age"], "verdict", "reasons"]
    assert list(written.columns[:5]) == ["participant_id", "path", *report]
    assert written["verdict"].isin(["ok", "warn", "refuse"]).all()
    assert written["participant_id"].tolist() == new["participant_id"].tolist()
    ages = written[PREDICTION_COLUMN["age"]]
    assert np.isfinite(ages).all() and ages.between(0, 120).all()
    rows = re.finditer(r"(sub-\d+)\s+([\d.]+)\s+(ok|warn|refuse)\b", printed)
    shown = {m[1]: float(m[2]) for m in rows}
    assert shown == pytest.approx(dict(zip(written["participant_id"], ages, strict=True)), abs=1e-3)
