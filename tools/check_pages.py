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
- an image that failed to embed (no source, an empty data URI, a missing file);
- an image in the page's article without real alt text (none, empty, or a file name or
  hash such as myst-nb's default ``../_images/<sha256>.png``), or a figure drawn by a
  code cell that is not inside a ``<figure>`` with a ``<figcaption>``: a notebook cell
  gets both from its ``mystnb`` metadata (``tools/apply_captions.py``).

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
# alt text that is really a path, a file name or a content hash
FILE_LIKE_ALT = re.compile(
    r"^\S*[/\\]\S*$|\.(?:png|jpe?g|gif|svg|webp|pdf)\s*$|\b[0-9a-f]{16,}\b",
    re.IGNORECASE,
)
VOID_TAGS = frozenset(
    "area base br col embed hr img input link meta param source track wbr".split()
)


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


@dataclass
class _Image:
    src: str
    alt: str | None
    in_output: bool  # drawn by a code cell
    in_figure: bool = False
    captioned: bool = False


class _Figures(HTMLParser):
    """Collects the images of the page's ``<article>`` (the whole page when it has none).

    For each it notes the alt text, whether it sits in a code cell's output, and whether
    an enclosing ``<figure>`` has a ``<figcaption>``.
    """

    def __init__(self, has_article: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[_Image] = []
        self._open: list[tuple[str, bool]] = []  # (tag, opens a cell output)
        self._figures: list[list] = []  # per open <figure>: [captioned, its images]
        self._article = 0 if has_article else 1

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self._image(attrs)
        elif tag == "figcaption" and self._figures:
            self._figures[-1][0] = True
        elif tag == "figure":
            self._figures.append([False, []])
        if tag == "article":
            self._article += 1
        if tag not in VOID_TAGS:
            output = "cell_output" in (attrs.get("class") or "").split()
            self._open.append((tag, output))

    def _image(self, attrs: dict) -> None:
        if not self._article:
            return
        image = _Image(
            attrs.get("src") or "",
            attrs.get("alt"),
            any(output for _, output in self._open),
            in_figure=bool(self._figures),
        )
        self.images.append(image)
        if self._figures:
            self._figures[-1][1].append(image)

    def handle_endtag(self, tag):
        if tag in VOID_TAGS or tag not in (t for t, _ in self._open):
            return
        while self._open:
            closed, _ = self._open.pop()
            self._close(closed)
            if closed == tag:
                break

    def _close(self, tag: str) -> None:
        if tag == "figure" and self._figures:
            captioned, images = self._figures.pop()
            for image in images:
                image.captioned = image.captioned or captioned
        elif tag == "article" and self._article:
            self._article -= 1


def _short(src: str) -> str:
    """``src`` cut to a line's length for a report."""
    return src if len(src) <= 80 else src[:77] + "..."


def check_figures(html: str, page: str = "<page>") -> list[Problem]:
    """Images in one page's article without real alt text, and cell figures without a caption.

    Every ``<img>`` in the article needs alt text that describes it: not missing, not
    empty, not a file name or a hash. An image in a code cell's output
    (``cell_output``) must also sit in a ``<figure>`` with a ``<figcaption>``. Images
    outside the article (the theme's logos and buttons) are not the book's figures.
    """
    parser = _Figures(has_article="<article" in html)
    parser.feed(html)
    parser.close()
    problems = []
    for image in parser.images:
        alt = (image.alt or "").strip()
        if not alt:
            problems.append(Problem(page, "image without alt text", _short(image.src)))
        elif FILE_LIKE_ALT.search(alt):
            problems.append(Problem(page, "alt text is a file name or hash", _short(alt)))
        if image.in_output and not image.captioned:
            what = "figure without a caption" if image.in_figure else "image not in a figure"
            problems.append(Problem(page, what, _short(image.src)))
    return problems


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
        html = path.read_text(encoding="utf-8")
        problems += check_html(html, page, path.parent)
        problems += check_figures(html, page)
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
