"""Scan a built book's HTML pages for what a strict Sphinx build lets through.

    python tools/check_pages.py _build/html

Fails (status 1, one line per problem) on:

- a raw MyST role, substitution or directive left in the page's text
  (``{glue:...}``, ``{cite}``, ``{term}``, ``{{ name }}``, a fence such as three
  backticks followed by a brace, or a stray triple colon), or reStructuredText
  that was read as Markdown (``.. py:class::``, ``:param x:``);
- a Python traceback or an error output;
- text a cell wrote to stderr (warnings, progress bars, a library's log lines): a reader
  should not see it; fix its cause, or silence it where it is made;
- a glued value that rendered empty;
- an image that failed to embed (no source, an empty data URI, a missing file).

Text inside ``<script>`` and ``<style>`` is not page text and is not scanned; text
inside ``<code>`` is, since a role typed inside backticks is exactly the mistake to
catch.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

RAW_MARKUP = {
    "raw MyST role": re.compile(
        r"\{(?:glue|cite|term|doc|ref|numref|eq|download|abbr|math)(?::[\w-]+)?\}"
    ),
    "raw MyST substitution": re.compile(r"\{\{\s*[\w.]+\s*\}\}"),
    "raw MyST directive": re.compile(r"```\{|^\s*:::", re.MULTILINE),
    # autodoc output parsed as Markdown instead of reStructuredText
    "raw reStructuredText": re.compile(
        r"^\s*\.\. [a-z][\w:-]*::|:(?:class|func|meth|mod|attr|returns?):"
        r"|:(?:param|type|raises)\s+[\w.]+:",
        re.MULTILINE,
    ),
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
}
ERROR_OUTPUT = re.compile(r'class="[^"]*\b(?:traceback|ipythontb|output error)\b[^"]*"')
STDERR_OUTPUT = re.compile(r'<div class="output stderr[^"]*">(.*?)</div>', re.S)
EMPTY_GLUE = re.compile(r'<span class="pasted-(?:text|inline)[^"]*">\s*</span>')
SKIP_DIRS = ("_static", "_sources", "_images", "_downloads")


@dataclass(frozen=True)
class Problem:
    page: str
    what: str
    detail: str

    def __str__(self) -> str:
        return f"{self.page}: {self.what}: {self.detail}"


class _PageText(HTMLParser):
    """Collects the visible text (by line) and the ``src`` of every image."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.text: list[str] = []
        self.images: list[str | None] = []
        self._hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._hidden += 1
        if tag == "img":
            self.images.append(dict(attrs).get("src"))

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._hidden:
            self._hidden -= 1

    def handle_data(self, data):
        if not self._hidden:
            self.text.append(data)


def _context(text: str, start: int, end: int) -> str:
    return " ".join(text[max(0, start - 40) : end + 40].split())


def check_html(html: str, page: str = "<page>", folder: Path | None = None) -> list[Problem]:
    """Problems in one page's ``html``; images are looked up relative to ``folder``."""
    parser = _PageText()
    parser.feed(html)
    text = "".join(parser.text)
    problems = []
    for what, pattern in RAW_MARKUP.items():
        for match in pattern.finditer(text):
            problems.append(Problem(page, what, _context(text, match.start(), match.end())))
    for match in ERROR_OUTPUT.finditer(html):
        problems.append(Problem(page, "error output", match.group(0)))
    for match in STDERR_OUTPUT.finditer(html):
        first = re.sub(r"<[^>]+>", "", match.group(1)).strip().splitlines()
        problems.append(Problem(page, "stderr output", first[0][:160] if first else "(empty)"))
    for match in EMPTY_GLUE.finditer(html):
        problems.append(Problem(page, "empty glued value", _context(html, *match.span())))
    for src in parser.images:
        problem = _image_problem(src, folder)
        if problem:
            problems.append(Problem(page, "image not embedded", problem))
    return problems


def _image_problem(src: str | None, folder: Path | None) -> str | None:
    if not src:
        return "an <img> without a source"
    if src.startswith("data:"):
        return None if src.split(",", 1)[-1].strip() else f"empty data URI {src[:40]}"
    url = urlparse(src)
    if url.scheme in ("http", "https") or folder is None:
        return None
    if not (folder / unquote(url.path)).is_file():
        return f"{src} does not exist"
    return None


def html_pages(html_dir: Path) -> list[Path]:
    """Every HTML page of the built book (not the theme's or Sphinx's own files)."""
    return sorted(
        p
        for p in html_dir.rglob("*.html")
        if not any(part in SKIP_DIRS for part in p.relative_to(html_dir).parts)
    )


def check_book(html_dir: Path) -> list[Problem]:
    """Problems on every page under ``html_dir``."""
    problems = []
    for path in html_pages(html_dir):
        page = str(path.relative_to(html_dir))
        problems += check_html(path.read_text(encoding="utf-8"), page, path.parent)
    return problems


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print("usage: python tools/check_pages.py <built html folder>")
        return 2
    html_dir = Path(args[0])
    problems = check_book(html_dir)
    for problem in problems:
        print(problem)
    print(f"{len(html_pages(html_dir))} pages, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
