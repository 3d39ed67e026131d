"""Chapter run times from ``results/timings_*.md``, written into ``_config.yml``.

``python tools/timings.py --write`` fills the block between the ``# BEGIN timings``
and ``# END timings`` lines of ``_config.yml`` with MyST substitutions:

- ``run_time_NN``: one sentence per chapter, used in the chapter's opening (with the
  time from an empty data directory where a row such as
  ``| Chapter 4 at `cpu`, empty data directory | 9 min 56 s | ... |`` gives it);
- ``timings_table``: the table on the Timings page.

``--check`` exits with status 1 when the block is out of step with the results.
The figures are measured by hand (see ``results/README.md``) and read from rows such
as ``| Chapter 1 at `cpu` | 11 s | ... |``; a profile without a table, or a chapter
without a row, is "not yet measured".
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
PROFILES = {"cpu": "Binder or a laptop (CPU)", "gpu": "Colab with a GPU"}
NOT_MEASURED = "not yet measured"
BEGIN = "  # BEGIN timings"
END = "  # END timings"
_ROW = re.compile(r"^\|\s*Chapter\s+(\d+)\s+at\s+`(\w+)`\s*\|\s*([^|]+?)\s*\|")
_COLD_ROW = re.compile(
    r"^\|\s*Chapter\s+(\d+)\s+at\s+`cpu`,\s*empty data directory\s*\|\s*([^|]+?)\s*\|"
)


def measured_times(results: Path = ROOT / "results") -> dict[str, dict[str, str]]:
    """``{profile: {"01": "11 s", ...}}`` from every ``timings_<profile>.md`` in ``results``."""
    times: dict[str, dict[str, str]] = {profile: {} for profile in PROFILES}
    for path in sorted(results.glob("timings_*.md")):
        for line in path.read_text().splitlines():
            match = _ROW.match(line)
            if match:
                number, profile, wall = match.groups()
                times.setdefault(profile, {})[f"{int(number):02d}"] = wall
    return times


def cold_start_times(results: Path = ROOT / "results") -> dict[str, str]:
    """``{"04": "9 min 56 s", ...}``: each chapter at `cpu` from an empty data directory."""
    path = results / "timings_cpu.md"
    lines = path.read_text().splitlines() if path.is_file() else []
    matches = (_COLD_ROW.match(line) for line in lines)
    return {f"{int(m.group(1)):02d}": m.group(2) for m in matches if m}


def chapter_titles(book: Path = ROOT / "book") -> dict[str, str]:
    """``{"01": "Looking at brain MRI", ...}`` from each chapter's first heading."""
    titles = {}
    for path in sorted(book.glob("[0-9][0-9]_*.ipynb")):
        first = nbformat.read(path, as_version=4).cells[0].source.splitlines()[0]
        titles[path.name[:2]] = re.sub(r"^#\s*\d+\.\s*", "", first).strip()
    return titles


def run_time_sentence(
    number: str, times: dict[str, dict[str, str]], cold: dict[str, str] | None = None
) -> str:
    """The run-time sentence of chapter ``number`` (``"01"``), as Markdown."""
    cpu = times["cpu"].get(number, NOT_MEASURED)
    gpu = times["gpu"].get(number, NOT_MEASURED)
    cpu = f"{cpu} at `cpu`" if cpu != NOT_MEASURED else f"`cpu`: {cpu}"
    where = "2 CPU cores, as on Binder"
    if (cold or {}).get(number):
        where += f"; {cold[number]} from an empty data directory, which first builds the data"
    return f"{cpu} ({where}); GPU: {gpu}. See [Timings](timings.md)."


def timings_table(titles: dict[str, str], times: dict[str, dict[str, str]]) -> str:
    """A Markdown table: one row per chapter, one column per profile."""
    lines = [
        "| chapter | " + " | ".join(f"`{p}`: {where}" for p, where in PROFILES.items()) + " |",
        "|---|" + "---|" * len(PROFILES),
    ]
    for number, title in titles.items():
        cells = [times[p].get(number, NOT_MEASURED) for p in PROFILES]
        lines.append(f"| {int(number)}. {title} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def substitutions(root: Path = ROOT) -> dict[str, str]:
    """The MyST substitutions the book uses for run times."""
    times, titles = measured_times(root / "results"), chapter_titles(root / "book")
    cold = cold_start_times(root / "results")
    subs = {f"run_time_{n}": run_time_sentence(n, times, cold) for n in titles}
    subs["timings_table"] = timings_table(titles, times)
    return subs


def config_block(subs: dict[str, str]) -> str:
    """The ``myst_substitutions`` block, indented to sit under ``parse:``."""
    lines = ["  myst_substitutions:\n"]
    for key, value in subs.items():
        if "\n" in value.strip():
            lines.append(f"    {key}: |\n")
            lines += [f"      {line}\n" for line in value.strip().splitlines()]
        else:
            lines.append(f"    {key}: {json.dumps(value)}\n")
    return "".join(lines)


def updated_config(text: str, subs: dict[str, str]) -> str:
    """``text`` (``_config.yml``) with its timings block replaced."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith(BEGIN)]
    ends = [i for i, line in enumerate(lines) if line.startswith(END)]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(
            f"_config.yml must hold one '{BEGIN.strip()}' line followed by one "
            f"'{END.strip()}' line under 'parse:'; found {len(starts)} and {len(ends)}."
        )
    return "".join(lines[: starts[0] + 1]) + config_block(subs) + "".join(lines[ends[0] :])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", action="store_true", help="update _config.yml")
    mode.add_argument("--check", action="store_true", help="fail if it is out of step")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from slicemri_lite._core.atomic import write_text_atomic

    config = ROOT / "_config.yml"
    text = config.read_text()
    new = updated_config(text, substitutions())
    if args.check:
        if new != text:
            print("_config.yml's timings are out of step: run python tools/timings.py --write")
            return 1
        return 0
    if new != text:
        write_text_atomic(config, new)
        print("updated the timings in _config.yml")
    return 0


if __name__ == "__main__":
    sys.exit(main())
