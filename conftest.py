"""pytest collection for the whole book, and the starters run once per session.

Besides ``tests/`` and the docstring doctests of ``src/`` (``--doctest-modules``),
pytest can run the ``{doctest}`` blocks of a MyST page through sybil: pass the
page (``pytest docs/tracks/diffuser/labs/lab-02-denoising-step.md``) for a fast
loop while writing it. The blocks of one page share a namespace, as they do in
Sphinx's doctest builder. ``tox -e py`` collects ``tests`` and ``src`` only: the
page doctests run once per run, in ``tox -e docs`` (Sphinx's doctest builder).

Lab starters run through the session fixture ``starter``: each starter runs at
most once per pytest session, whatever number of tests read its output (the
smoke test in ``tests/test_starters.py`` and the content tests of its area).
When the smoke tests are collected, every starter is started in the background
at the end of collection, ``INFRALENS_STARTER_WORKERS`` at a time (default: the
cores less one, at least one), so they run beside the unit tests; a test that
needs a starter no worker has picked up yet runs it at once itself. Each run is
``python <file>`` in the starter's folder, forked from a Python that has imported
torch once per session (``tests/preloaded_python.py``: what that changes and what
it does not).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from doctest import ELLIPSIS, NORMALIZE_WHITESPACE
from pathlib import Path

import pytest
from sybil import Sybil
from sybil.parsers.myst import DocTestDirectiveParser, SkipParser

ROOT = Path(__file__).resolve().parent


def _load_preloaded_python():
    # by path: pytest imports test modules with --import-mode=importlib, which puts no folder of
    # ours on sys.path, so `tests` is not importable as a package
    spec = importlib.util.spec_from_file_location("infralens_preloaded_python", ROOT / "tests" / "preloaded_python.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


PreloadedPython = _load_preloaded_python().PreloadedPython
CODE = ROOT / "code"
STARTER_TIMEOUT = 300  # seconds; the slowest starter takes about 15 s on 2 idle cores

# Sphinx extensions (they need the docs extra) and generated API pages are not test modules.
collect_ignore = ["conf.py", "docs/_ext", "docs/api", "code"]

pytest_collect_file = Sybil(
    parsers=[DocTestDirectiveParser(optionflags=ELLIPSIS | NORMALIZE_WHITESPACE), SkipParser()],
    patterns=["*.md"],
    excludes=["README.md"],
).pytest()


def starter_paths() -> list[Path]:
    """Every lab starter: ``code/<track>/lab-NN-<slug>/<name>.py``, sorted."""
    return sorted(CODE.glob("*/lab-*/*.py"))


def _run(python: PreloadedPython, path: Path) -> subprocess.CompletedProcess:
    # as a reader runs it: `python <file>` in the starter's folder (a fork of a Python that has
    # imported torch already: tests/preloaded_python.py says what that does and does not change)
    return python.run(path=path.name, cwd=path.parent, timeout=STARTER_TIMEOUT)


class Starters:
    """Runs each starter once; ``output(path)`` waits for it (or runs it now) and checks it."""

    def __init__(self, workers: int, python: PreloadedPython):
        self._python = python
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="starter")
        self._lock = threading.Lock()
        self._runs: dict[Path, Future] = {}
        self.runs = 0  # starter processes started this session (tests/test_starters.py checks it)

    def _counted(self, path: Path) -> subprocess.CompletedProcess:
        with self._lock:
            self.runs += 1
        return _run(self._python, path)

    def prefetch(self, paths: list[Path]) -> None:
        with self._lock:
            for path in paths:
                if path not in self._runs:
                    self._runs[path] = self._pool.submit(self._counted, path)

    def result(self, path: Path) -> subprocess.CompletedProcess:
        path = (CODE / path).resolve() if not Path(path).is_absolute() else Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(f"no starter {path}; starters are {CODE}/<track>/lab-NN-<slug>/<name>.py")
        with self._lock:
            future = self._runs.get(path)
            if future is None or future.cancel():  # not started yet: run it here, now
                future = self._runs[path] = Future()
                mine = True
            else:
                mine = False
        if mine:
            try:
                future.set_result(self._counted(path))
            except BaseException as exc:  # a timeout, say: every later reader sees it too
                future.set_exception(exc)
        return future.result()

    def output(self, path: Path | str) -> str:
        proc = self.result(Path(path))
        if proc.returncode != 0:
            pytest.fail(f"python {Path(path).name} exited {proc.returncode}:\n{proc.stderr}", pytrace=False)
        if proc.stderr != "":
            pytest.fail(f"python {Path(path).name} wrote to stderr (a warning?):\n{proc.stderr}", pytrace=False)
        return proc.stdout

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _workers() -> int:
    value = os.environ.get("INFRALENS_STARTER_WORKERS", "")
    if value:
        if not value.isdigit() or int(value) < 1:
            raise pytest.UsageError(f"INFRALENS_STARTER_WORKERS must be a positive integer, e.g. 2; got {value!r}")
        return int(value)
    return max(1, (os.cpu_count() or 2) - 1)


_STARTERS = pytest.StashKey[Starters]()


_PYTHON = pytest.StashKey[PreloadedPython]()


def pytest_configure(config):
    config.stash[_PYTHON] = PreloadedPython()  # started on first use
    config.stash[_STARTERS] = Starters(_workers(), config.stash[_PYTHON])


def pytest_unconfigure(config):
    if _STARTERS in config.stash:
        config.stash[_STARTERS].close()
    if _PYTHON in config.stash:
        config.stash[_PYTHON].close()


@pytest.fixture(scope="session")
def fresh_python(pytestconfig) -> PreloadedPython:
    """Runs ``python <file>`` or ``python -c <code>`` as a new process would, torch already imported.

    ``fresh_python.run(path=..., cwd=...)`` or ``fresh_python.run(code=...)``: a
    :class:`subprocess.CompletedProcess` (``tests/preloaded_python.py``).
    """
    return pytestconfig.stash[_PYTHON]


def pytest_collection_finish(session):
    # the smoke tests name every starter they will read: start those now, in the background
    paths = []
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and "starter" in item.fixturenames and isinstance(callspec.params.get("path"), Path):
            paths.append(callspec.params["path"])
    if paths and not session.config.option.collectonly:
        session.config.stash[_STARTERS].prefetch(paths)


@pytest.fixture(scope="session")
def starter(pytestconfig):
    """``starter(path)``: what ``python <file>`` printed, run once per session.

    ``path`` is the starter's path under ``code/`` (or absolute). The test fails if
    the starter exits with an error or writes anything to stderr.
    """
    return pytestconfig.stash[_STARTERS].output


@pytest.fixture(scope="session")
def starter_runs(pytestconfig):
    """How many starter processes this session has started so far."""
    return lambda: pytestconfig.stash[_STARTERS].runs
