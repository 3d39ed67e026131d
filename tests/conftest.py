"""Shared fixtures: chapters executed once per session at PROFILE="smoke"."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from notebook_tools import EXECUTED, ROOT, execute_notebook  # noqa: E402

# Smoke cohorts are cached here so chapters and tests share them; nothing is downloaded.
os.environ.setdefault("SLICEMRI_DATA", str(ROOT / "_build" / "test-data"))
# An empty torch hub cache: no test finds (or downloads) torchvision weights, on any machine,
# so every run tests the same offline path.
os.environ["TORCH_HOME"] = str(ROOT / "_build" / "test-torch-home")

_executed: dict[str, object] = {}


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Unit tests use tiny models that gain nothing from threads (which spin-wait on a busy machine).

    Chapters run in their own kernels and keep torch's default.
    """
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def executed_chapter():
    """Return a function that executes a chapter (once per session) and returns the notebook."""

    def run(stem: str):
        if stem not in _executed:
            path = ROOT / "book" / f"{stem}.ipynb"
            _executed[stem] = execute_notebook(path, EXECUTED / "book", {"PROFILE": "smoke"})
        return _executed[stem]

    return run
