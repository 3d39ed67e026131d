"""Where the code runs: versions, device and data directory, printed by every chapter."""

from __future__ import annotations

import os
import platform
from pathlib import Path

__all__ = [
    "about",
    "autocast",
    "data_dir",
    "default_device",
    "package_versions",
    "resolve_device",
    "scratch_dir",
    "trim_heap",
]

DATA_DIR_ENV = "SLICEMRI_DATA"


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Return the data directory: ``path`` if given, else ``$SLICEMRI_DATA``, else ``~/slicemri_data``.

    The directory is created if it does not exist.
    """
    if path is None:
        path = os.environ.get(DATA_DIR_ENV) or Path.home() / "slicemri_data"
    path = Path(path).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def scratch_dir(name: str) -> Path:
    """An empty folder ``<data dir>/scratch/<name>`` for files a notebook writes to show
    something (a NIfTI to reopen, a small prepared cohort).

    It is emptied on every call, so running a chapter again replaces its files instead of
    leaving one more temporary folder behind each time.
    """
    import shutil

    if not name or Path(name).name != name or name in (".", ".."):
        raise ValueError(f"'name' must be a plain folder name; {name!r} was provided.")
    folder = data_dir() / "scratch" / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def trim_heap() -> bool:
    """Give memory the C heap holds but no longer uses back to the OS.

    Large numpy and torch buffers freed by Python can stay in the process's resident set
    (glibc's ``malloc`` keeps freed heap pages); ``malloc_trim`` returns them. Returns
    whether it ran: ``False``, doing nothing, where the C library has no
    ``malloc_trim`` (macOS, Windows, musl).
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        malloc_trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    malloc_trim(0)
    return True


def default_device() -> str:
    """``"cuda"`` when a CUDA GPU is usable, else ``"cpu"``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device=None):
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    import torch

    return torch.device(device or default_device())


def autocast(device):
    """Mixed precision on CUDA (bf16, or fp16 where bf16 is unsupported); a no-op elsewhere."""
    import contextlib

    import torch

    if torch.device(device).type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def package_versions() -> dict[str, str]:
    """Versions of the packages whose behaviour changes results."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["slicemri-lite", "torch", "torchvision", "timm", "numpy", "nibabel", "nilearn"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def about() -> str:
    """One printable paragraph: versions, device (with the GPU's name) and CPU threads."""
    import torch

    device = default_device()
    if device == "cuda":
        device = f"cuda ({torch.cuda.get_device_name(0)})"
    versions = ", ".join(f"{k} {v}" for k, v in package_versions().items())
    return (
        f"{versions}\n"
        f"device: {device}; torch CPU threads: {torch.get_num_threads()}; "
        f"data dir: {data_dir()}"
    )
