"""The cohort cache: exact round trip, atomic writes, refusal of damaged or half-written folders."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from data_fixtures import small_cohort

from slicemri_lite.data import CohortCacheError, load_cohort
from slicemri_lite.data import _cohort as cohort_module


def test_round_trip_is_exact(tmp_path):
    cohort = small_cohort()
    cohort.save(tmp_path / "c")
    loaded = load_cohort(tmp_path / "c")
    assert isinstance(loaded.volumes, np.memmap) and not loaded.volumes.flags.writeable
    assert loaded.volumes.dtype == cohort.volumes.dtype
    np.testing.assert_array_equal(loaded.volumes, cohort.volumes)
    pd.testing.assert_frame_equal(loaded.table, cohort.table, check_dtype=False)
    np.testing.assert_array_equal(loaded.affine, cohort.affine)
    assert sorted(loaded.effects) == ["ad", "age"]
    np.testing.assert_array_equal(loaded.effects["age"], cohort.effects["age"])
    assert loaded.meta["generator"] == cohort.meta["generator"]
    in_memory = load_cohort(tmp_path / "c", mmap=False)
    assert not isinstance(in_memory.volumes, np.memmap)


def test_existing_folder_is_kept_unless_overwrite(tmp_path):
    cohort = small_cohort()
    cohort.save(tmp_path / "c")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        cohort.save(tmp_path / "c")
    cohort.subset([0, 1]).save(tmp_path / "c", overwrite=True)
    assert len(load_cohort(tmp_path / "c")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary folders left


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_dump(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(cohort_module.json, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        small_cohort().save(tmp_path / "c")
    assert list(tmp_path.iterdir()) == []


def test_half_written_folder_is_refused(tmp_path):
    small_cohort().save(tmp_path / "c")
    (tmp_path / "c" / "meta.json").unlink()  # as if the write stopped before its last file
    with pytest.raises(CohortCacheError, match="meta.json is missing"):
        load_cohort(tmp_path / "c")


@pytest.mark.parametrize("damage", ["flip_byte", "truncate", "delete_effect", "bad_json"])
def test_damaged_cache_is_refused_naming_the_file(tmp_path, damage):
    folder = small_cohort().save(tmp_path / "c")
    volumes = folder / "volumes.npy"
    if damage == "flip_byte":
        data = bytearray(volumes.read_bytes())
        data[len(data) // 2] ^= 0xFF
        volumes.write_bytes(bytes(data))
        expected = "checksum of volumes.npy"
    elif damage == "truncate":
        volumes.write_bytes(volumes.read_bytes()[:1000])
        expected = "checksum of volumes.npy"
    elif damage == "delete_effect":
        (folder / "effect_age.npy").unlink()
        expected = "effect_age.npy is missing"
    else:
        (folder / "meta.json").write_text("{not json")
        expected = "meta.json is damaged"
    with pytest.raises(CohortCacheError, match=expected):
        load_cohort(folder)


def test_newer_format_is_refused(tmp_path):
    folder = small_cohort().save(tmp_path / "c")
    meta = json.loads((folder / "meta.json").read_text())
    meta["format_version"] = 99
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CohortCacheError, match="format version 99"):
        load_cohort(folder)


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(CohortCacheError, match="does not exist"):
        load_cohort(tmp_path / "nothing")


def test_a_subset_of_a_cached_cohort_reads_its_volumes_only_when_indexed(tmp_path):
    from slicemri_lite.data import RowView

    cohort = small_cohort()
    cohort.save(tmp_path / "c")
    loaded = load_cohort(tmp_path / "c")
    rows = np.array([7, 2, 30, 11])
    sub = loaded.subset(rows)
    assert isinstance(sub.volumes, RowView)  # nothing read yet
    assert sub.volumes.shape == (4, *cohort.shape) and len(sub) == 4
    assert sub.volumes.dtype == cohort.volumes.dtype and sub.volumes.ndim == 4
    expected = cohort.volumes[rows]
    np.testing.assert_array_equal(np.asarray(sub.volumes), expected)
    np.testing.assert_array_equal(sub.volumes[1], expected[1])
    np.testing.assert_array_equal(sub.volumes[1:3], expected[1:3])
    np.testing.assert_array_equal(sub.volumes[[3, 0]], expected[[3, 0]])
    np.testing.assert_array_equal(sub.volumes[2, :, 5], expected[2, :, 5])
    np.testing.assert_array_equal(sub.volumes[[0, 1], 3], expected[[0, 1], 3])
    again = sub.subset([3, 1])  # a subset of a subset is still a view of the file
    assert isinstance(again.volumes, RowView)
    np.testing.assert_array_equal(np.asarray(again.volumes), cohort.volumes[[11, 2]])
    assert (
        again.table["participant_id"].tolist()
        == cohort.table["participant_id"].iloc[[11, 2]].tolist()
    )
    assert sub.volumes.astype(np.float32).dtype == np.float32
    again.save(tmp_path / "again")  # and it saves like any cohort
    np.testing.assert_array_equal(load_cohort(tmp_path / "again").volumes, cohort.volumes[[11, 2]])


def test_a_subset_of_an_in_memory_cohort_is_a_copy():
    cohort = small_cohort()
    sub = cohort.subset([0, 1])
    assert isinstance(sub.volumes, np.ndarray)
    np.testing.assert_array_equal(sub.volumes, cohort.volumes[:2])


def test_rows_of_a_cached_cohort_are_read_without_mapping_the_file(tmp_path):
    import re

    from slicemri_lite.data import read_rows

    cohort = small_cohort()
    cohort.save(tmp_path / "c")
    loaded = load_cohort(tmp_path / "c")
    rows = [5, 0, 39, 5]
    np.testing.assert_array_equal(read_rows(loaded.volumes, rows), cohort.volumes[rows])
    sub = loaded.subset([3, 4, 9])
    np.testing.assert_array_equal(read_rows(sub.volumes, [2, 0]), cohort.volumes[[9, 3]])
    np.testing.assert_array_equal(read_rows(loaded.volumes[2:6], [1]), cohort.volumes[[3]])

    def mapped_kb() -> int:  # resident pages of the volumes file in this process
        name = str(tmp_path / "c" / "volumes.npy")
        text = open("/proc/self/smaps").read()
        total = 0
        for header, body in re.findall(r"^(\S+-\S+ .*)\n((?:[A-Z][^\n]*\n)+)", text, re.M):
            if header.endswith(name):
                total += int(re.search(r"^Rss:\s+(\d+)", body, re.M).group(1))
        return total

    before = mapped_kb()
    np.asarray(sub.volumes)
    read_rows(loaded.volumes, range(len(loaded)))
    assert mapped_kb() - before < 64  # read, not mapped: the file's pages stay out of RSS
    np.array(loaded.volumes)  # reading through the mapping itself does map them
    assert mapped_kb() - before > 1024
