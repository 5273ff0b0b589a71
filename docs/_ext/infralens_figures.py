"""Sphinx extension: draw the book's figures from the library at build time.

Each ``docs/_ext/figures_<topic>.py`` module holds a ``FIGURES`` dict of
functions that return a matplotlib figure computed with ``infralens``; on
``builder-inited`` every figure is rendered to ``docs/_generated/<name>.png``,
which pages include with ``{figure}``. Figures are redrawn only when a figures
module or a module of ``infralens`` changed (a hash of their sources), and a
file is rewritten only when its bytes change, so an unchanged library costs no
drawing and re-reads no page. Nothing is downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import io
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

OUT_DIR = Path("docs") / "_generated"
HERE = Path(__file__).parent


def figure_modules() -> list[Path]:
    """The ``figures_*.py`` modules beside this file, sorted."""
    return sorted(HERE.glob("figures_*.py"))


def all_figures() -> dict[str, Callable[[], plt.Figure]]:
    """Every figure of every figures module, by name; a name used twice is an error."""
    found: dict[str, Callable[[], plt.Figure]] = {}
    for path in figure_modules():
        for name, fn in importlib.import_module(path.stem).FIGURES.items():
            if name in found:
                raise ValueError(f"figure name {name!r} is defined twice (again in {path.name})")
            found[name] = fn
    return found


def render(name: str, fn: Callable[[], plt.Figure], srcdir: Path) -> bool:
    """Render one figure; return whether the PNG on disk changed."""
    fig = fn()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
    plt.close(fig)
    path = srcdir / OUT_DIR / f"{name}.png"
    if path.exists() and path.read_bytes() == buf.getvalue():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return True


def _source_key() -> str:
    """A hash of everything a figure depends on: the figures modules and the library's sources."""
    import infralens

    files = [Path(__file__), *figure_modules(), *sorted(Path(infralens.__file__).parent.rglob("*.py"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _builder_inited(app) -> None:
    out = Path(app.srcdir) / OUT_DIR
    figures = all_figures()
    key, stamp = _source_key(), out / ".source-key"
    if stamp.exists() and stamp.read_text() == key and all((out / f"{n}.png").exists() for n in figures):
        return  # nothing they are drawn from changed: skip matplotlib (about 2 s per build)
    for name, fn in figures.items():
        render(name, fn, Path(app.srcdir))
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(key)


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
