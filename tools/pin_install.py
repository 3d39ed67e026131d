"""Pin the Colab install cell of built notebooks to the commit the book was built from.

The chapters in ``book/`` install ``REF = "main"`` on Colab. The notebooks a reader
downloads from the built book (``_build/html/_sources/``) and the student and
instructor editions should install the library the pages were built from instead:

    python tools/pin_install.py _build/html           # every notebook under it
    python tools/pin_install.py --ref v0.3.0 out.ipynb

The ref is ``--ref``, else ``$SLICEMRI_BUILD_REF``, else ``git rev-parse HEAD`` of
this checkout (no network needed). Outside a git checkout, without either, it fails.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
REF_ENV = "SLICEMRI_BUILD_REF"
_REF_LINE = re.compile(r'^REF = "[^"\n]*"$', re.MULTILINE)
_VALID_REF = re.compile(r"[0-9A-Za-z][0-9A-Za-z._/-]*")


def build_ref(root: Path = ROOT) -> str:
    """The ref to pin: ``$SLICEMRI_BUILD_REF``, else the checkout's commit."""
    ref = os.environ.get(REF_ENV)
    if not ref:
        try:
            ref = subprocess.run(
                ["git", "rev-parse", "HEAD"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError) as err:
            raise RuntimeError(
                f"cannot tell which commit the book is built from: {root} is not a git "
                f"checkout ({err}); set {REF_ENV} to a tag or commit."
            ) from err
    if not _VALID_REF.fullmatch(ref):
        raise ValueError(f"'ref' must be a git tag, branch or commit; {ref!r} was provided.")
    return ref


def pin_source(source: str, ref: str) -> str:
    """The install cell's ``source`` with its ``REF = "..."`` line set to ``ref``."""
    if len(_REF_LINE.findall(source)) != 1:
        raise ValueError('the install cell must hold exactly one line REF = "...".')
    return _REF_LINE.sub(f'REF = "{ref}"', source)


def pin_notebook(nb: nbformat.NotebookNode, ref: str) -> int:
    """Pin every Colab install cell of ``nb`` in place; return how many there were."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "google.colab" in c.source]
    for cell in cells:
        cell.source = pin_source(cell.source, ref)
    return len(cells)


def pin_paths(paths: list[Path], ref: str) -> list[Path]:
    """Pin the notebooks at ``paths`` (folders are searched); return those changed."""
    from slicemri_lite._core.atomic import write_text_atomic

    notebooks = []
    for path in paths:
        notebooks += sorted(path.rglob("*.ipynb")) if path.is_dir() else [path]
    changed = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        if pin_notebook(nb, ref):
            write_text_atomic(path, nbformat.writes(nb))
            changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="notebooks or folders")
    parser.add_argument("--ref", help=f"tag or commit (default: ${REF_ENV} or git HEAD)")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    ref = args.ref or build_ref()
    changed = pin_paths(args.paths, ref)
    print(f"pinned the install cell of {len(changed)} notebook(s) to {ref}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
