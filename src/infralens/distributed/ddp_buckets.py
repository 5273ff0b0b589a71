r"""DDP's gradient buckets: which parameters share an all-reduce, given the order their gradients become ready.

After its first iteration ``DistributedDataParallel`` rebuilds its buckets from
the order in which the parameters' gradients became ready in that backward
(the reverse of the order forward *used* them, not the order the module
*registered* them). It walks that order, adding each gradient's bytes to the
open bucket, and closes the bucket once it reaches the cap:

.. math:: \text{close bucket } j \text{ when } \sum_{i \in j} n_i \ge c_j,
   \qquad c_0 = c_\text{first}, \quad c_{j>0} = c

With ``bucket_cap_mb`` set, :math:`c_\text{first} = c`; left at its default,
torch uses :math:`c = 25` MiB and a smaller first bucket of 1 MiB, so the last
layers' gradients start their all-reduce sooner. Bucket :math:`j` is
all-reduced once it is full and buckets :math:`0 \dots j-1` have been launched.
One dtype and device; sparse gradients and ``bucket_cap_mb_list`` are not
modelled.
"""

from __future__ import annotations

from collections.abc import Sequence

from ._args import whole_count


def ddp_bucket_plan(
    nbytes: Sequence[int], bucket_cap_bytes: int, *, first_bucket_cap_bytes: int | None = None
) -> list[list[int]]:
    r"""Group gradients, given in the order they become ready, into DDP's buckets: lists of positions.

    :param nbytes: :math:`n_i`, bytes of each gradient, in gradient-ready order.
    :param bucket_cap_bytes: :math:`c`, the cap of every bucket after the first
        (``int(bucket_cap_mb * 2**20)``).
    :param first_bucket_cap_bytes: :math:`c_\text{first}` (default: :math:`c`).
    :returns: positions into ``nbytes``, one list per bucket, in launch order.

    Four layers of a 4,096-byte weight and a 128-byte bias, ready bias first,
    with a cap of 6,291 bytes (``bucket_cap_mb=0.006``): two layers a bucket.

    >>> ddp_bucket_plan([128, 4096] * 4, 6291)
    [[0, 1, 2, 3], [4, 5, 6, 7]]
    """
    cap = whole_count("bucket_cap_bytes", bucket_cap_bytes, example="26214400")
    first = cap if first_bucket_cap_bytes is None else first_bucket_cap_bytes
    first = whole_count("first_bucket_cap_bytes", first, example="1048576")
    buckets: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, n in enumerate(nbytes):
        current.append(i)
        size += whole_count("nbytes", n, example="[128, 4096]")
        if size >= (first if not buckets else cap):  # a threshold: the bucket may exceed it
            buckets.append(current)
            current, size = [], 0
    if current:
        buckets.append(current)
    return buckets
