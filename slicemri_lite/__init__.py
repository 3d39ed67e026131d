"""slicemri-lite: position-encoded 2D slice models for 3D brain MRI.

The submodules are imported on first use (``slicemri_lite.data``,
``slicemri_lite.models``, ...), so ``import slicemri_lite`` stays quick.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Public modules, imported on first attribute access (``slicemri_lite.models``).
_SUBMODULES = (
    "data",
    "models",
    "train",
    "profiles",
    "viz",
    "geometry",
    "env",
    "bench",
    "metrics",
    "experiments",
)

__all__ = ["__version__", "about", *_SUBMODULES]


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "about":
        from slicemri_lite.env import about

        return about
    raise AttributeError(f"module 'slicemri_lite' has no attribute {name!r}")
