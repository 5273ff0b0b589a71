"""Sphinx extension: serve MathJax from the built site instead of a CDN.

When ``INFRALENS_MATHJAX`` names an npm ``node_modules`` folder holding
``mathjax`` (version 4) and ``@mathjax/mathjax-newcm-font`` (``tox -e docs``
installs both), the HTML build copies them into ``_static/mathjax`` and points
``mathjax_path`` there, so the pages typeset math with no request to another
host. Without the variable (Read the Docs, a bare ``sphinx-build``) Sphinx's
default CDN build of MathJax is used.
"""

from __future__ import annotations

import os
from pathlib import Path

from sphinx.errors import ConfigError
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

logger = logging.getLogger(__name__)

ENV_VAR = "INFRALENS_MATHJAX"
FONT = "mathjax-newcm"  # MathJax 4's default font
# Only what the CHTML output loads: the font's metrics, its woff2 files and dynamic ranges.
FONT_FILES = ("chtml.js", "chtml")


def _sources(node_modules: Path) -> tuple[Path, Path]:
    mathjax, font = node_modules / "mathjax", node_modules / "@mathjax" / f"{FONT}-font"
    for path in (mathjax / "tex-chtml.js", font / "chtml.js"):
        if not path.is_file():
            raise ConfigError(
                f"{ENV_VAR}={node_modules} has no {path.relative_to(node_modules)}; "
                f"install it with: npm install --prefix {node_modules.parent} mathjax@4"
            )
    return mathjax, font


def _config_inited(app, config) -> None:
    folder = os.environ.get(ENV_VAR)
    if not folder:
        logger.info("MathJax from the CDN (%s is not set)", ENV_VAR)
        app.infralens_mathjax = None
        return
    app.infralens_mathjax = _sources(Path(folder).resolve())
    config.mathjax_path = "mathjax/tex-chtml.js"  # relative to _static
    mj_config = dict(config.mathjax4_config or {})
    loader = dict(mj_config.get("loader", {}))
    loader["paths"] = {**loader.get("paths", {}), FONT: f"[mathjax]/fonts/{FONT}"}
    mj_config["loader"] = loader
    config.mathjax4_config = mj_config


def _build_finished(app, exc) -> None:
    if exc is not None or app.infralens_mathjax is None or app.builder.format != "html":
        return
    mathjax, font = app.infralens_mathjax
    target = Path(app.outdir) / "_static" / "mathjax"
    if not (target / "tex-chtml.js").is_file():  # the package is large: copy it once per output folder
        copy_asset(mathjax, target)
    for name in FONT_FILES:
        copy_asset(font / name, target / "fonts" / FONT / name)


def setup(app):
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
