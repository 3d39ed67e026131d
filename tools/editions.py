"""Student and instructor editions of the chapters, for teaching from the book.

    python tools/editions.py student      # -> _build/student/NN_*.ipynb
    python tools/editions.py instructor   # -> _build/instructor/NN_*.ipynb

Both editions clear every output, open with a header cell naming the edition, the
chapter's measured run time and the commit they were made from, fill in the run-time
line of the chapter's opening, and pin the Colab install cell to that commit.

The student edition replaces every cell tagged ``solution`` with a stub cell: a
comment saying which exercise to answer, the starter code the exercise gives (if
any), and ``raise NotImplementedError``. The split is by tag, never by position.
The instructor edition keeps the solutions.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import nbformat

TOOLS = Path(__file__).resolve().parent
ROOT = TOOLS.parent
sys.path.insert(0, str(TOOLS))
sys.path.insert(1, str(ROOT))

from pin_install import build_ref, pin_notebook  # noqa: E402
from timings import substitutions  # noqa: E402

EDITIONS = ("student", "instructor")
STUB_TAG = "exercise-stub"
_EXERCISE = re.compile(r"\*\*(\d+)\.\s*(.+?)\*\*")
_STARTER = re.compile(r"```python\n(.*?)```", re.DOTALL)
_SUBSTITUTION = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_TIMINGS_LINK = re.compile(r"\s*See \[Timings\]\([^)]*\)\.")


def exercise_of(markdown: str) -> tuple[str, str, str]:
    """``(number, title, starter code)`` of the last exercise stated in ``markdown``."""
    found = _EXERCISE.findall(markdown)
    if not found:
        raise ValueError(
            "a solution cell must follow the Markdown cell that states its exercise as "
            "'**N. Title.** ...'; the cell before it states none."
        )
    number, title = found[-1]
    tail = markdown[markdown.rfind(f"**{number}.") :]
    starters = _STARTER.findall(tail)
    return number, title.rstrip("."), starters[-1] if starters else ""


def stub_cell(number: str, title: str, starter: str) -> nbformat.NotebookNode:
    """The cell a student fills in: what to write, the starter code, and a raise."""
    lines = [
        f"# Exercise {number}: {title}" + ("" if title.endswith(("?", "!")) else "."),
        "# Write your answer here (the task is in the cell above); when it runs,",
        "# delete the last line.",
    ]
    lines += starter.rstrip("\n").splitlines()
    lines.append(f'raise NotImplementedError("exercise {number}: your code here")')
    return nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [STUB_TAG]})


def header_cell(edition: str, run_time: str, ref: str) -> nbformat.NotebookNode:
    """The first cell of an edition: which edition, how long it runs, which commit."""
    what = (
        "exercise solutions are replaced by cells for your answers, which raise "
        "`NotImplementedError` until you write them"
        if edition == "student"
        else "exercise solutions are included, in the cells tagged `solution`"
    )
    text = (
        f"*{edition.capitalize()} edition* of the slicemri-lite book, made from commit "
        f"`{ref}`: {what}.\n\n**Run time:** {run_time}"
    )
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": [f"{edition}-header"]})


def make_edition(
    nb: nbformat.NotebookNode, edition: str, subs: dict[str, str], ref: str, number: str
) -> nbformat.NotebookNode:
    """A copy of chapter ``nb`` as the ``edition`` (``"student"`` or ``"instructor"``)."""
    from slicemri_lite._core.validation import check_choice

    check_choice("edition", edition, EDITIONS)
    nb = nbformat.from_dict(nb)
    cells = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        if cell.cell_type == "markdown":
            cell.source = _SUBSTITUTION.sub(lambda m: subs.get(m[1], m[0]), cell.source)
        if edition == "student" and "solution" in cell.metadata.get("tags", []):
            stated = [c for c in cells if c.cell_type == "markdown"]
            cell = stub_cell(*exercise_of(stated[-1].source if stated else ""))
        cells.append(cell)
    nb.cells = [header_cell(edition, subs[f"run_time_{number}"], ref), *cells]
    pin_notebook(nb, ref)
    return nb


def write_editions(edition: str, out_dir: Path, book: Path = ROOT / "book") -> list[Path]:
    """Write the ``edition`` of every chapter into ``out_dir``; return the paths."""
    from slicemri_lite._core.atomic import write_text_atomic

    # The run-time sentences link to the Timings page, which a lone notebook lacks.
    subs = {k: _TIMINGS_LINK.sub("", v) for k, v in substitutions().items()}
    ref = build_ref()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(book.glob("[0-9][0-9]_*.ipynb")):
        nb = make_edition(nbformat.read(path, as_version=4), edition, subs, ref, path.name[:2])
        nbformat.validate(nb)
        written.append(write_text_atomic(out_dir / path.name, nbformat.writes(nb)))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("edition", choices=EDITIONS)
    parser.add_argument("--out", type=Path, help="folder (default: _build/<edition>)")
    args = parser.parse_args(argv)
    out = args.out or ROOT / "_build" / args.edition
    for path in write_editions(args.edition, out):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
