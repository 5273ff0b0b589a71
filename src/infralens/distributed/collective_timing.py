r"""Time real collectives of an initialised process group, the measurements the alpha-beta fit reads.

Called on every rank of a ``torch.distributed`` group (gloo on CPU here). For
each collective and size it runs one untimed warm-up call, then ``repeats``
rounds over every collective and size, each call after a barrier so that all
ranks start together, and keeps the *fastest* call of each: on a shared
machine the slower calls measure the neighbours as much as the collective,
and interleaving the sizes spreads a burst of load over all of them. Sizes follow the nccl-tests convention of
:mod:`~infralens.distributed.collective_cost`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from infralens.core import positive_int

from .alpha_beta_fit import Sample
from .collective_cost import COLLECTIVES
from .launch import run_ranks

DEFAULT_SIZES: tuple[int, ...] = tuple(4**k for k in range(2, 12))
"""Message sizes in bytes: 16 B to 4 MiB, a factor of 4 apart."""


def _call(collective: str, nbytes: int, world_size: int) -> Callable[[], object]:
    """One collective on float32 buffers of ``nbytes`` (nccl-tests convention), ready to call."""
    n = nbytes // 4  # float32 elements of N
    full, full_out = torch.ones(n), torch.empty(n)  # (N/4,) each
    part, part_out = torch.ones(n // world_size), torch.empty(n // world_size)  # (N/4/n,) one rank's share
    if collective == "all_reduce":
        return lambda: dist.all_reduce(full)
    if collective == "all_gather":  # N is the gathered output
        return lambda: dist.all_gather_single(full_out, part)
    if collective == "reduce_scatter":  # N is the whole input
        return lambda: dist.reduce_scatter_single(part_out, full)
    return lambda: dist.all_to_all_single(full_out, full)  # N is what each rank holds


def time_collectives(
    collectives: Sequence[str] = tuple(COLLECTIVES),
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    repeats: int = 15,
) -> list[Sample]:
    """Fastest of ``repeats`` timed calls of each collective at each size, on this rank's clock.

    Every rank must call it with the same arguments (it runs collectives).
    Sizes must be multiples of ``4 * world_size`` bytes, so that every rank's
    share is a whole number of float32 values.
    """
    if not dist.is_initialized():
        raise ValueError("time_collectives runs inside a process group: call dist.init_process_group first")
    world = dist.get_world_size()
    reps = positive_int("repeats", repeats, example=15)
    for name in collectives:
        if name not in COLLECTIVES:
            raise ValueError(f"collectives must be among {', '.join(COLLECTIVES)}, e.g. ('all_reduce',); got {name!r}")
    for size in sizes:
        if positive_int("sizes", size, example=1024) % (4 * world):
            step = 4 * world
            raise ValueError(
                f"sizes must be multiples of 4 * world_size = {step} bytes (float32 shares), "
                f"e.g. {max(step, size // step * step)}; got {size}"
            )
    runs = [(name, size, _call(name, size, world)) for name in collectives for size in sizes]
    for _, _, call in runs:
        call()  # warm-up: connections and buffers
    best = [float("inf")] * len(runs)
    for _ in range(reps):  # repeats outermost: a burst of load on the machine touches every size alike
        for i, (_, _, call) in enumerate(runs):
            dist.barrier()
            start = time.perf_counter()
            call()
            best[i] = min(best[i], time.perf_counter() - start)
    return [Sample(name, size, t) for (name, size, _), t in zip(runs, best, strict=True)]


def _time_rank(rank: int, world_size: int, collectives: tuple[str, ...], sizes: tuple[int, ...], repeats: int):
    return time_collectives(collectives, sizes, repeats=repeats)


def measure_collectives(
    world_size: int = 2,
    collectives: Sequence[str] = tuple(COLLECTIVES),
    sizes: Sequence[int] = DEFAULT_SIZES,
    *,
    repeats: int = 15,
    timeout: float = 60.0,
) -> list[Sample]:
    """:func:`time_collectives` on ``world_size`` fresh gloo processes (:func:`~infralens.distributed.run_ranks`).

    Returns rank 0's samples. With the defaults it takes about a second once
    the processes are up.
    """
    args = (tuple(collectives), tuple(sizes), repeats)
    return run_ranks(_time_rank, world_size, args=args, timeout=timeout)[0]
