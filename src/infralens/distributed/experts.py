r"""Expert parallelism: how many tokens each expert accepts per batch.

A router sends each of :math:`T` tokens to its top :math:`k` of :math:`E`
experts. Balanced perfectly, each expert receives :math:`kT/E` tokens; the
capacity factor :math:`c` leaves room for imbalance, and every expert's buffer
is sized once, before routing:

.. math:: C = \left\lceil \frac{k\,T}{E} \cdot c \right\rceil

Tokens routed to an expert beyond :math:`C` are dropped (they skip the expert
through the residual connection). Implementations differ in rounding and in
whether :math:`k` multiplies (GShard and Switch count one slot per token and
choice); this is the form of the Switch Transformer with top-:math:`k` slots.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from ._args import whole_count


def expert_capacity(num_tokens: int, num_experts: int, *, top_k: int = 1, capacity_factor: float = 1.0) -> int:
    r"""Tokens each expert accepts: :math:`\lceil k T / E \cdot c \rceil`.

    Computed exactly from the factor as written: ``1.1`` is 11/10, so 100 tokens
    on one expert at 1.1 give 110 slots (float arithmetic gives
    ``math.ceil(100 * 1.1) == 111``).

    :param num_tokens: :math:`T`, tokens in the batch routed together.
    :param num_experts: :math:`E`.
    :param top_k: :math:`k`, experts per token (at most :math:`E`).
    :param capacity_factor: :math:`c > 0`.
    :returns: :math:`C`, slots per expert.

    >>> expert_capacity(4096, 8, top_k=2, capacity_factor=1.25)
    1280
    >>> expert_capacity(100, 1, capacity_factor=1.1)
    110
    """
    t = whole_count("num_tokens", num_tokens, example="4096")
    e = whole_count("num_experts", num_experts, example="8")
    k = whole_count("top_k", top_k, example="2")
    if k > e:
        raise ValueError(f"top_k must be <= num_experts={e} (a token picks distinct experts), e.g. top_k=2; got {k}")
    if (
        isinstance(capacity_factor, bool)
        or not isinstance(capacity_factor, numbers.Real)
        or not math.isfinite(capacity_factor)
        or capacity_factor <= 0
    ):
        raise ValueError(f"capacity_factor must be a number > 0, e.g. capacity_factor=1.25; got {capacity_factor!r}")
    c = Fraction(repr(capacity_factor)) if isinstance(capacity_factor, float) else Fraction(capacity_factor)
    # C = ceil(k T / E * c)
    return math.ceil(Fraction(k * t, e) * c)
