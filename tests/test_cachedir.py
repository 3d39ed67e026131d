"""The cache command: lists cohorts and features, clears what is asked and nothing else."""

from __future__ import annotations

import json

from slicemri_lite.data import cache_table, clear_cache
from slicemri_lite.data._layout import main
from slicemri_lite.train import FEATURES_VERSION


def fake_cache(root):
    (root / "cohorts" / "synthetic-v3").mkdir(parents=True)
    (root / "cohorts" / "synthetic-v3" / "volumes.npy").write_bytes(b"x" * 2000)
    for cohort, version in (("synthetic-v3", FEATURES_VERSION), ("synthetic-v2", FEATURES_VERSION),
                            ("synthetic-v3", FEATURES_VERSION - 1)):  # fmt: skip
        folder = root / "features" / cohort / f"lite0-v{version}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "meta.json").write_text(json.dumps({"version": version}))


def test_list_marks_features_nothing_reads_as_stale(tmp_path):
    fake_cache(tmp_path)
    table = cache_table(tmp_path).set_index("name")
    assert table.loc["synthetic-v3", "kind"] == "cohorts" and table.loc["synthetic-v3", "mb"] > 0
    stale = table["stale"].to_dict()
    assert stale[f"synthetic-v3/lite0-v{FEATURES_VERSION}"] is False
    assert stale[f"synthetic-v2/lite0-v{FEATURES_VERSION}"]  # its cohort is gone
    assert stale[f"synthetic-v3/lite0-v{FEATURES_VERSION - 1}"]  # an older version wrote it


def test_clear_stale_keeps_what_is_in_use(tmp_path):
    fake_cache(tmp_path)
    removed = clear_cache("all", stale_only=True, data_dir=tmp_path)
    assert len(removed) == 2
    assert list(cache_table(tmp_path)["name"]) == [
        "synthetic-v3",
        f"synthetic-v3/lite0-v{FEATURES_VERSION}",
    ]
    assert clear_cache("features", data_dir=tmp_path) == [
        f"features/synthetic-v3/lite0-v{FEATURES_VERSION}"
    ]
    assert list(cache_table(tmp_path)["kind"]) == ["cohorts"]


def test_the_command_line_lists_the_data_directory(tmp_path, monkeypatch, capsys):
    fake_cache(tmp_path)
    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "synthetic-v3" in out and "total" in out
