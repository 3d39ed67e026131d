"""The rendered pages: no raw MyST markup, traceback, error output, empty glue or lost image,
and every figure with a caption and alt text."""

from __future__ import annotations

import sys

import pytest
from notebook_tools import ROOT, build_book, chapters

sys.path.insert(0, str(ROOT / "tools"))

from check_pages import check_book, check_figures, check_html, html_pages  # noqa: E402

GOOD = """<html><head><script>var x = "{glue:text}`inside a script`";</script></head>
<body><p>The model reached <span class="pasted-text">3.21</span> years.</p>
<img src="data:image/png;base64,iVBORw0KGgo="/></body></html>"""


def test_a_clean_page_passes():
    assert check_html(GOOD) == []


@pytest.mark.parametrize(
    ("planted", "what"),
    [
        ("<p>an encoder (<code>{glue:text}</code>encoder_name``)</p>", "raw MyST role"),
        ("<p>as shown by {cite}`gupta2021improved`</p>", "raw MyST role"),
        ("<p>each {term}`voxel` is</p>", "raw MyST role"),
        ("<p>Run time: {{ run_time_01 }}</p>", "raw MyST substitution"),
        ("<p>\n::: note\ntext\n</p>", "raw MyST directive"),
        ("<p>.. py:class:: SliceSetNet(encoder)</p>", "raw reStructuredText"),
        ("<p>:param encoder: the 2D encoder</p>", "raw reStructuredText"),
        ("<pre>Traceback (most recent call last):\n  File x</pre>", "traceback"),
        ('<div class="output traceback highlight-ipythontb">x</div>', "error output"),
        ('<span class="pasted-text"> </span>', "empty glued value"),
        (
            '<div class="output stderr highlight-myst-ansi notranslate"><pre>UserWarning: x'
            "</pre></div>",
            "stderr output",
        ),  # fmt: skip
        ('<img src="data:image/png;base64,"/>', "image not embedded"),
        ("<img/>", "image not embedded"),
    ],
)
def test_a_planted_problem_is_found(planted, what):
    page = GOOD.replace("</body>", planted + "</body>")
    problems = check_html(page, "planted.html")
    assert [p.what for p in problems] == [what], problems


def test_a_missing_image_file_is_found(tmp_path):
    (tmp_path / "here.png").write_bytes(b"png")
    page = '<img src="here.png"/><img src="_images/gone.png"/>'
    problems = check_html(page, "p.html", tmp_path)
    assert [p.detail for p in problems] == ["_images/gone.png does not exist"]


FIGURES = """<html><body>
<div class="article-header-buttons"><img src="../_static/logo_binder.svg"/></div>
<article class="bd-article">
<p><img alt="A diagram of a volume cut into slices" src="../_images/diagram.png"/></p>
<div class="cell docutils container"><div class="cell_output docutils container">
<figure class="align-default" id="fig-ages">
<img alt="Histogram of participants against age in years" src="../_images/ab.png"/>
<figcaption><p><span class="caption-number">Fig. 1 </span>Ages of the cohort.</p>
</figcaption></figure>
</div></div>
</article></body></html>"""
SHA = "5caff54cff4d202d2841c58c4d74c885e8900f70a8dd15d4eb132c07d6743123"
CAPTIONED = '<figure><img alt="{alt}" src="x.png"/><figcaption>Ages.</figcaption></figure>'
OUTPUT = '<div class="cell_output docutils container">{}</div>'


def test_captioned_figures_with_alt_text_pass():
    """The theme's logo outside the article needs no alt text; the book's images do."""
    assert check_figures(FIGURES) == []


@pytest.mark.parametrize(
    ("planted", "what"),
    [
        ('<img src="a.png"/>', "image without alt text"),
        ('<img alt=" " src="a.png"/>', "image without alt text"),
        (f'<img alt="../_images/{SHA}.png" src="../_images/{SHA}.png"/>', "alt text is a file name or hash"),
        (f'<img alt="{SHA}" src="x.png"/>', "alt text is a file name or hash"),
        ('<img alt="figure_3.png" src="x.png"/>', "alt text is a file name or hash"),
        (OUTPUT.format('<img alt="Histogram of ages" src="x.png"/>'), "image not in a figure"),
        (
            OUTPUT.format('<figure><img alt="Histogram of ages" src="x.png"/></figure>'),
            "figure without a caption",
        ),
    ],
)  # fmt: skip
def test_a_planted_figure_problem_is_found(planted, what):
    page = FIGURES.replace("</article>", planted + "</article>")
    assert [p.what for p in check_figures(page, "planted.html")] == [what]


def test_myst_nb_default_output_fails_on_both_counts():
    """What a cell's image becomes without ``mystnb`` metadata: hashed alt, no figure."""
    page = OUTPUT.format(f'<img alt="../_images/{SHA}.png" src="../_images/{SHA}.png" />')
    problems = check_figures(f"<article>{page}</article>", "01.html")
    assert [p.what for p in problems] == [
        "alt text is a file name or hash",
        "image not in a figure",
    ]


def test_a_caption_above_the_image_counts():
    page = OUTPUT.format(
        '<figure><figcaption>Ages.</figcaption><img alt="Histogram" src="x.png"/></figure>'
    )
    assert check_figures(page) == []


def test_check_book_reports_figure_problems(tmp_path):
    (tmp_path / "x.png").write_bytes(b"png")
    good = OUTPUT.format(CAPTIONED.format(alt="Histogram of ages"))
    bad = OUTPUT.format('<img alt="x.png" src="x.png"/>')
    (tmp_path / "good.html").write_text(f"<article>{good}</article>")
    (tmp_path / "bad.html").write_text(f"<article>{bad}</article>")
    problems = check_book(tmp_path)
    assert {(p.page, p.what) for p in problems} == {
        ("bad.html", "alt text is a file name or hash"),
        ("bad.html", "image not in a figure"),
    }


@pytest.fixture(scope="session")
def built_html(executed_chapter, tmp_path_factory):
    return build_book(executed_chapter, tmp_path_factory.mktemp("book") / "book-src")[0]


@pytest.mark.notebooks
def test_every_rendered_page_is_clean(built_html):
    pages = {p.relative_to(built_html).as_posix() for p in html_pages(built_html)}
    for expected in ["book/glossary.html", "book/api/models.html"] + [
        f"book/{p.stem}.html" for p in chapters()
    ]:
        assert expected in pages
    problems = check_book(built_html)
    assert not problems, "\n".join(map(str, problems))


@pytest.mark.notebooks
def test_check_cells_are_off_the_pages(built_html):
    """Cells tagged remove-cell run with the build but their code is not on the page."""
    import html
    import re

    page = (built_html / "book" / "03_slice_set_models.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", "", page))  # code is split into spans
    assert "assert fold_gap < 1e-4" not in text
    assert "google.colab" not in text
    assert "def conv_output(n, k=7" in text, "solution cells stay on the page, collapsed"


@pytest.mark.notebooks
def test_planting_a_raw_role_in_the_build_fails_the_check(built_html, tmp_path):
    page = (built_html / "book" / "03_slice_set_models.html").read_text()
    planted = page.replace("</article>", "<p>{glue:text}`encoder_name`</p></article>", 1)
    assert planted != page
    assert [p.what for p in check_html(planted, "03.html")] == ["raw MyST role"]


@pytest.mark.notebooks
def test_downloaded_notebook_installs_the_commit_it_was_built_from(built_html, tmp_path):
    """`make book` pins the notebooks the pages' download buttons serve."""
    import shutil

    import nbformat
    from pin_install import build_ref, pin_paths

    page = (built_html / "book" / "01_looking_at_mri.html").read_text()
    assert 'href="../_sources/book/01_looking_at_mri.ipynb"' in page
    copy = shutil.copytree(built_html / "_sources", tmp_path / "_sources")
    changed = pin_paths([copy], build_ref())
    assert {p.name for p in changed} >= {p.name for p in chapters()}
    nb = nbformat.read(copy / "book" / "01_looking_at_mri.ipynb", as_version=4)
    install = next(c for c in nb.cells if "google.colab" in c.source)
    assert f'REF = "{build_ref()}"' in install.source
