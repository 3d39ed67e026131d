"""Every rendered page in headless Chromium: no script errors, no lost images, live viewers.

Needs Debian's ``chromium`` (``make browser`` installs it, and ``make test`` runs
that first); without it these tests fail, saying so, rather than skip.
"""

from __future__ import annotations

import sys

import pytest
from notebook_tools import ROOT, build_book

sys.path.insert(0, str(ROOT / "tools"))

from check_browser import check_site, find_chromium  # noqa: E402

SCREENSHOTS = ROOT / "_build" / "screenshots"
PNG = (  # a 1 x 1 PNG
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
)
CANVAS = """<canvas id="c" width="40" height="20"></canvas><script>
const g = document.getElementById('c').getContext('2d');
g.fillStyle = 'black'; g.fillRect(0, 0, 40, 20);
g.fillStyle = 'white'; g.fillRect(10, 5, 20, 10);
</script>"""


def _page(body: str) -> str:
    return f"<!doctype html><html><head><title>t</title></head><body>{body}</body></html>"


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    """A good page (image, viewer drawn in an iframe, a blocked CDN script) and broken ones."""
    site = tmp_path_factory.mktemp("site")
    viewer = CANVAS.replace('"', "&quot;")
    (site / "good.html").write_text(
        _page(
            f'<img src="data:image/png;base64,{PNG}"/>'
            '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js">'
            f'</script><iframe srcdoc="{viewer}"></iframe>'
        )
    )
    (site / "broken_script.html").write_text(
        _page("<p>x</p><script>notDefinedAnywhere();</script>")
    )
    (site / "console_error.html").write_text(
        _page("<script>console.error('the widget failed')</script>")
    )
    (site / "broken_image.html").write_text(_page('<img src="_images/gone.png"/>'))
    blank = "<canvas width=&quot;40&quot; height=&quot;20&quot;></canvas>"
    (site / "blank_viewer.html").write_text(_page(f'<iframe srcdoc="{blank}"></iframe>'))
    return site


def test_chromium_is_installed():
    assert find_chromium()


def test_the_check_passes_a_good_page_and_fails_broken_ones(tiny_site):
    reports = {r.page: r for r in check_site(tiny_site)}
    assert reports["good.html"].errors == []
    assert reports["good.html"].viewers == 1
    assert any("cdn.jsdelivr.net" in url for url in reports["good.html"].blocked)
    expected = {
        "broken_script.html": "uncaught exception: notDefinedAnywhere is not defined",
        "console_error.html": "console error: the widget failed",
        "broken_image.html": "image did not load",
        "blank_viewer.html": "interactive viewer rendered empty",
    }
    for page, error in expected.items():
        assert any(e.startswith(error) for e in reports[page].errors), reports[page]


@pytest.fixture(scope="session")
def built_html(executed_chapter, tmp_path_factory):
    return build_book(executed_chapter, tmp_path_factory.mktemp("book") / "book-src")[0]


@pytest.mark.notebooks
def test_every_page_works_in_chromium(built_html):
    reports = check_site(built_html, SCREENSHOTS)
    failures = [f"{r.page}: {e}" for r in reports for e in r.errors]
    assert not failures, "\n".join(failures)
    assert all(r.screenshot.stat().st_size > 0 for r in reports)
    chapter_1 = next(r for r in reports if r.page == "book/01_looking_at_mri.html")
    assert chapter_1.viewers >= 1, "Chapter 1's view_img viewer was not found"


@pytest.mark.notebooks
def test_breaking_a_page_script_fails_the_check(built_html, tmp_path):
    page = (built_html / "book" / "01_looking_at_mri.html").read_text()
    broken = page.replace("</body>", "<script>bookScriptThatIsMissing();</script></body>")
    (built_html / "book" / "broken_for_test.html").write_text(broken)
    try:
        (report,) = check_site(built_html, pages=[built_html / "book" / "broken_for_test.html"])
    finally:
        (built_html / "book" / "broken_for_test.html").unlink()
    assert any("bookScriptThatIsMissing" in e for e in report.errors), report.errors
