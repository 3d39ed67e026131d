"""A strict Jupyter Book build of the executed chapters: a warning or broken reference fails."""

from __future__ import annotations

import pytest
from notebook_tools import build_book, chapters

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="session")
def built_html(executed_chapter, tmp_path_factory):
    """The HTML folder of the strict build (built once per session, shared by modules)."""
    return build_book(executed_chapter, tmp_path_factory.mktemp("book") / "book-src")[0]


def test_book_builds_without_warnings(built_html):
    for path in chapters():
        page = (built_html / "book" / f"{path.stem}.html").read_text()
        assert f"book/{path.stem}.ipynb" in page, (
            "launch buttons should point at the chapter notebook"
        )
        assert "Traceback" not in page
