"""The environment helpers: giving freed heap memory back to the OS."""

from __future__ import annotations

import platform

import numpy as np

from slicemri_lite._core import env as env


def test_trim_heap_runs_where_the_c_library_has_it():
    blocks = [np.ones(50_000) for _ in range(200)]  # heap allocations, then freed
    del blocks
    ran = env.trim_heap()
    assert ran is (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
