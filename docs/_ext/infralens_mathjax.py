"""Sphinx extension: serve MathJax from the built site instead of a CDN.

When ``INFRALENS_MATHJAX`` names an npm ``node_modules`` folder holding
``mathjax`` (version 4) and ``@mathjax/mathjax-newcm-font`` (``tox -e docs``
installs both), the HTML build copies them into ``_static/mathjax`` and points
``mathjax_path`` there, so the pages typeset math with no request to another
host. Without the variable (Read the Docs, a bare ``sphinx-build``) Sphinx's
default CDN build of MathJax is used.

No Python package ships MathJax 4 (the version Sphinx 9 loads from its CDN):
PyPI's offline MathJax packages carry MathJax 2 or 3. So the files come from
npm, pinned, fetched once per ``.tox`` by ``python docs/_ext/infralens_mathjax.py
install <folder>``, which never hangs (npm's fetch timeout and retries, and a
hard limit on the whole install) and never fails silently (one line saying what
failed and what to check). tox passes npm's settings through (the CA bundle in
``NODE_EXTRA_CA_CERTS``, ``npm_config_*``, proxies).

Also here, for the ePub: a content cache of the math images that
``sphinx.ext.imgmath`` renders (one LaTeX and one dvisvgm run per formula).
When ``INFRALENS_IMGMATH_CACHE`` names a folder, an image is taken from it if a
formula with the same LaTeX source (the file name is imgmath's own SHA-1 of the
whole LaTeX document, preamble and options included) was rendered before with
the same ``latex`` and ``dvisvgm``, and every image rendered is stored there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from sphinx.errors import ConfigError
from sphinx.util import logging
from sphinx.util.fileutil import copy_asset

logger = logging.getLogger(__name__)

ENV_VAR = "INFRALENS_MATHJAX"
FONT = "mathjax-newcm"  # MathJax 4's default font
# Only what the CHTML output loads: the font's metrics, its woff2 files and dynamic ranges.
FONT_FILES = ("chtml.js", "chtml")
# The npm packages, pinned: the page configuration below is written for MathJax 4.
PACKAGES = ("mathjax@4.1.3", "@mathjax/mathjax-newcm-font@4.1.3")
NPM_TIMEOUT = 600  # seconds for the whole install; npm's own fetches time out after 60 s, retried twice


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
    app.connect("builder-inited", _imgmath_cache)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}


# --- imgmath: math images cached by content ------------------------------------------

CACHE_VAR = "INFRALENS_IMGMATH_CACHE"


def _tool_versions(config) -> str:
    """The first line of ``latex --version`` and ``dvisvgm --version``: a new TeX Live renders anew."""
    lines = []
    for tool in (config.imgmath_latex, config.imgmath_dvisvgm):
        try:
            out = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=60).stdout
        except OSError:
            out = "missing"
        lines.append(out.splitlines()[0] if out else "unknown")
    return "\n".join(lines)


def _imgmath_cache(app) -> None:
    folder = os.environ.get(CACHE_VAR)
    if not folder or getattr(app.builder, "math_renderer_name", None) != "imgmath":
        return
    from sphinx.ext import imgmath

    tools = hashlib.sha1(_tool_versions(app.config).encode(), usedforsecurity=False).hexdigest()[:12]
    cache = Path(folder).resolve() / tools
    cache.mkdir(parents=True, exist_ok=True)
    render = getattr(imgmath.render_math, "__wrapped__", imgmath.render_math)
    counts = app.infralens_imgmath = {"cached": 0, "rendered": 0}

    def render_math(self, math, *, config):
        latex = imgmath.generate_latex_macro(config.imgmath_image_format.lower(), math, config, self.builder.confdir)
        name = f"{hashlib.sha1(latex.encode(), usedforsecurity=False).hexdigest()}.{config.imgmath_image_format}"
        target = Path(self.builder.outdir) / self.builder.imagedir / "math" / name
        if not target.is_file() and (cache / name).is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cache / name, target)  # the depth comment travels with the file
            counts["cached"] += 1
        elif not target.is_file():
            counts["rendered"] += 1
        path, depth = render(self, math, config=config)
        if path is not None and not (cache / name).is_file():
            tmp = cache / f".{name}.{os.getpid()}"
            shutil.copyfile(path, tmp)
            tmp.replace(cache / name)  # atomic: a concurrent build never reads half a file
        return path, depth

    render_math.__wrapped__ = render
    imgmath.render_math = render_math
    app.connect("build-finished", _imgmath_report)


def _imgmath_report(app, exc) -> None:
    counts = getattr(app, "infralens_imgmath", None)
    if exc is None and counts:
        logger.info("math images: %d from the cache, %d rendered", counts["cached"], counts["rendered"])


# --- fetching MathJax from npm ---------------------------------------------------------


def install(prefix: Path) -> int:
    """Install the pinned MathJax packages under ``prefix`` with npm; 0 when they are there."""
    node_modules = prefix / "node_modules"
    try:
        _sources(node_modules)
        return 0  # already installed
    except ConfigError:
        pass
    npm = shutil.which("npm")
    if npm is None:
        print("MathJax: npm is not installed (Debian: apt-get install nodejs npm); it fetches MathJax for the HTML")
        return 1
    cmd = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--prefer-offline", "--loglevel=error"]
    cmd += ["--fetch-timeout=60000", "--fetch-retries=2", "--prefix", str(prefix), *PACKAGES]
    start = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=NPM_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        print(
            f"MathJax: npm install did not finish in {NPM_TIMEOUT} s; check the network, the npm registry "
            "setting and the CA bundle (NODE_EXTRA_CA_CERTS, npm_config_cafile), which tox passes through"
        )
        return 1
    took = time.monotonic() - start
    if proc.returncode != 0:
        last = next((line for line in reversed(proc.stderr.splitlines()) if line.strip()), "no message")
        print(f"MathJax: npm install failed after {took:.0f} s (exit {proc.returncode}): {last.strip()}")
        return 1
    try:
        _sources(node_modules)
    except ConfigError as exc:
        print(f"MathJax: npm install succeeded but {exc}")
        return 1
    print(f"MathJax: {' '.join(PACKAGES)} installed in {took:.0f} s under {node_modules}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Fetch the pinned MathJax the HTML build serves offline.")
    parser.add_argument("command", choices=["install"])
    parser.add_argument("prefix", type=Path, help="npm prefix; the files land in <prefix>/node_modules")
    args = parser.parse_args(argv)
    return install(args.prefix)


if __name__ == "__main__":
    sys.exit(main())
