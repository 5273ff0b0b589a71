"""The launcher: real gloo processes, results by rank, a failing or hanging rank named, nothing left running.

The rank functions live at the top level of this file and are handed to the
ranks as ``"<this file>:<name>"``, the form pages use for a starter's functions.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infralens.distributed import RankError, run_ranks

HERE = Path(__file__).resolve()


def target(name: str) -> str:
    return f"{HERE}:{name}"


def gone(pid: int) -> bool:
    """True once ``pid`` has exited: no process at all, or a zombie that nobody has reaped yet.

    A rank whose launcher was killed is re-parented; whether its new parent reaps it at once depends
    on the machine (a container's first process may never), so an exited, unreaped rank counts.
    """
    try:
        os.kill(pid, 0)
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (ProcessLookupError, FileNotFoundError):
        return True
    return stat.rsplit(")", 1)[1].split()[0] in {"Z", "X"}  # the state field follows the command name


def wait_gone(pids, seconds: float = 5.0) -> list[int]:
    end = time.monotonic() + seconds
    while time.monotonic() < end and not all(gone(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if not gone(p)]


# --- rank functions -------------------------------------------------------------------------------


def sum_of_ranks(rank, world_size):
    t = torch.tensor([float(rank + 1)])
    dist.all_reduce(t)  # 1 + 2 + ... + N, through gloo
    return {"rank": dist.get_rank(), "size": dist.get_world_size(), "sum": t.item(), "pid": os.getpid()}


def write_pid(folder: str, rank: int) -> None:
    Path(folder, f"rank{rank}.pid").write_text(str(os.getpid()))


def raise_on_rank_1(rank, world_size, folder):
    write_pid(folder, rank)
    if rank == 1:
        raise ValueError("boom on rank 1")
    dist.all_reduce(torch.ones(1))  # rank 0 would wait here forever for rank 1
    return "unreachable"


def hang_on_rank_1(rank, world_size, folder):
    write_pid(folder, rank)
    if rank == 1:
        time.sleep(3600)
    return "rank 0 returned"


def die_on_rank_0(rank, world_size, folder):
    write_pid(folder, rank)
    if rank == 0:
        os._exit(3)
    dist.all_reduce(torch.ones(1))


def import_while_counting(rank, world_size, folder):
    """Bytes counted while importing a module never imported before: its .pyc would be one write."""
    from infralens.distributed import BytesSent

    sys.path.insert(0, folder)
    with BytesSent() as sent:
        __import__(f"fresh_module_{rank}")
    return sent.bytes, sorted(p.name for p in Path(folder).rglob("*.pyc"))


def pids_of(folder: Path, n: int) -> list[int]:
    end = time.monotonic() + 5
    while time.monotonic() < end and len(list(folder.glob("rank*.pid"))) < n:
        time.sleep(0.05)
    return [int(p.read_text()) for p in sorted(folder.glob("rank*.pid"))]


# --- tests ------------------------------------------------------------------------------------------


def test_results_come_back_by_rank_from_separate_processes():
    results = run_ranks(target("sum_of_ranks"), 3, timeout=60)
    assert [(r["rank"], r["size"], r["sum"]) for r in results] == [(0, 3, 6.0), (1, 3, 6.0), (2, 3, 6.0)]
    pids = [r["pid"] for r in results]
    assert len(set(pids)) == 3 and os.getpid() not in pids
    assert wait_gone(pids) == []


def test_a_rank_that_raises_fails_the_run_with_its_rank_message_and_traceback(tmp_path):
    start = time.monotonic()
    with pytest.raises(RankError) as info:
        run_ranks(target("raise_on_rank_1"), 2, args=(str(tmp_path),), timeout=60)
    assert time.monotonic() - start < 30, "the waiting rank is stopped, not left to time out"
    err = info.value
    assert (err.rank, err.kind, err.message) == (1, "ValueError", "boom on rank 1")
    assert str(err).startswith("rank 1 failed: ValueError: boom on rank 1")
    assert "in raise_on_rank_1" in err.remote_traceback
    assert wait_gone(pids_of(tmp_path, 2)) == []


def test_a_hanging_rank_times_out_and_every_rank_is_stopped(tmp_path):
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=r"ranks \[.*1\] of world_size=2 did not finish within timeout=2 s"):
        run_ranks(target("hang_on_rank_1"), 2, args=(str(tmp_path),), timeout=2)
    assert time.monotonic() - start < 10
    assert wait_gone(pids_of(tmp_path, 2)) == []


def test_a_rank_that_dies_without_raising_is_named(tmp_path):
    with pytest.raises(RankError, match=r"rank 0 failed: exit: exited with code 3 before returning"):
        run_ranks(target("die_on_rank_0"), 2, args=(str(tmp_path),), timeout=60)
    assert wait_gone(pids_of(tmp_path, 2)) == []


def test_ranks_exit_when_their_launcher_is_killed(tmp_path):
    """No orphans: SIGKILL the launching process (no finally runs) and its ranks still go away."""
    script = textwrap.dedent(f"""
        from infralens.distributed import run_ranks
        run_ranks({target("hang_on_rank_1")!r}, 2, args=({str(tmp_path)!r},), timeout=600)
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    launcher = subprocess.Popen([sys.executable, "-c", script], env=env)
    try:
        pids = pids_of(tmp_path, 2) if launcher.poll() is None else []
        end = time.monotonic() + 300  # a loaded machine takes long to import torch in three processes
        while len(pids) < 2 and time.monotonic() < end:
            pids = pids_of(tmp_path, 2)
        assert len(pids) == 2, "the ranks started"
        launcher.send_signal(signal.SIGKILL)
        launcher.wait(timeout=10)
        assert wait_gone(pids, seconds=10) == []
    finally:
        if launcher.poll() is None:
            launcher.kill()
            launcher.wait()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"world_size": 0}, r"world_size must be >= 1, e.g. world_size=2; got 0"),
        ({"timeout": 0}, r"timeout must be a number of seconds > 0, e.g. timeout=60; got 0"),
        ({"threads": 0}, r"threads must be >= 1, e.g. threads=1; got 0"),
        ({"fn": lambda rank, world_size: rank}, r"fn must be importable by the ranks"),
        ({"fn": "no_colon_here"}, r"fn must be a function or 'path/to/file.py:function'"),
        ({"fn": "missing_file.py:main"}, r"fn names a file that does not exist: 'missing_file.py'"),
        ({"fn": 42}, r"fn must be a function or 'path/to/file.py:function'; got int"),
    ],
)
def test_bad_arguments_are_refused_before_any_process_starts(kwargs, message):
    call = {"fn": target("sum_of_ranks"), "world_size": 2, **kwargs}
    with pytest.raises(ValueError, match=message):
        run_ranks(call.pop("fn"), call.pop("world_size"), **call)


def test_ranks_write_no_bytecode_so_bytes_sent_counts_only_the_sockets(tmp_path):
    """A first import inside a measured block adds nothing (a .pyc written there would count as sent)."""
    for rank in range(2):
        (tmp_path / f"fresh_module_{rank}.py").write_text("VALUE = " + repr("x" * 20_000) + "\n")
    results = run_ranks(target("import_while_counting"), 2, args=(str(tmp_path),), timeout=60)
    assert results == [(0, []), (0, [])]
