"""Sphinx configuration for InfraLens.

The book's sources are the root ``index.md`` and everything under ``docs/``;
``include_patterns`` keeps Sphinx out of ``.tox``, ``.venv``, ``code/`` and the
READMEs. Our own extensions live in ``docs/_ext`` (one small module each).
"""

from __future__ import annotations

import doctest
import json
import sys
from pathlib import Path

ROOT = Path(__file__).parent.resolve()
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import infralens  # noqa: E402

project = "InfraLens"
author = "The InfraLens authors"
copyright = "2026, The InfraLens authors"
release = version = infralens.__version__

root_doc = "index"
include_patterns = ["index.md", "docs/**"]
exclude_patterns = ["docs/_ext/**", "**/README.md"]
source_suffix = {".md": "markdown"}

extensions = [
    "myst_parser",
    "autodoc2",
    "sphinx.ext.doctest",
    "sphinx.ext.imgmath",
    "sphinx.ext.mathjax",
    "infralens_bench",
    "infralens_claims",
    "infralens_compute",
    "infralens_figures",
    "infralens_ledger",
    "infralens_mathjax",
]

# --- warnings are errors (tox passes -W --keep-going -n) ----------------------
nitpicky = True
# Types from outside the book. The build must work offline (no intersphinx
# inventories can be fetched here), so they are named but not linked.
nitpick_ignore = [
    ("py:class", "torch.Tensor"),
    ("py:class", "torch.dtype"),
    ("py:class", "torch.device"),
    ("py:class", "collections.abc.Mapping"),
    ("py:class", "collections.abc.Callable"),
    ("py:class", "collections.abc.Sequence"),
    ("py:class", "argparse.ArgumentParser"),
    ("py:class", "infralens.core.args.Scalar"),
    ("py:class", "infralens.diffusion.guidance.Denoiser"),
    ("py:class", "torch.nn.Module"),
    ("py:obj", "torch.nn.Module"),
    ("py:obj", "torch.nn.Conv3d"),
    ("py:class", "infralens.nets.video_vae.Cache"),
    ("py:class", "torch.Generator"),
    ("py:class", "torch.distributed.ProcessGroup"),
    ("py:class", "collections.abc.Iterator"),
    ("py:class", "os.PathLike"),
    ("py:class", "pathlib.Path"),
    ("py:class", "collections.abc.Iterable"),
    ("py:class", "torch.nn.MultiheadAttention"),
    ("py:class", "torch.nn.ModuleList"),
]
nitpick_ignore_regex = [("py:class", r"typing\..*")]

# --- MyST ----------------------------------------------------------------------
myst_enable_extensions = [
    "amsmath",
    "attrs_inline",
    "colon_fence",
    "deflist",
    "dollarmath",
    "fieldlist",
    "substitution",
]
# Upstream versions the pages' facts were checked against ({{ diffusers_version }}).
UPSTREAM = json.loads((ROOT / "docs" / "_data" / "upstream.json").read_text())
myst_substitutions = {f"{name}_version": ver for name, ver in UPSTREAM.items()}
myst_heading_anchors = 3

# --- API reference (sphinx-autodoc2) -------------------------------------------
autodoc2_packages = [{"path": "src/infralens", "module": "infralens"}]
autodoc2_output_dir = "docs/api"
autodoc2_render_plugin = "myst"
autodoc2_hidden_objects = ["private", "dunder", "inherited"]
# Document the public names where readers import them from: each area package
# (infralens.diffusion, infralens.video, ...) through its __all__ ...
autodoc2_module_all_regexes = [r"infralens\.[a-z]+"]
# ...and only there: the modules behind an area are layout, documented once, above.
autodoc2_skip_module_regexes = [r"infralens\.[a-z]+\..+", r"infralens\.__main__"]
autodoc2_docstring_parser_regexes = [(r".*", "rst")]
autodoc2_index_template = None

# --- doctests --------------------------------------------------------------------
# The {doctest} blocks of the pages run here (tox -e docs) and under pytest
# (sybil). Docstring examples are run by pytest --doctest-modules, where their
# module's names are in scope, so Sphinx skips the rendered copies.
doctest_test_doctest_blocks = ""
# Check exception messages too (Sphinx ignores their detail by default), and let
# long expected output wrap: the same flags sybil uses under pytest.
doctest_default_flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE | doctest.DONT_ACCEPT_TRUE_FOR_1

# --- HTML --------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "InfraLens"
html_static_path = ["docs/_static"]
html_css_files = ["infralens.css"]
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
}
html_last_updated_fmt = None
html_favicon = "docs/_static/favicon.svg"  # without one, browsers ask for /favicon.ico and log a 404
# the theme logs a console error on a first visit unless it has a default mode
html_context = {"default_mode": "auto"}

# --- PDF and ePub --------------------------------------------------------------------
latex_engine = "xelatex"  # the pages use Unicode symbols that pdflatex rejects
# The PDF starts from docs/book.md, which holds only toctrees: LaTeX inlines included
# documents where their toctree stands, so the HTML home page (whose sections come
# before its toctrees) would swallow every chapter.
latex_documents = [("docs/book", "infralens.tex", "InfraLens", author, "manual")]
latex_elements = {
    "papersize": "a4paper",
    "pointsize": "10pt",
    # TeX Gyre fonts (Debian tex-gyre): Unicode text and a monospace with box-drawing glyphs
    "fontpkg": "\\setmainfont{TeX Gyre Pagella}\n\\setsansfont{TeX Gyre Heros}\n\\setmonofont{FreeMono}",
    "sphinxsetup": "verbatimwrapslines=true, verbatimforcewraps=true",
}
latex_show_urls = "no"
latex_use_xindy = False  # makeindex ships with every TeX Live; the index entries are ASCII API names

epub_basename = "infralens"
epub_show_urls = "no"
epub_exclude_files = ["search.html"]
# ePub readers do not run MathJax: the ePub gets math rendered to SVG at build time
# (sphinx.ext.imgmath, LaTeX + dvisvgm), while HTML keeps MathJax.
html_math_renderer = "mathjax"
epub_math_renderer = "imgmath"
imgmath_image_format = "svg"
imgmath_font_size = 14


def setup(app):
    app.add_config_value("epub_math_renderer", None, "env", types=frozenset({str}))
