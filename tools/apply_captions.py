"""Write the figures' captions and alt text into the notebooks' cell metadata.

    python tools/apply_captions.py            # update book/*.ipynb in place
    python tools/apply_captions.py --check    # status 1 if a notebook is out of date
    python tools/apply_captions.py --book DIR --tsv FILE

Each row of ``tools/figure_captions.tsv`` names a code cell that draws one or more
figures. myst-nb reads the cell's metadata when it renders the page::

    "mystnb": {"figure": {"caption": ..., "name": ...}, "image": {"alt": ...}}

and wraps every image output of the cell in a ``<figure>`` with that caption (MyST
markup allowed) and that alt text. A cell that draws several figures repeats its
caption under each of them, so its caption speaks of all of them, and it gets no
``name``: one target name on several figures is a duplicate label, which fails a
strict (``-W``) build.

Other keys of the cell's metadata are kept; running the script twice changes nothing.
A cell id that is not in its notebook fails the run, with the ids it could not find.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ["notebook", "cell_id", "caption", "alt", "figures", "name"]


@dataclass(frozen=True)
class Caption:
    """One row of the table: a figure cell and what its figures should carry."""

    notebook: str
    cell_id: str
    caption: str
    alt: str
    figures: int
    name: str

    def metadata(self) -> dict:
        """The ``mystnb`` cell metadata for this row (keys sorted, as nbformat writes)."""
        figure = {"caption": self.caption}
        if self.name:
            figure["name"] = self.name
        return {"figure": figure, "image": {"alt": self.alt}}


def read_captions(tsv: Path) -> list[Caption]:
    """The rows of ``tsv``; a wrong header, an empty field or a clash raises ValueError."""
    with tsv.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{tsv}: header must be {COLUMNS}, not {reader.fieldnames}")
        rows = [_row(tsv, line, fields) for line, fields in enumerate(reader, start=2)]
    _no_clashes(tsv, rows)
    return rows


def _row(tsv: Path, line: int, fields: dict) -> Caption:
    """One parsed, checked row."""
    if None in fields or any(fields[c] is None for c in COLUMNS):
        raise ValueError(f"{tsv}:{line}: expected {len(COLUMNS)} tab-separated fields")
    values = {c: fields[c].strip() for c in COLUMNS}
    for column in ("notebook", "cell_id", "caption", "alt", "figures"):
        if not values[column]:
            raise ValueError(f"{tsv}:{line}: empty {column}")
    if not values["figures"].isdigit() or int(values["figures"]) < 1:
        raise ValueError(f"{tsv}:{line}: figures must be a count, not {values['figures']!r}")
    figures = int(values.pop("figures"))
    if figures > 1 and values["name"]:
        raise ValueError(f"{tsv}:{line}: a cell with {figures} figures cannot have a name")
    return Caption(figures=figures, **values)


def _no_clashes(tsv: Path, rows: list[Caption]) -> None:
    """Each cell appears once, and each figure name once in the whole book."""
    cells = [(r.notebook, r.cell_id) for r in rows]
    names = [r.name for r in rows if r.name]
    for what, keys in (("cell", cells), ("figure name", names)):
        repeated = sorted({str(k) for k in keys if keys.count(k) > 1})
        if repeated:
            raise ValueError(f"{tsv}: {what} listed twice: {', '.join(repeated)}")


def apply_to_notebook(path: Path, rows: list[Caption], write: bool = True) -> bool:
    """Set the rows' metadata in the notebook at ``path``; True when it changed.

    Raises KeyError naming every cell id of ``rows`` that the notebook lacks.
    """
    nb = json.loads(path.read_text(encoding="utf-8"))
    cells = {cell.get("id"): cell for cell in nb["cells"]}
    missing = [r.cell_id for r in rows if r.cell_id not in cells]
    if missing:
        raise KeyError(f"{path}: no cell with id {', '.join(missing)}")
    changed = False
    for row in rows:
        changed |= _set_metadata(cells[row.cell_id], row)
    if changed and write:
        with path.open("w", encoding="utf-8") as f:
            json.dump(nb, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return changed


def _set_metadata(cell: dict, row: Caption) -> bool:
    """Merge the row's ``mystnb`` options into one cell's metadata; True when changed."""
    if cell["cell_type"] != "code":
        raise KeyError(f"cell {row.cell_id} is a {cell['cell_type']} cell, not code")
    old = cell.setdefault("metadata", {})
    mystnb = dict(old.get("mystnb", {}))
    for key, options in row.metadata().items():
        mystnb[key] = {**mystnb.get(key, {}), **options}
    if not row.name:  # a name left from an earlier table would label every figure
        mystnb["figure"].pop("name", None)
    new = _sorted({**old, "mystnb": mystnb})
    if new == old:
        return False
    cell["metadata"] = new
    return True


def _sorted(value):
    """``value`` with every dict's keys in order, the way nbformat writes notebooks."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    return value


def apply_captions(tsv: Path, book: Path, write: bool = True) -> list[Path]:
    """Apply every row of ``tsv`` to the notebooks in ``book``; the notebooks changed."""
    rows = read_captions(tsv)
    by_notebook: dict[str, list[Caption]] = {}
    for row in rows:
        by_notebook.setdefault(row.notebook, []).append(row)
    absent = [name for name in by_notebook if not (book / name).is_file()]
    if absent:
        raise FileNotFoundError(f"{book}: no notebook {', '.join(absent)}")
    return [
        book / name
        for name, nb_rows in by_notebook.items()
        if apply_to_notebook(book / name, nb_rows, write)
    ]


def main(argv: list[str] | None = None) -> int:
    """Apply (or with ``--check`` compare) the table; 2 on a bad table or a missing cell."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=ROOT / "tools" / "figure_captions.tsv")
    parser.add_argument("--book", type=Path, default=ROOT / "book")
    parser.add_argument(
        "--check", action="store_true", help="change nothing; status 1 if out of date"
    )
    args = parser.parse_args(argv)
    try:
        changed = apply_captions(args.tsv, args.book, write=not args.check)
    except (KeyError, ValueError, FileNotFoundError) as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    verb = "out of date" if args.check else "updated"
    for path in changed:
        print(f"{verb}: {path}")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
