r"""The alpha-beta cost model of collectives: a start-up latency per step plus a time per byte sent.

A collective over :math:`N` ranks runs in :math:`s` sequential steps; in each
step a rank sends one message. With :math:`\alpha` seconds of latency per
step and :math:`\beta` seconds per byte on the link (one over its bandwidth),

.. math:: T = s\,\alpha + v\,n\,\beta

where :math:`n` is the message size and :math:`v n` the bytes one rank sends
along the critical path (the track's convention: :math:`N` ranks, :math:`n`
bytes, as in :func:`~infralens.distributed.ring_allreduce_bytes`). :math:`n` follows the nccl-tests convention: the
buffer each rank holds for all-reduce and all-to-all, the *whole* gathered
output for all-gather and the *whole* input for reduce-scatter.

============== ========== ========================= ===============================
collective      algorithm  steps :math:`s`           volume :math:`v`
============== ========== ========================= ===============================
all-reduce      ring       :math:`2(N-1)`            :math:`2(N-1)/N`
all-reduce      tree       :math:`2\lceil\log_2 N\rceil` :math:`2\lceil\log_2 N\rceil`
all-gather      ring       :math:`N-1`               :math:`(N-1)/N`
reduce-scatter  ring       :math:`N-1`               :math:`(N-1)/N`
all-to-all      pairwise   :math:`N-1`               :math:`(N-1)/N`
============== ========== ========================= ===============================

The ring all-reduce is a reduce-scatter followed by an all-gather (Patarasuk
and Yuan 2009); the tree is a binomial-tree reduce followed by a broadcast,
each step carrying the whole buffer (Thakur, Rabenseifner and Gropp 2005).
NCCL's own tuner uses the same form, a latency per step plus bytes over a
bandwidth (``src/graph/tuning.cc``). Reductions' arithmetic is not modelled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infralens.core import positive_int

from ._args import non_negative

COLLECTIVES: dict[str, tuple[str, ...]] = {
    "all_reduce": ("ring", "tree"),
    "all_gather": ("ring",),
    "reduce_scatter": ("ring",),
    "all_to_all": ("pairwise",),
}
"""Each collective the model knows and its algorithms; the first is the default."""


@dataclass(frozen=True)
class CollectiveTerms:
    """The two coefficients of :math:`T = s\\alpha + vn\\beta` for one collective, algorithm and world size."""

    collective: str
    algorithm: str
    world_size: int
    steps: int
    """:math:`s`, sequential message steps: what :math:`\\alpha` is paid for."""
    volume: float
    """:math:`v`, bytes a rank sends on the critical path per byte of :math:`n`."""

    def time(self, nbytes: float, *, alpha: float, beta: float) -> float:
        """Seconds for a message of ``nbytes``: :math:`s\\alpha + vn\\beta`."""
        return self.steps * alpha + self.volume * nbytes * beta


def _check_collective(collective: object, algorithm: object) -> str:
    if collective not in COLLECTIVES:
        raise ValueError(f"collective must be one of {', '.join(COLLECTIVES)}, e.g. 'all_reduce'; got {collective!r}")
    allowed = COLLECTIVES[collective]
    algo = allowed[0] if algorithm is None else algorithm
    if algo not in allowed:
        raise ValueError(
            f"algorithm for {collective} must be one of {', '.join(allowed)}, e.g. algorithm={allowed[0]!r}; "
            f"got {algorithm!r}"
        )
    return algo


def collective_terms(collective: str, world_size: int, *, algorithm: str | None = None) -> CollectiveTerms:
    r"""Steps :math:`s` and volume :math:`v` of a collective (see the module's table).

    >>> t = collective_terms("all_reduce", 8)
    >>> t.steps, t.volume
    (14, 1.75)
    >>> collective_terms("all_reduce", 8, algorithm="tree").steps
    6
    """
    algo = _check_collective(collective, algorithm)
    n = positive_int("world_size", world_size, example=8)
    if algo == "tree":
        rounds = 2 * math.ceil(math.log2(n))  # binomial reduce, then broadcast
        return CollectiveTerms(collective, algo, n, rounds, float(rounds))
    steps = 2 * (n - 1) if collective == "all_reduce" else n - 1
    return CollectiveTerms(collective, algo, n, steps, steps / n)


def collective_time(
    collective: str,
    nbytes: float,
    world_size: int,
    *,
    alpha: float,
    beta: float,
    algorithm: str | None = None,
) -> float:
    r"""Seconds of one collective by the alpha-beta model, :math:`s\alpha + vn\beta`.

    :param collective: ``"all_reduce"``, ``"all_gather"``, ``"reduce_scatter"`` or ``"all_to_all"``.
    :param nbytes: :math:`n` in the nccl-tests convention (see the module).
    :param world_size: :math:`N`, ranks in the group.
    :param alpha: seconds of latency per step.
    :param beta: seconds per byte (1 / bandwidth in bytes per second).
    :param algorithm: ``"ring"`` or ``"tree"`` for all-reduce (default ring).

    A 1 GB ring all-reduce over 8 ranks at 50 GB/s moves 1.75 GB per rank:

    >>> round(collective_time("all_reduce", 1e9, 8, alpha=0.0, beta=1 / 50e9), 4)
    0.035
    """
    n = collective_terms(collective, world_size, algorithm=algorithm)
    size = non_negative("nbytes", nbytes, example=1024)
    a = non_negative("alpha", alpha, example=5e-6)
    b = non_negative("beta", beta, example=2e-11)
    return n.time(size, alpha=a, beta=b)


def bus_bandwidth(collective: str, nbytes: float, seconds: float, world_size: int) -> tuple[float, float]:
    r"""Algorithm bandwidth :math:`n/T` and bus bandwidth :math:`vn/T` in bytes per second (nccl-tests).

    The bus bandwidth counts the bytes one rank actually sends, so it is the
    number to compare with a link's bandwidth whatever the collective or the
    world size; the algorithm bandwidth of an all-reduce is lower by
    :math:`2(N-1)/N`.

    >>> algbw, busbw = bus_bandwidth("all_reduce", 1e9, 0.035, 8)
    >>> round(algbw / 1e9, 2), round(busbw / 1e9, 2)
    (28.57, 50.0)
    """
    terms = collective_terms(collective, world_size)  # the bus factor is the ring's volume
    size = non_negative("nbytes", nbytes, example=1024)
    t = non_negative("seconds", seconds, example=0.035)
    if t == 0:
        raise ValueError(f"seconds must be > 0, e.g. seconds=0.035; got {seconds!r}")
    return size / t, terms.volume * size / t
