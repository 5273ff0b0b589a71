"""The ePub's math images are cached by content: a second build renders nothing it rendered before.

Builds a throwaway ePub twice with the same ``INFRALENS_IMGMATH_CACHE`` (needs
``latex`` and ``dvisvgm``, which the publishing environments install).
"""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

pytest.importorskip("sphinx")
if not (shutil.which("latex") and shutil.which("dvisvgm")):
    pytest.skip("latex and dvisvgm render the ePub's math (Debian: dvisvgm)", allow_module_level=True)

from sphinx.application import Sphinx

CONF = """
extensions = ["sphinx.ext.imgmath", "infralens_mathjax"]
imgmath_image_format = "svg"
html_math_renderer = "imgmath"
epub_basename = "t"
copyright = "the tests"
version = "1"
"""
PAGE = "Title\n=====\n\nInline :math:`a^2 + b^2` and\n\n.. math::\n\n   \\int_0^1 x\\,dx = \\tfrac12\n"


def build(tmp_path: Path, out: str, page: str = PAGE) -> tuple[Sphinx, str]:
    src = tmp_path / "src"
    src.mkdir(exist_ok=True)
    (src / "conf.py").write_text(CONF)
    (src / "index.rst").write_text(page)
    warnings = io.StringIO()
    app = Sphinx(src, src, tmp_path / out, tmp_path / f"{out}-doctrees", "epub", status=None, warning=warnings)
    app.build()
    return app, warnings.getvalue()


def test_second_build_takes_every_image_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INFRALENS_IMGMATH_CACHE", str(tmp_path / "cache"))
    first, warnings = build(tmp_path, "one")
    # (Sphinx apps built earlier in this process warn that docutils nodes are registered again)
    assert [w for w in warnings.splitlines() if "already registered" not in w] == []
    assert first.infralens_imgmath == {"cached": 0, "rendered": 2}
    second, _ = build(tmp_path, "two")
    assert second.infralens_imgmath == {"cached": 2, "rendered": 0}
    images = sorted(p.name for p in (tmp_path / "two" / "_images" / "math").iterdir())
    assert images == sorted(p.name for p in (tmp_path / "one" / "_images" / "math").iterdir())
    for name in images:  # the same bytes, depth comment included
        assert (tmp_path / "two" / "_images" / "math" / name).read_bytes() == (
            tmp_path / "one" / "_images" / "math" / name
        ).read_bytes()


def test_a_changed_formula_is_rendered(tmp_path, monkeypatch):
    monkeypatch.setenv("INFRALENS_IMGMATH_CACHE", str(tmp_path / "cache"))
    build(tmp_path, "one")
    changed, _ = build(tmp_path, "two", PAGE.replace("a^2 + b^2", "a^2 + b^3"))
    assert changed.infralens_imgmath == {"cached": 1, "rendered": 1}
