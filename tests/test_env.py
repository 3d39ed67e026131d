"""The environment helpers: giving freed heap memory back to the OS."""

from __future__ import annotations

import os
import platform

import pytest

from slicemri_lite._core import env as env

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_trim_heap_runs_where_the_c_library_has_it():
    assert env.trim_heap() is GLIBC


@pytest.mark.skipif(not GLIBC, reason="malloc_trim is glibc's")
def test_trim_heap_gives_freed_heap_memory_back():
    # 25,000 blocks of 4 kB (~100 MB): above pymalloc's 512 bytes and below malloc's mmap
    # threshold, so they live in malloc's heap; written, so their pages are resident
    blocks = [bytes([i % 256]) * 4000 for i in range(25_000)]
    pin = bytes([1]) * 4000  # allocated last: free() cannot give the heap back by itself
    del blocks
    held = _rss_bytes()
    assert env.trim_heap()
    released = held - _rss_bytes()
    assert released > 50 * 2**20, f"trim_heap released {released / 2**20:.1f} MiB of ~100 MiB"
    assert len(pin) == 4000


def test_a_scratch_folder_is_emptied_on_every_call(tmp_path, monkeypatch):
    monkeypatch.setenv("SLICEMRI_DATA", str(tmp_path))
    first = env.scratch_dir("chapter01")
    assert first == tmp_path / "scratch" / "chapter01" and list(first.iterdir()) == []
    (first / "template.nii.gz").write_bytes(b"x")
    again = env.scratch_dir("chapter01")  # a second run replaces, never accumulates
    assert again == first and list(again.iterdir()) == []
    for bad in ("", "..", "a/b"):
        with pytest.raises(ValueError, match="plain folder name"):
            env.scratch_dir(bad)
