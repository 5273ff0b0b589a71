"""The ePub built by ``tox -e epub``: valid for epubcheck, math rendered as images."""

from __future__ import annotations

import os
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EPUB = ROOT / "_build" / "epub" / "infralens.epub"
EPUBCHECK = os.environ.get("EPUBCHECK_JAR", "/usr/bin/epubcheck")


@pytest.fixture(scope="module")
def book():
    if not EPUB.exists():
        pytest.fail(f"{EPUB} is missing: tox -e epub builds it")
    return zipfile.ZipFile(EPUB)


def test_epubcheck_reports_no_errors(book):
    # Debian ships epubcheck as an executable jar: run it with java -jar
    proc = subprocess.run(["java", "-jar", EPUBCHECK, str(EPUB)], capture_output=True, text=True)
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "No errors or warnings detected" in report, report


def test_math_is_rendered_not_raw_tex(book):
    lab = next(n for n in book.namelist() if n.endswith("lab-01-forward-noise-process.xhtml"))
    page = book.read(lab).decode()
    text = re.sub(r'alt="[^"]*"', "", page)  # the TeX source stays as alt text, for screen readers
    assert "\\sqrt" not in text and "\\bar" not in text and "\\(" not in text, "raw TeX in the ePub"
    assert text.count('class="math"') >= 5  # formulas, as SVG images
    assert any(n.endswith(".svg") and "/math/" in n for n in book.namelist())
