r"""Weight memory of a model in a number format, with the scales of grouped quantisation.

.. math:: \text{bytes} = P \cdot \text{bytes per value} + \frac{P}{G} \cdot (2 + 2z)

for :math:`P` parameters. Grouped quantisation stores one 16-bit scale per
group of :math:`G` weights, and with :math:`z = 1` also one 16-bit zero point
(asymmetric quantisation); :math:`z = 0` by default. int4 is assumed grouped
with :math:`G = 128` unless told otherwise; the other formats have no group
term unless a group size is given. Every parameter is counted in the one
format (real checkpoints often keep norms and embeddings in 16 bits), and
:math:`P/G` is not rounded up per matrix.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from infralens.core import dtype_bytes, dtype_name
from infralens.core.args import positive_int

SCALE_BYTES = 2
"""Bytes of one group scale or zero point (float16 or bfloat16)."""
DEFAULT_INT4_GROUP = 128
"""The int4 group size when none is given (the default of diffusers' ``AutoRoundConfig``)."""


@dataclass(frozen=True)
class WeightMemory:
    """Bytes of a model's weights in one number format."""

    params: float
    """:math:`P`."""
    dtype: str
    """The weights' format, a key of :data:`~infralens.core.DTYPE_BYTES`."""
    group_size: int | None
    """:math:`G`, weights per scale; ``None`` when the format has no groups."""
    zero_points: bool
    """Whether each group also stores a zero point (:math:`z = 1`)."""
    weight_bytes: float
    """:math:`P \\cdot \\text{bytes per value}`."""
    scale_bytes: float
    """:math:`(P / G) \\cdot (2 + 2z)`: scales and zero points."""

    @property
    def total_bytes(self) -> float:
        """Weights plus scales."""
        return self.weight_bytes + self.scale_bytes


def weight_memory(
    *, params: float, dtype: str, group_size: int | None = None, zero_points: bool = False
) -> WeightMemory:
    r"""Weight memory :math:`P \cdot \text{bytes} + (P / G) \cdot (2 + 2z)`.

    :param params: :math:`P`, parameters (a finite number > 0, e.g. ``8e9``).
    :param dtype: ``"fp32"``, ``"bf16"``, ``"fp16"``, ``"fp8"``, ``"int8"`` or ``"int4"``.
    :param group_size: :math:`G`, weights per 16-bit scale; int4 defaults to 128, others to none.
    :param zero_points: also one 16-bit zero point per group (needs a group size).
    :returns: a :class:`WeightMemory`.

    >>> m = weight_memory(params=8e9, dtype="int4")
    >>> m.group_size, m.weight_bytes == 8e9 * 0.5, m.scale_bytes == 8e9 / 128 * 2
    (128, True, True)
    """
    if isinstance(params, bool) or not isinstance(params, numbers.Real) or not math.isfinite(params) or not params > 0:
        raise ValueError(f"params must be a finite number > 0, e.g. params=8e9; got {params!r}")
    dtype = dtype_name(dtype)
    size = dtype_bytes(dtype)
    if group_size is None and dtype == "int4":
        group_size = DEFAULT_INT4_GROUP
    if group_size is not None:
        group_size = positive_int("group_size", group_size, example=DEFAULT_INT4_GROUP)
    elif zero_points:
        raise ValueError(f"zero_points needs a group size, e.g. group_size=128 with dtype={dtype!r}")
    per_group = SCALE_BYTES * (2 if zero_points else 1)
    scales = params / group_size * per_group if group_size else 0.0
    return WeightMemory(float(params), dtype, group_size, bool(zero_points), params * size, scales)
