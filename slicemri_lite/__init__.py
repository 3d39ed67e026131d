"""slicemri-lite: position-encoded 2D slice models for 3D brain MRI.

One package per layer, each with a small public face (its ``__all__``); data flows
one way::

    data -> models -> train -> experiments -> analysis

The faces are imported on first use (``slicemri_lite.data``, ``slicemri_lite.models``,
...), so ``import slicemri_lite`` stays quick.
"""

from __future__ import annotations

import importlib

from slicemri_lite._core.env import about
from slicemri_lite._core.version import __version__

# The layers' faces, imported on first attribute access (``slicemri_lite.models``).
FACES = ("data", "models", "train", "experiments", "analysis")

__all__ = ["__version__", "about", *FACES]


def __getattr__(name: str):
    if name in FACES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'slicemri_lite' has no attribute {name!r}")
