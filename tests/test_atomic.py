"""Atomic writes: the old content survives a failed write, and no temporary file is left."""

from __future__ import annotations

import pandas as pd
import pytest

from slicemri_lite._core.atomic import atomic_path, write_csv_atomic, write_json_atomic
from slicemri_lite._core.validation import check_choice


def test_a_failed_csv_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.csv"
    write_csv_atomic(pd.DataFrame({"a": [1]}), path)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_csv", broken)
    with pytest.raises(OSError, match="disk full"):
        write_csv_atomic(pd.DataFrame({"a": [2]}), path)
    monkeypatch.undo()
    assert pd.read_csv(path)["a"].tolist() == [1]
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_folder_is_replaced_whole_or_not_at_all(tmp_path):
    target = tmp_path / "cache"
    with atomic_path(target, directory=True) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(target, directory=True) as tmp:
            (tmp / "a.txt").write_text("second")
            raise KeyboardInterrupt
    assert (target / "a.txt").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]
    with atomic_path(target, directory=True) as tmp:
        (tmp / "b.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["cache"]


def test_overwrite_false_refuses_before_writing(tmp_path):
    write_json_atomic(tmp_path / "x.json", {"a": 1})
    with pytest.raises(FileExistsError, match="overwrite=True"):
        with atomic_path(tmp_path / "x.json", overwrite=False):
            pass


def test_choice_errors_name_the_choices_and_the_value():
    assert check_choice("axis", "axial", ["sagittal", "axial"]) == "axial"
    with pytest.raises(ValueError, match=r"'axis' must be one of \['sagittal'\]; 'x' was"):
        check_choice("axis", "x", ("sagittal",))
