"""Run a function on N real ``torch.distributed`` processes, bounded in time, and collect what each rank returns.

:func:`run_ranks` is the one launcher of the book: the starters, the tests and
the pages' doctests start their process groups through it. Each rank is a
separate Python process with a gloo process group on ``127.0.0.1`` (the
rendezvous store listens on a free port chosen by the OS), so every collective
really crosses a process boundary, the way NCCL ranks do on a GPU cluster.

The contract:

- ``fn(rank, world_size, *args)`` runs in every rank with the default process
  group initialised; its return value (plain data and tensors: it is pickled)
  becomes ``results[rank]``.
- A rank that raises fails the run: :class:`RankError` names the rank, the
  exception and its traceback, and the other ranks are stopped at once (they
  would otherwise wait in a collective for the rank that died).
- The whole run is bounded by ``timeout``: a hang raises :class:`TimeoutError`
  naming the ranks still running, and every rank is stopped. Each rank also
  exits by itself if the launching process disappears, so nothing is orphaned.

Processes come from a fork server (``multiprocessing``'s ``forkserver``) that
imports torch once, with the ``torch.distributed`` modules the caller had
imported when it started; each launch then forks ranks from it, which costs a
small fraction of starting Python and importing torch per rank. ``fn`` must be
importable by the ranks: a function defined at the top level of a module, of
the script being run, or named as ``"path/to/file.py:function"`` (the form
pages and tests use for a starter's or a test file's function).
"""

from __future__ import annotations

import datetime
import hashlib
import importlib
import importlib.util
import multiprocessing
import multiprocessing.connection
import os
import pickle
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from infralens.core import positive_int

__all__ = ["DEFAULT_TIMEOUT", "RankError", "run_ranks"]

DEFAULT_TIMEOUT = 60.0
"""Seconds a whole run may take before every rank is stopped."""

_ERROR_GRACE = 0.5  # after a rank fails, how long its peers may take to report their own errors
_EXIT_GRACE = 10.0  # a rank outlives the timeout by this much at most, even if its launcher vanished
# DDP, FSDP and DTensor all import torch._dynamo (seconds): once in the fork server, not in every rank
_PRELOAD = ["__main__", "torch", "torch.distributed", "torch._dynamo", __name__]


class RankError(RuntimeError):
    """A rank raised (or died): carries the rank, the exception's type and message, and the rank's traceback."""

    def __init__(self, rank: int, kind: str, message: str, remote_traceback: str = ""):
        self.rank, self.kind, self.message, self.remote_traceback = rank, kind, message, remote_traceback
        text = f"rank {rank} failed: {kind}: {message}"
        if remote_traceback:
            text += f"\n\nTraceback of rank {rank}:\n{remote_traceback.rstrip()}"
        super().__init__(text)


class _Target:
    """``fn`` as the ranks find it: a picklable callable, or ``"file.py:name"`` / ``"package.module:name"``."""

    def __init__(self, fn: Callable[..., Any] | str):
        if isinstance(fn, str):
            where, sep, name = fn.rpartition(":")
            if not sep or not where or not name.isidentifier():
                raise ValueError(
                    f"fn must be a function or 'path/to/file.py:function' or 'package.module:function', "
                    f"e.g. fn='tests/distributed/test_launch.py:report_rank'; got {fn!r}"
                )
            if where.endswith(".py"):
                path = Path(where).resolve()
                if not path.is_file():
                    raise ValueError(f"fn names a file that does not exist: {where!r} (resolved to {path})")
                where = str(path)
            self.spec: tuple[str, str] | None = (where, name)
            self.fn = None
        elif callable(fn):
            try:
                pickle.dumps(fn)
            except Exception as exc:  # a lambda, a closure, a function defined in a doctest
                raise ValueError(
                    f"fn must be importable by the ranks (a function at the top level of a module or script, "
                    f"or 'path/to/file.py:function'); {fn!r} is not: {exc}"
                ) from None
            self.spec, self.fn = None, fn
        else:
            raise ValueError(f"fn must be a function or 'path/to/file.py:function'; got {type(fn).__name__}")

    def resolve(self) -> Callable[..., Any]:
        if self.spec is None:
            return self.fn
        where, name = self.spec
        if where.endswith(".py"):
            module_name = "_infralens_rank_" + hashlib.sha1(where.encode()).hexdigest()[:12]
            module = sys.modules.get(module_name)
            if module is None:
                spec = importlib.util.spec_from_file_location(module_name, where)
                module = importlib.util.module_from_spec(spec)
                sys.modules[module_name] = module
                spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
        return getattr(module, name)


def _loopback_interface() -> str | None:
    names = {name for _, name in socket.if_nameindex()} if hasattr(socket, "if_nameindex") else set()
    return next((n for n in ("lo", "lo0") if n in names), None)


def _watchdog(alive: multiprocessing.connection.Connection, seconds: float) -> None:
    """Exit the rank when its launcher closes (or loses) the ``alive`` pipe, or when ``seconds`` have passed."""
    multiprocessing.connection.wait([alive], timeout=seconds)
    os._exit(70)


def _rank_main(target, rank, world_size, port, args, timeout, threads, result_pipe, alive) -> None:
    threading.Thread(target=_watchdog, args=(alive, timeout + _EXIT_GRACE), daemon=True).start()
    # BytesSent counts every byte the process writes (/proc/self/io): a module imported for the first
    # time inside a measured block (torch imports some lazily) would add its .pyc file to the count
    sys.dont_write_bytecode = True
    loopback = _loopback_interface()
    if loopback:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback)
    torch.set_num_threads(threads)
    try:
        fn = target.resolve()
        limit = datetime.timedelta(seconds=timeout)
        store = dist.TCPStore("127.0.0.1", port, world_size + 1, is_master=False, timeout=limit)
        dist.init_process_group("gloo", store=store, rank=rank, world_size=world_size, timeout=limit)
        result = fn(rank, world_size, *args)
        dist.barrier()  # no rank closes its connections while a peer still reads from them
        payload = pickle.dumps(("ok", result))
    except BaseException as exc:  # reported first: a peer's later error is a consequence of this one
        payload = pickle.dumps(("error", time.time(), type(exc).__name__, str(exc), traceback.format_exc()))
    result_pipe.send_bytes(payload)
    result_pipe.close()
    if dist.is_initialized():
        dist.destroy_process_group()


_context_ready = False


def _context() -> multiprocessing.context.BaseContext:
    global _context_ready
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    ctx = multiprocessing.get_context("forkserver")
    if not _context_ready:
        # The server imports torch once, and whatever torch.distributed machinery the caller has
        # imported by now (FSDP, DTensor, pipelining take seconds each); ranks are forked from it.
        loaded = sorted(m for m in sys.modules if m.startswith(("torch.distributed.", "torch.nn.parallel")))
        ctx.set_forkserver_preload([*_PRELOAD, *loaded])
        _context_ready = True
    return ctx


def _stop(procs: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for p in procs:
        if p.is_alive():
            p.terminate()
    for p in procs:
        p.join(timeout=2.0)
        if p.is_alive():
            p.kill()
            p.join(timeout=2.0)


def _message(proc, reader) -> tuple | None:
    """The rank's report, an ``("error", ...)`` tuple if it died without one, or ``None`` if it is still running."""
    if reader.poll():
        try:
            return pickle.loads(reader.recv_bytes())
        except EOFError:
            pass
    elif proc.is_alive():
        return None  # its sentinel fired before its pipe: look again
    proc.join(timeout=1.0)  # died without a word (os._exit, a signal, a crash in C++): the likeliest cause of all
    return ("error", float("-inf"), "exit", f"exited with code {proc.exitcode} before returning", "")


def _collect(procs, readers, deadline: float) -> dict[int, Any] | list[int]:
    """Every rank's result by rank, or the ranks still running at ``deadline``; raises the first rank's error.

    After a first error the others get :data:`_ERROR_GRACE` seconds to report
    theirs. A rank that died without reporting is named first, then the one that
    raised earliest (by the ranks' clocks, which are this machine's): a peer's
    "connection reset" is a consequence, not the cause.
    """
    results: dict[int, Any] = {}
    errors: dict[int, tuple] = {}
    waiting = dict(enumerate(readers))
    while waiting:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        watch = {id(r): (rank, r) for rank, r in waiting.items()}
        watch.update({id(procs[rank].sentinel): (rank, procs[rank].sentinel) for rank in waiting})
        ready = multiprocessing.connection.wait([obj for _, obj in watch.values()], timeout=remaining)
        for rank in sorted({watch[id(obj)][0] for obj in ready}):
            message = _message(procs[rank], waiting[rank])
            if message is None:
                continue
            del waiting[rank]
            if message[0] == "ok":
                results[rank] = message[1]
            else:
                errors[rank] = message[1:]
                deadline = min(deadline, time.monotonic() + _ERROR_GRACE)
    if errors:
        first = min(errors, key=lambda rank: errors[rank][0])
        raise RankError(first, *errors[first][1:])
    return results if not waiting else sorted(waiting)


def run_ranks(
    fn: Callable[..., Any] | str,
    world_size: int = 2,
    *,
    args: Sequence[Any] = (),
    timeout: float = DEFAULT_TIMEOUT,
    threads: int = 1,
) -> list[Any]:
    """Run ``fn(rank, world_size, *args)`` on ``world_size`` gloo processes and return their results by rank.

    :param fn: a function importable by the ranks, or ``"path/to/file.py:function"``.
    :param world_size: processes to start (2 to 4 on a small machine).
    :param args: extra positional arguments for ``fn`` (pickled to every rank).
    :param timeout: seconds for the whole run, start-up included; then every rank is stopped.
    :param threads: torch intra-op threads per rank (1: the ranks share the machine's cores).
    :returns: ``[fn's result on rank 0, on rank 1, ...]``.
    :raises RankError: a rank raised or died; the other ranks were stopped.
    :raises TimeoutError: the run did not finish in ``timeout`` seconds; every rank was stopped.

    >>> run_ranks("infralens.distributed.launch:_rank_and_size", 3)
    [(0, 3), (1, 3), (2, 3)]
    """
    target = _Target(fn)
    n = positive_int("world_size", world_size, example=2)
    workers = positive_int("threads", threads, example=1)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a number of seconds > 0, e.g. timeout=60; got {timeout!r}")
    args = tuple(args)
    ctx = _context()
    deadline = time.monotonic() + timeout
    limit = datetime.timedelta(seconds=timeout)
    store = dist.TCPStore("127.0.0.1", 0, n + 1, is_master=True, wait_for_workers=False, timeout=limit)
    alive_r, alive_w = ctx.Pipe(duplex=False)
    procs, readers = [], []
    try:
        for rank in range(n):
            reader, writer = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_rank_main,
                args=(target, rank, n, store.port, args, timeout, workers, writer, alive_r),
                name=f"infralens-rank-{rank}",
                daemon=True,
            )
            proc.start()
            writer.close()
            procs.append(proc)
            readers.append(reader)
        results = _collect(procs, readers, deadline)
        if isinstance(results, dict):
            for proc in procs:  # each sent its result; let it close its process group and exit
                proc.join(timeout=max(1.0, deadline - time.monotonic()))
            return [results[rank] for rank in range(n)]
        name = fn if isinstance(fn, str) else getattr(fn, "__qualname__", fn)
        raise TimeoutError(
            f"ranks {results} of world_size={n} did not finish within timeout={timeout:g} s ({name}); "
            "every rank was stopped"
        )
    finally:
        _stop(procs)
        alive_w.close()
        alive_r.close()
        for reader in readers:
            reader.close()
        del store


def _rank_and_size(rank: int, world_size: int) -> tuple[int, int]:
    """What each rank's process group says about itself (the launcher's own example)."""
    return dist.get_rank(), dist.get_world_size()
