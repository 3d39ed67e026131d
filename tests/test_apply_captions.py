"""The figures' captions and alt text: the table, and writing it into the notebooks."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from notebook_tools import BOOK, ROOT

sys.path.insert(0, str(ROOT / "tools"))

from apply_captions import (  # noqa: E402
    COLUMNS,
    apply_captions,
    apply_to_notebook,
    main,
    read_captions,
)

TSV = ROOT / "tools" / "figure_captions.tsv"
# a cell that draws a figure ends it with one of these
SHOWS_A_FIGURE = ("plt.show()", "plotting.show()")


def _code_cells(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    return {c["id"]: c for c in nb["cells"] if c["cell_type"] == "code"}


def _write_table(path, rows):
    lines = ["\t".join(COLUMNS)] + ["\t".join(map(str, row)) for row in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_every_row_names_a_code_cell_of_the_book():
    for row in read_captions(TSV):
        assert row.cell_id in _code_cells(BOOK / row.notebook), (row.notebook, row.cell_id)


def test_every_cell_that_shows_a_figure_has_a_caption():
    listed = {(row.notebook, row.cell_id) for row in read_captions(TSV)}
    missing = [
        (path.name, cell_id)
        for path in sorted(BOOK.glob("*.ipynb"))
        for cell_id, cell in _code_cells(path).items()
        if any(s in "".join(cell["source"]) for s in SHOWS_A_FIGURE)
        and (path.name, cell_id) not in listed
    ]
    assert not missing, f"add these cells to {TSV.name}: {missing}"


def test_the_notebooks_carry_the_table():
    """After editing the table, run ``python tools/apply_captions.py``."""
    assert apply_captions(TSV, BOOK, write=False) == []


def test_captions_are_written_once_and_other_metadata_kept(tmp_path):
    row = read_captions(TSV)[0]
    path = tmp_path / row.notebook
    shutil.copy(BOOK / row.notebook, path)
    nb = json.loads(path.read_text(encoding="utf-8"))
    next(c for c in nb["cells"] if c.get("id") == row.cell_id)["metadata"]["tags"] = ["x"]
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")

    apply_to_notebook(path, [row])
    first = path.read_text(encoding="utf-8")
    assert not apply_to_notebook(path, [row]), "a second run changes nothing"
    assert path.read_text(encoding="utf-8") == first and first.endswith("}\n")
    cell = _code_cells(path)[row.cell_id]
    assert cell["metadata"]["tags"] == ["x"]
    assert cell["metadata"]["mystnb"] == {
        "figure": {"caption": row.caption, "name": row.name},
        "image": {"alt": row.alt},
    }


def test_a_missing_cell_id_fails_and_names_it(tmp_path, capsys):
    shutil.copy(BOOK / "08_making_it_fast.ipynb", tmp_path)
    _write_table(
        tmp_path / "t.tsv",
        [("08_making_it_fast.ipynb", "no-such-cell", "A caption.", "An alt text.", 1, "")],
    )
    assert main(["--tsv", str(tmp_path / "t.tsv"), "--book", str(tmp_path)]) == 2
    assert "no-such-cell" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (("a.ipynb", "c1", "Caption.", "Alt.", 3, "fig-a"), "cannot have a name"),
        (("a.ipynb", "c1", "Caption.", "", 1, "fig-a"), "empty alt"),
        (("a.ipynb", "c1", "Caption.", "Alt.", "two", ""), "figures must be a count"),
    ],
)
def test_a_bad_row_is_refused(tmp_path, row, message):
    _write_table(tmp_path / "t.tsv", [row])
    with pytest.raises(ValueError, match=message):
        read_captions(tmp_path / "t.tsv")
