"""Replay ``.readthedocs.yaml`` locally, so the hosted build cannot rot unseen.

The config is checked against the project (Python version, the extras it
installs, the same torch pin as tox), then the three builds Read the Docs runs
for it are run the way it runs them: ``python -m sphinx -T -W --keep-going``
(``fail_on_warning``) for html, latex and epub with ``READTHEDOCS=True``, and
``latexmk -r latexmkrc -pdf -f -dvi- -ps- -jobname=... -interaction=nonstopmode``
in the LaTeX folder. The one step it cannot replay offline is the CPU torch
wheel from the PyTorch index; the test checks that it pins the version tox uses.

It replays only what no other environment exercises: ``READTHEDOCS=True``,
Read the Docs' flags, MathJax from its CDN and ``latexmk -f``. The book is not
read again: the three builders start at once, each from its own copy of the run's
shared doctree (``INFRALENS_DOCTREES``, which ``tox -e docs`` fills), and the ePub takes its
math images from the content cache (``INFRALENS_IMGMATH_CACHE``) that
``tox -e epub`` filled. Its LaTeX is compiled only when it differs from what
``tox -e pdf`` compiles in the same run (``READTHEDOCS=True`` changes the HTML
only: byte-equal sources, already compiled with stricter flags). Without them (a
bare ``pytest`` of this file) it reads, renders and compiles everything itself.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONFIG = yaml.safe_load((ROOT / ".readthedocs.yaml").read_text())


def test_config_matches_the_project():
    assert CONFIG["version"] == 2
    assert CONFIG["build"]["tools"]["python"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    assert (ROOT / CONFIG["sphinx"]["configuration"]).is_file()
    assert CONFIG["sphinx"]["fail_on_warning"] is True
    assert set(CONFIG["formats"]) == {"pdf", "epub"}
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for step in CONFIG["python"]["install"]:
        assert step["path"] == "."
        assert set(step["extra_requirements"]) <= set(extras)


def test_torch_pin_is_the_one_tox_uses():
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(ROOT / "tox.ini")
    tox_pin = re.search(r"torch==[\d.]+", tox["testenv"]["deps"]).group(0)
    pre_install = " ".join(CONFIG["build"]["jobs"]["pre_install"])
    assert f'"{tox_pin}"' in pre_install or f" {tox_pin} " in f" {pre_install} "
    assert "/whl/cpu" in pre_install, "Read the Docs has no GPU: install the CPU wheel"


FOLDERS = {"html": "html", "latex": "pdf", "epub": "epub"}  # builder: output folder, as Read the Docs names them


def start_sphinx(builder: str, out: Path, doctrees: Path) -> subprocess.Popen:
    env = {**os.environ, "READTHEDOCS": "True", "READTHEDOCS_OUTPUT": str(out.parent)}
    env.pop("INFRALENS_MATHJAX", None)  # the hosted site uses MathJax from its CDN
    cmd = [sys.executable, "-m", "sphinx", "-T", "-W", "--keep-going", "-b", builder, "-d", str(doctrees)]
    cmd += ["-D", "language=en", str(ROOT), str(out)]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


class Builds:
    """The three builds; with the run's doctree (``INFRALENS_DOCTREES``) they run at once, each on its own copy.

    A copy each, because a build may write to its doctree (the replay must not write into the one the
    other builders use, nor two builds into one). Without it (a bare ``pytest`` of this file) they run
    one after the other on one doctree, so the book is read once, by the first.
    """

    def __init__(self, out: Path):
        self.out = out
        shared = os.environ.get("INFRALENS_DOCTREES")
        self.procs: dict[str, subprocess.Popen] = {}
        if shared and Path(shared, "environment.pickle").is_file():
            for builder, folder in FOLDERS.items():
                shutil.copytree(shared, out / f"doctrees-{builder}")
                self.procs[builder] = start_sphinx(builder, out / folder, out / f"doctrees-{builder}")

    def done(self, builder: str) -> Path:
        proc = self.procs.get(builder) or start_sphinx(builder, self.out / FOLDERS[builder], self.out / "doctrees")
        output, _ = proc.communicate()
        assert proc.returncode == 0, output[-6000:]
        return self.out / FOLDERS[builder]

    def close(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    started = Builds(tmp_path_factory.mktemp("readthedocs"))
    yield started
    started.close()


def test_html(builds):
    assert (builds.done("html") / "index.html").is_file()


def compiled_elsewhere(latex: Path) -> str | None:
    """Why Read the Docs' LaTeX need not be compiled here (else None).

    Read the Docs' LaTeX is written with ``READTHEDOCS=True``; when every file of it is
    byte-equal to the pdf env's (``_build/latex``), xelatex compiles exactly this book there,
    with ``-halt-on-error``, which is stricter than Read the Docs' ``-f``: either it has done
    so already (its PDF is newer than the sources) or, in CI, it is doing so in this very run
    (``INFRALENS_PDF_IN_THIS_RUN=1``, set by ``.ci/run``, whose pdf step fails the run if
    xelatex fails).
    """
    built = ROOT / "_build" / "latex"
    pdf = built / "infralens.pdf"
    newest = 0.0
    for mine in latex.rglob("*"):
        if mine.is_file():
            theirs = built / mine.relative_to(latex)
            if not theirs.is_file() or theirs.read_bytes() != mine.read_bytes():
                return None
            newest = max(newest, theirs.stat().st_mtime)
    if pdf.is_file() and pdf.stat().st_mtime >= newest:
        return f"byte-equal to the sources of {pdf}, compiled in this run"
    if os.environ.get("INFRALENS_PDF_IN_THIS_RUN") == "1":
        return f"byte-equal to the sources in {built}, which the pdf step of this run compiles"
    return None


def test_pdf(builds):
    latex = builds.done("latex")
    reason = compiled_elsewhere(latex)
    if reason is None:  # not compiled in this run (tox -e rtd alone, or the sources differ): compile
        cmd = ["latexmk", "-r", "latexmkrc", "-pdf", "-f", "-dvi-", "-ps-", "-jobname=infralens"]
        proc = subprocess.run([*cmd, "-interaction=nonstopmode"], cwd=latex, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert (latex / "infralens.pdf").stat().st_size > 100_000
    else:
        print(f"\nRead the Docs' LaTeX is {reason}: not compiled again")


def test_epub(builds):
    assert list(builds.done("epub").glob("*.epub"))
