"""Provenance of kept runs: which generator's data a run used."""

from __future__ import annotations

import json
import time

import pandas as pd

from slicemri_lite.data.synthetic import GENERATOR_VERSION
from slicemri_lite.experiments import load_run
from slicemri_lite.experiments._provenance import provenance_record, read_provenance


def _keep(folder, record: dict, data: str = "synthetic") -> None:
    folder.mkdir()
    (folder / "provenance.json").write_text(json.dumps(record))
    pd.DataFrame({"model": ["mean"], "data": [data], "mae": [1.0]}).to_csv(
        folder / "results.csv", index=False
    )


def test_a_new_record_names_the_generator_version():
    record = provenance_record("brain-age", "cpu", ["brain-age"], time.time(), True)
    assert record["generator"] == GENERATOR_VERSION


def test_a_record_from_before_the_field_was_made_on_version_3(tmp_path):
    old = {"command": "python -m slicemri_lite.experiments brain-age --profile cpu",
           "started_utc": "2026-11-28T17:45:34+00:00", "machine": "x86_64",
           "wall_seconds": 1.0, "status": "complete"}  # fmt: skip
    _keep(tmp_path / "old", old)
    assert read_provenance(tmp_path / "old")["generator"] == 3
    assert "synthetic data of generator v3" in load_run(tmp_path / "old").describe()
    _keep(tmp_path / "new", {**old, "generator": GENERATOR_VERSION})
    assert f"generator v{GENERATOR_VERSION}" in load_run(tmp_path / "new").describe()
    _keep(tmp_path / "oasis", old, data="oasis")
    assert "generator" not in load_run(tmp_path / "oasis").describe()
