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


def test_a_cohort_an_older_generator_made_is_stale_and_so_are_its_features(tmp_path):
    from slicemri_lite.data.synthetic._generator import GENERATOR_VERSION

    for version in (GENERATOR_VERSION - 1, GENERATOR_VERSION):
        cohort = tmp_path / "cohorts" / f"synthetic-n2-v{version}"
        cohort.mkdir(parents=True)
        meta = {"source": "synthetic", "generator": {"version": version}}
        (cohort / "meta.json").write_text(json.dumps(meta))
        features = tmp_path / "features" / cohort.name / "lite0"
        features.mkdir(parents=True)
        (features / "meta.json").write_text(json.dumps({"version": FEATURES_VERSION}))
    (tmp_path / "cohorts" / "mine").mkdir()  # a reader's own cohort: never judged stale
    (tmp_path / "cohorts" / "mine" / "meta.json").write_text(json.dumps({"source": "nifti"}))
    old, new = f"synthetic-n2-v{GENERATOR_VERSION - 1}", f"synthetic-n2-v{GENERATOR_VERSION}"
    stale = cache_table(tmp_path).set_index("name")["stale"].to_dict()
    assert stale == {"mine": False, old: True, new: False,
                     f"{old}/lite0": True, f"{new}/lite0": False}  # fmt: skip
    removed = clear_cache("all", stale_only=True, data_dir=tmp_path)
    assert sorted(removed) == [f"cohorts/{old}", f"features/{old}/lite0"]
    assert (tmp_path / "cohorts" / new).is_dir() and (tmp_path / "cohorts" / "mine").is_dir()


def test_the_command_line_lists_the_data_directory(tmp_path, monkeypatch, capsys):
    fake_cache(tmp_path)
    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path))
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "synthetic-v3" in out and "total" in out
