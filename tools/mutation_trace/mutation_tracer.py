"""Which test unit executes which line of the mutated modules: the coverage map of ``tools/mutate.py``.

Used two ways, both only when ``INFRALENS_MUTATE_TRACE`` names a directory:

* by the pytest plugin ``mutation_trace`` (``-p mutation_trace``): the current
  *unit* (a test file, a page, a module's doctests) is written to ``<dir>/unit``
  when each item starts, and lines run in-process are recorded under it;
* from ``sitecustomize.py`` in every Python process started meanwhile (starters,
  ``torch.distributed`` ranks): lines are recorded under the unit current when
  the process started (or forked). A starter run by ``tests/test_starters.py``
  is its own unit, ``starter:code/...``, so that only the checks of that
  starter's output run for its mutants.

Records are appended to ``<dir>/lines.tsv`` as ``unit<TAB>file<TAB>line``; each
process keeps a line once per unit and writes its records only between tests
(when the unit changes) and when it exits, never while a test runs: tests that
count the bytes a process writes (``/proc/self/io``) see none of the tracer's.
Only files listed in ``<dir>/targets`` are traced: every other call returns at
once, so the tests run at close to their usual speed.
"""

from __future__ import annotations

import atexit
import multiprocessing.util
import os
import sys
import threading
from pathlib import Path

ENV = "INFRALENS_MUTATE_TRACE"
STARTER_ENV = "INFRALENS_MUTATE_STARTER"


class Tracer:
    def __init__(self, out: Path):
        self.out = out
        self.targets = frozenset((out / "targets").read_text().split("\n")) - {""}
        self.root = (out / "root").read_text().strip()
        self.fd = os.open(out / "lines.tsv", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.unit = self.current_unit()
        self.seen: set[tuple[str, int]] = set()
        self.buffer: list[str] = []

    def current_unit(self) -> str:
        if os.environ.get(STARTER_ENV):
            return os.environ[STARTER_ENV]
        try:
            return (self.out / "unit").read_text().strip() or "?"
        except FileNotFoundError:
            return "?"

    def set_unit(self, unit: str) -> None:
        self.flush()
        self.unit = unit
        self.seen = set()

    def flush(self) -> None:
        if self.buffer:
            os.write(self.fd, "".join(self.buffer).encode())
            self.buffer = []

    def after_fork(self) -> None:
        self.buffer = []  # the parent's records are the parent's to write
        self.unit = self.current_unit()
        self.seen = set()

    def at_process_start(self) -> None:
        """A multiprocessing child (a rank) ends with ``os._exit``: flush from its exit finalizers."""
        multiprocessing.util.Finalize(self, self.flush, exitpriority=100)

    def call(self, frame, event, arg):
        if frame.f_code.co_filename in self.targets:
            self.line(frame, "line", None)
            return self.line
        return None

    def line(self, frame, event, arg):
        if event == "line":
            key = (frame.f_code.co_filename, frame.f_lineno)
            if key not in self.seen:
                self.seen.add(key)
                self.buffer.append(f"{self.unit}\t{key[0]}\t{key[1]}\n")
        return self.line

    def install(self) -> None:
        sys.settrace(self.call)
        threading.settrace(self.call)
        os.register_at_fork(after_in_child=self.after_fork)
        multiprocessing.util.register_after_fork(self, Tracer.at_process_start)
        atexit.register(self.flush)


TRACER: Tracer | None = None


def start_process_tracer() -> None:
    """From sitecustomize: trace this process (and its forks) under the current unit."""
    global TRACER
    out = os.environ.get(ENV)
    if not out or TRACER is not None:
        return
    TRACER = Tracer(Path(out))
    TRACER.install()
    script_started()


def script_started() -> None:
    """``sys.argv[0]`` names the script this process runs: a starter run by the smoke tests is its own unit.

    Called at process start, and by ``tests/preloaded_python.py`` in a child it forked for ``python <file>``.
    """
    if TRACER is None:
        return
    script = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0].endswith(".py") else None
    if TRACER.unit == "tests/test_starters.py" and script is not None:
        try:
            rel = script.relative_to(TRACER.root)
        except ValueError:
            rel = None
        if rel is not None and rel.parts[0] == "code":
            os.environ[STARTER_ENV] = f"starter:{rel.as_posix()}"  # inherited by the starter's own children
            TRACER.set_unit(os.environ[STARTER_ENV])


def unit_of(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def tracer() -> Tracer | None:
    """The process's tracer, started on first use when ``INFRALENS_MUTATE_TRACE`` is set."""
    global TRACER
    out = os.environ.get(ENV)
    if out and TRACER is None:
        TRACER = Tracer(Path(out))
        TRACER.install()
    return TRACER
