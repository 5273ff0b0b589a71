"""``python <file>`` and ``python -c <code>`` without paying for ``import torch`` each time.

The tests start about sixty Python processes (every starter, and every package of
the library imported alone); each one spent most of its CPU importing torch. This
module is a server that imports torch and numpy once and then *forks* a child per
request, so each child starts with them already in ``sys.modules`` and nothing of
``infralens`` loaded. A child then does what a fresh interpreter would for that
command line:

* ``python file.py`` in a folder: the working directory is the folder,
  ``sys.argv == ["file.py"]``, ``sys.path[0]`` is the script's folder, the file runs as
  ``__main__`` (``runpy.run_path``);
* ``python -c code``: ``sys.argv == ["-c"]``, ``sys.path[0] == ""``;

stdin is ``/dev/null``; stdout and stderr go to files the client reads; the exit
status is the script's (``SystemExit``, or 1 with the traceback on stderr for an
uncaught exception); ``atexit`` handlers run. A child is its own process group and
dies with the server (``PR_SET_PDEATHSIG``); on timeout its whole group is killed.

What a child cannot show: warnings that ``import torch`` itself prints (the server
took them) and the time the import takes. The server imports nothing else of
ours, so an import error or cycle inside ``infralens`` shows in the child as it
would in a fresh process.

Protocol: one JSON request per line on the server's stdin, ``{"id", "cwd",
"stdout", "stderr", "timeout"}`` and ``"path"`` or ``"code"``; one JSON answer per
line on its stdout, ``{"id", "rc"}`` (``rc`` null on timeout, a message when the fork failed). EOF on stdin: the
server kills the children still running and exits. The client is
:class:`PreloadedPython` (used by ``conftest.py``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

PRELOAD = ("numpy", "torch")


# --- the server (this file run as a script) -------------------------------------------------------


def _child(req: dict) -> None:  # pragma: no cover - runs in the forked child, ends with os._exit
    import atexit
    import ctypes
    import runpy
    import signal
    import traceback

    os.setpgid(0, 0)
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the server
    for fd, (path, flags) in enumerate(
        [
            (os.devnull, os.O_RDONLY),
            (req["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (req["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ]
    ):
        opened = os.open(path, flags, 0o644)
        os.dup2(opened, fd)
        os.close(opened)
    # Python's own defaults for files that are not a terminal: stdout block-buffered, stderr by line
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", buffering=1, closefd=False)
    os.chdir(req["cwd"])
    process = sys.modules.get("multiprocessing.process")  # torch imported it in the server's folder
    if process is not None:
        process.ORIGINAL_DIR = os.getcwd()  # where spawned processes look for a relative __main__
    rc = 0
    try:
        if "path" in req:
            sys.argv = [req["path"]]
            sys.path[0] = os.path.dirname(os.path.abspath(req["path"]))
            tracer = sys.modules.get("mutation_tracer")  # tools/mutate.py's coverage map, when it traces
            if tracer is not None:
                tracer.script_started()
            runpy.run_path(os.path.abspath(req["path"]), run_name="__main__")  # __file__ absolute, as in 3.9+
        else:
            sys.argv = ["-c"]
            sys.path[0] = ""
            exec(compile(req["code"], "<string>", "exec"), {"__name__": "__main__", "__builtins__": __builtins__})
    except SystemExit as stop:
        if stop.code is None:
            rc = 0
        elif isinstance(stop.code, int):
            rc = stop.code
        else:
            print(stop.code, file=sys.stderr)
            rc = 1
    except BaseException:
        traceback.print_exc()
        rc = 1
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                rc = rc or 120  # as Python does when it cannot flush stdout at exit
        os._exit(rc)


def serve() -> None:  # pragma: no cover - the server process
    import contextlib
    import importlib
    import select
    import signal
    import time

    for name in PRELOAD:
        importlib.import_module(name)
    running: dict[int, tuple[str, int, float]] = {}  # pidfd: (id, pid, deadline)
    pending = b""  # requests read but not started (os.read: select sees no bytes a buffer holds)

    def answer(rid, rc) -> None:
        sys.stdout.write(json.dumps({"id": rid, "rc": rc}) + "\n")
        sys.stdout.flush()

    answer(None, "ready")
    stdin_open = True
    while stdin_open or running:
        now = time.monotonic()
        wait = min((d for _, _, d in running.values()), default=now + 3600) - now
        ready, _, _ = select.select([0] * stdin_open + list(running), [], [], max(0.0, wait))
        for fd in ready:
            if fd == 0:
                chunk = os.read(0, 1 << 16)
                if not chunk:
                    stdin_open = False
                    for _, pid, _ in running.values():  # the client is gone: so are its children
                        with contextlib.suppress(ProcessLookupError):
                            os.killpg(pid, signal.SIGKILL)
                    continue
                pending += chunk
                *lines, pending = pending.split(b"\n")
                for line in lines:
                    req = json.loads(line)
                    for attempt in (1, 2):
                        try:
                            pid = os.fork()
                            break
                        except OSError as exc:  # the machine's (seen once in CI, both cores busy): once more
                            if attempt == 2:
                                answer(req["id"], f"fork failed: {exc!r}")
                                pid = None
                            else:
                                time.sleep(2)
                    if pid == 0:
                        _child(req)
                    if pid is not None:
                        running[os.pidfd_open(pid)] = (req["id"], pid, time.monotonic() + req["timeout"])
            else:
                rid, pid, _ = running.pop(fd)
                os.close(fd)
                _, status = os.waitpid(pid, 0)
                answer(rid, os.waitstatus_to_exitcode(status))
        now = time.monotonic()
        for fd, (rid, pid, deadline) in list(running.items()):
            if now >= deadline:  # too slow: the child and everything it started
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                running.pop(fd)
                os.close(fd)
                answer(rid, None)


# --- the client ----------------------------------------------------------------------------------


class PreloadedPython:
    """Runs ``python <file>`` / ``python -c <code>`` as forks of one server with torch imported.

    Thread-safe: requests from several threads run at the same time (one child each).
    :meth:`run` returns a :class:`subprocess.CompletedProcess` like ``subprocess.run(...,
    capture_output=True, text=True)`` and raises :class:`subprocess.TimeoutExpired` on timeout.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._waiting: dict[int, Future] = {}
        self._next = 0
        self._tmp = Path(tempfile.mkdtemp(prefix="infralens-preloaded-"))

    def _server(self) -> subprocess.Popen:
        if self._proc is None:
            self._err = open(self._tmp / "server.err", "w")  # closed in close()
            self._proc = subprocess.Popen(
                [sys.executable, __file__],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=self._err,  # the server's own errors
                text=True,
                bufsize=1,
            )
            first = self._proc.stdout.readline()
            if json.loads(first or "{}").get("rc") != "ready":
                raise RuntimeError(f"the preloaded Python did not start: {(self._tmp / 'server.err').read_text()}")
            threading.Thread(target=self._read, daemon=True, name="preloaded-python").start()
        return self._proc

    def _read(self) -> None:
        for line in self._proc.stdout:
            answer = json.loads(line)
            with self._lock:
                future = self._waiting.pop(answer["id"])
            future.set_result(answer["rc"])
        err = (self._tmp / "server.err").read_text()
        with self._lock:  # the server is gone: every request still waiting fails, with its reason
            for future in self._waiting.values():
                future.set_exception(RuntimeError(f"the preloaded Python exited: {err[-2000:]}"))
            self._waiting.clear()

    def run(
        self, *, path: str | None = None, code: str | None = None, cwd: Path | str = ".", timeout: float = 300
    ) -> subprocess.CompletedProcess:
        if (path is None) == (code is None):
            raise ValueError("give path (python <file>) or code (python -c <code>), not both, not neither")
        with self._lock:
            self._next += 1
            rid = self._next
            future = self._waiting[rid] = Future()
        out, err = self._tmp / f"{rid}.out", self._tmp / f"{rid}.err"
        req = {"id": rid, "cwd": str(cwd), "stdout": str(out), "stderr": str(err), "timeout": timeout}
        req.update({"path": path} if path is not None else {"code": code})
        args = [sys.executable, path] if path is not None else [sys.executable, "-c", code]
        with self._lock:
            server = self._server()
            server.stdin.write(json.dumps(req) + "\n")
            server.stdin.flush()
        rc = future.result()
        stdout = out.read_text(errors="replace") if out.exists() else ""
        stderr = err.read_text(errors="replace") if err.exists() else ""
        out.unlink(missing_ok=True)
        err.unlink(missing_ok=True)
        if isinstance(rc, str):
            raise RuntimeError(f"could not start `{' '.join(args[1:])}` in {cwd}: {rc}")
        if rc is None:
            raise subprocess.TimeoutExpired(args, timeout, output=stdout, stderr=stderr)
        return subprocess.CompletedProcess(args, rc, stdout, stderr)

    def close(self) -> None:
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
            self._proc.stdout.close()
            self._err.close()
        for path in self._tmp.iterdir():
            path.unlink()
        self._tmp.rmdir()


if __name__ == "__main__":
    serve()
