"""Bytes a rank really sends: the kernel's count of what the process wrote (Linux ``/proc/self/io``).

gloo moves tensors over TCP sockets with ``write``/``writev``, which the
kernel counts in the process's ``wchar``. The difference of that counter around
a collective is what the collective sent from this rank (plus gloo's small
headers, and anything else the process wrote meanwhile, so keep the block
short: a module Python imports for the first time writes its ``.pyc`` file, which
is why :func:`~infralens.distributed.run_ranks` turns bytecode writing off in its
ranks). It measures the library's actual algorithm, which is what the byte
formulas of :mod:`infralens.distributed` are checked against.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType

_IO = Path("/proc/self/io")


def _wchar() -> int:
    for line in _IO.read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no wchar line")  # pragma: no cover


class BytesSent:
    """Context manager: ``with BytesSent() as sent: ...`` then ``sent.bytes`` (Linux only).

    >>> import os
    >>> fd = os.open(os.devnull, os.O_WRONLY)
    >>> with BytesSent() as sent:
    ...     _ = os.write(fd, b"x" * 1000)
    >>> os.close(fd)
    >>> sent.bytes
    1000
    """

    def __init__(self) -> None:
        if not _IO.exists():
            raise RuntimeError("BytesSent reads /proc/self/io, which only Linux has")
        self.bytes = 0
        self._start = 0

    def __enter__(self) -> BytesSent:
        self._start = _wchar()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.bytes = _wchar() - self._start
