"""CONTRIBUTING.md's cell-length rule: every code cell of every chapter is short.

The limit is read from CONTRIBUTING.md ("at most N lines"), so the rule and its check
cannot drift apart. The cells that were already longer when the rule got its test are
listed, by notebook and cell id, in ``tests/long_cells.tsv`` with their length then: such
a cell may shrink, never grow, and leaves the list once it fits (a ratchet, so that no
new long cell comes in while the old ones are worked off).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = sorted((ROOT / "book").glob("[0-9][0-9]_*.ipynb"))
KNOWN_LONG = ROOT / "tests" / "long_cells.tsv"


def max_cell_lines() -> int:
    found = re.findall(r"at most (\d+) lines", (ROOT / "CONTRIBUTING.md").read_text())
    assert len(set(found)) == 1, "CONTRIBUTING.md must state the cell limit once: 'at most N lines'"
    return int(found[0])


def cell_lines(source) -> int:
    """Lines of a cell's source, trailing blank lines not counted."""
    return len("".join(source).rstrip().splitlines())


def test_the_rule_is_read_and_counted():
    assert 5 <= max_cell_lines() <= 40
    assert cell_lines(["a = 1\n", "\n", "b = 2\n", "\n"]) == 3
    assert CHAPTERS, "no chapters found"


def known_long_cells() -> dict[tuple[str, str], int]:
    """``(notebook, cell id) -> lines`` of the cells that were long before the rule's test."""
    table = pd.read_csv(KNOWN_LONG, sep="\t", dtype={"cell_id": str})
    return {(r.notebook, r.cell_id): int(r.lines) for r in table.itertuples()}


def long_cells(limit: int, known: dict) -> tuple[list[str], set]:
    """Code cells over ``limit`` lines that are new or grew, and the known ones still seen."""
    problems, seen = [], set()
    for path in CHAPTERS:
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            n = cell_lines(cell["source"])
            if cell["cell_type"] != "code" or n <= limit:
                continue
            key = (path.name, cell.get("id", ""))
            seen.add(key)
            if n > known.get(key, limit):
                was = f", was {known[key]}" if key in known else ""
                problems.append(f"{path.name} cell {i} (id {key[1]}): {n} lines{was}")
    return problems, seen


def test_every_code_cell_of_every_chapter_is_short():
    limit = max_cell_lines()
    problems, _ = long_cells(limit, known_long_cells())
    assert not problems, (
        f"code cells over CONTRIBUTING.md's {limit} lines that are new or grew "
        f"({len(problems)}): move the code into the library with a test, or split the "
        "cell:\n  " + "\n  ".join(problems)
    )


def test_the_list_of_long_cells_only_holds_cells_still_too_long():
    """A cell that was shortened (or removed) must leave ``long_cells.tsv``."""
    known = known_long_cells()
    _, seen = long_cells(max_cell_lines(), known)
    gone = sorted(set(known) - seen)
    assert not gone, f"now short or gone: remove from tests/long_cells.tsv: {gone}"


def test_a_new_or_grown_long_cell_is_caught(tmp_path, monkeypatch):
    nb = {"cells": [{"cell_type": "code", "id": "a1", "source": ["x = 1\n"] * 18},
                    {"cell_type": "code", "id": "b2", "source": ["y = 2\n"] * 20}]}  # fmt: skip
    path = tmp_path / "99_example.ipynb"
    path.write_text(json.dumps(nb))
    monkeypatch.setattr(__import__(__name__), "CHAPTERS", [path])
    problems, seen = long_cells(15, {("99_example.ipynb", "b2"): 19})
    assert problems == [
        "99_example.ipynb cell 0 (id a1): 18 lines",
        "99_example.ipynb cell 1 (id b2): 20 lines, was 19",
    ]
    assert seen == {("99_example.ipynb", "a1"), ("99_example.ipynb", "b2")}
