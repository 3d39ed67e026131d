"""Load every page of a built book in headless Chromium and report what broke.

    python tools/check_browser.py _build/html --screenshots _build/screenshots

The pages are served from a local HTTP server and opened with Playwright driving the
system's Chromium (Debian's ``chromium`` package; ``make browser`` installs it).
A page fails on:

- an uncaught JavaScript exception, or a console error, from the page's own scripts;
- an image that did not load (``naturalWidth`` 0);
- an interactive viewer (nilearn's ``view_img``) whose canvas stayed blank.

**Network.** Requests to any other host are aborted, so the check gives the same
answer online and offline. Pages load some scripts from CDNs (MathJax, the widget
manager); those loads are listed as "blocked" but do not fail the check, and neither
do console errors that only report them. Two errors the theme raises on every
page are known and listed (``KNOWN_THEME_ERRORS``, with the reason for each),
matched exactly. What does fail is an error from the page's
own code, including one caused by a missing CDN script (for example
``require is not defined``): a page must work without its CDN extras, as it does on
a machine without network. A screenshot of every page is kept for a person to look
at.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import shutil
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

TOOLS = Path(__file__).resolve().parent
sys.path.insert(0, str(TOOLS))

from check_pages import html_pages  # noqa: E402

BROWSER_NAMES = ("chromium", "chromium-browser")
# Errors the book's theme raises on every page, each known and harmless; matched
# exactly, listed in the report, not failed. Anything else from the page fails.
KNOWN_THEME_ERRORS = {
    "Identifier 'THEBE_JS_URL' has already been declared": (
        "sphinx-thebe 0.3.1 adds its configuration script twice under jupyter-book 1; "
        "the second copy cannot redeclare the constants the first one set"
    ),
    "Got invalid theme mode: . Resetting to auto.": (
        "pydata-sphinx-theme 0.17 with sphinx-book-theme 1.3 on a first visit (no saved "
        "light/dark mode); it then uses auto"
    ),
}
# Console messages that only report a request we aborted on purpose.
_BLOCKED_MESSAGES = ("net::ERR_FAILED", "net::ERR_BLOCKED_BY_CLIENT", "net::ERR_ABORTED")

# Counts the distinct grey levels of every canvas in the document (0 or 1: blank).
_CANVAS_LEVELS = """() => Array.from(document.querySelectorAll('canvas')).map(c => {
  if (!c.width || !c.height) return 0;
  const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length && seen.size < 3; i += 4 * 97) seen.add(data[i]);
  return seen.size;
})"""
_BROKEN_IMAGES = """() => Array.from(document.images)
  .filter(img => img.complete && img.naturalWidth === 0)
  .map(img => img.currentSrc || img.src || '(no src)')"""


@dataclass
class PageReport:
    page: str
    errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    viewers: int = 0
    screenshot: Path | None = None


def find_chromium() -> str:
    """The path of the system's Chromium, or a RuntimeError saying how to install it."""
    for name in BROWSER_NAMES:
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError(
        "no Chromium found (looked for 'chromium' and 'chromium-browser' on PATH): "
        "run `make browser` (apt-get install -y chromium) and try again."
    )


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 (the base class's name)
        pass


def serve(folder: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    """Serve ``folder`` on a free local port; return the server and its base URL."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _is_local(url: str, base: str) -> bool:
    return url.startswith(base) or urlparse(url).scheme in ("data", "blob", "about")


def _router(base: str, report: PageReport):
    """A Playwright route handler: local requests go through, others are blocked."""

    def route(route, request):
        if _is_local(request.url, base):
            route.continue_()
        else:
            report.blocked.append(request.url)
            route.abort("blockedbyclient")

    return route


def check_page(page, url: str, base: str, report: PageReport, timeout_ms: int) -> None:
    """Open ``url`` in ``page`` and fill ``report``."""

    def on_console(message):
        if message.type != "error":
            return
        where = message.location.get("url", "") if message.location else ""
        if any(m in message.text for m in _BLOCKED_MESSAGES) and not _is_local(where, base):
            return
        if "Failed to load resource" in message.text and not _is_local(where, base):
            return
        if message.text in KNOWN_THEME_ERRORS:
            report.known.append(message.text)
            return
        report.errors.append(f"console error: {message.text} ({where or 'inline'})")

    def on_error(error):
        if str(error) in KNOWN_THEME_ERRORS:
            report.known.append(str(error))
        else:
            report.errors.append(f"uncaught exception: {error}")

    page.on("console", on_console)
    page.on("pageerror", on_error)
    page.goto(url, wait_until="load", timeout=timeout_ms)
    page.wait_for_timeout(1500)  # let viewers draw and late scripts report
    report.errors += [f"image did not load: {src}" for src in page.evaluate(_BROKEN_IMAGES)]
    for frame in page.frames:
        levels = frame.evaluate(_CANVAS_LEVELS)
        if frame is page.main_frame or not levels:
            continue
        report.viewers += 1
        if max(levels) < 2:
            report.errors.append(f"interactive viewer rendered empty ({frame.url[:60]})")


def check_site(
    html_dir: Path,
    screenshots: Path | None = None,
    pages: list[Path] | None = None,
    timeout_ms: int = 60_000,
) -> list[PageReport]:
    """Load every page under ``html_dir`` (or just ``pages``) in headless Chromium."""
    from playwright.sync_api import sync_playwright

    executable = find_chromium()
    server, base = serve(html_dir)
    reports = []
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=executable, headless=True, args=["--no-sandbox"]
            )
            for path in pages or html_pages(html_dir):
                name = path.relative_to(html_dir).as_posix()
                report = PageReport(name)
                context = browser.new_context(viewport={"width": 1280, "height": 900})

                context.route("**/*", _router(base, report))
                page = context.new_page()
                try:
                    check_page(page, base + name, base, report, timeout_ms)
                    if screenshots is not None:
                        report.screenshot = screenshots / (name.replace("/", "__") + ".png")
                        report.screenshot.parent.mkdir(parents=True, exist_ok=True)
                        page.screenshot(path=str(report.screenshot), full_page=True)
                finally:
                    context.close()
                reports.append(report)
            browser.close()
    finally:
        server.shutdown()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html_dir", type=Path)
    parser.add_argument("--screenshots", type=Path, help="folder for one PNG per page")
    args = parser.parse_args(argv)
    reports = check_site(args.html_dir, args.screenshots)
    failed = [r for r in reports if r.errors]
    for report in reports:
        status = "FAIL" if report.errors else "ok"
        extra = f", {report.viewers} viewer(s)" if report.viewers else ""
        known = f", {len(report.known)} known theme error(s)" if report.known else ""
        blocked = f"{len(report.blocked)} blocked request(s)"
        print(f"{status:>4} {report.page} ({blocked}{known}{extra})")
        for error in report.errors:
            print(f"       {error}")
    print(f"{len(reports)} pages, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
