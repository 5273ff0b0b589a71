"""The PDF built by ``tox -e pdf``: LaTeX ran clean, the book is all there, pages render.

Needs the PDF in ``_build/latex`` and poppler's ``pdfinfo``, ``pdftotext`` and
``pdftoppm``; a few pages are rendered to ``_build/pdf-pages/*.png`` to look at.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LATEX = ROOT / "_build" / "latex"
PDF = LATEX / "infralens.pdf"
PAGES = ROOT / "_build" / "pdf-pages"


@pytest.fixture(scope="module")
def text():
    if not PDF.exists():
        pytest.fail(f"{PDF} is missing: tox -e pdf builds it")
    return subprocess.run(["pdftotext", "-layout", str(PDF), "-"], capture_output=True, text=True, check=True).stdout


def test_latex_log_has_no_errors_or_missing_glyphs():
    log = (LATEX / "infralens.log").read_text(errors="replace")
    assert not re.search(r"^! ", log, re.M), "LaTeX error"
    assert "Missing character" not in log, "a glyph is missing from the fonts"
    assert "Undefined control sequence" not in log


def test_table_of_contents_and_every_page_of_the_book(text):
    assert "Contents" in text
    for title in ["Lab 01: Forward Noise Process", "Lab 03: Latent Shape Tracking", "Glossary", "API reference"]:
        assert text.count(title) >= 2, f"{title!r} is not in both the contents and the body"


def test_math_code_and_admonitions_render(text):
    assert "x0 = torch.randn(B, C, H, W)" in text  # code included from the starter
    assert "Implementation-dependent" in text  # an admonition
    assert "(1, 16, 21, 60, 104)" in text  # a doctest's output
    assert "√" in text or "sqrt" in text  # a formula, typeset


def test_pages_render_to_png(text):
    info = subprocess.run(["pdfinfo", str(PDF)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert pages > 20
    PAGES.mkdir(parents=True, exist_ok=True)
    lab01 = next(i for i, page in enumerate(text.split("\f"), 1) if "Lab 01: Forward Noise Process" in page and i > 3)
    for first in (1, lab01, lab01 + 2):
        subprocess.run(
            ["pdftoppm", "-png", "-r", "60", "-f", str(first), "-l", str(first), str(PDF), str(PAGES / "page")],
            check=True,
        )
    assert len(list(PAGES.glob("page-*.png"))) >= 3
