r"""Weight memory of a model in a number format, with the scales of grouped quantisation.

.. math:: \text{bytes} = P \cdot \text{bytes per value} + \frac{P}{G} \cdot 2

for :math:`P` parameters and, for grouped int4, one float16 scale (2 bytes)
per group of :math:`G` weights (no zero points; add them if your format
stores them). Other formats have no group term unless a group size is given.
"""

from __future__ import annotations

from dataclasses import dataclass

from infralens.diffusion._args import positive_int

from .dtypes import dtype_bytes

SCALE_BYTES = 2
"""One float16 scale per group."""
DEFAULT_INT4_GROUP = 128
"""The group size assumed for int4 when none is given (a common choice, e.g. GPTQ/AWQ)."""


@dataclass(frozen=True)
class WeightMemory:
    params: float
    dtype: str
    group_size: int | None
    weight_bytes: float
    scale_bytes: float

    @property
    def total_bytes(self) -> float:
        return self.weight_bytes + self.scale_bytes


def weight_memory(*, params: float, dtype: str, group_size: int | None = None) -> WeightMemory:
    r""":math:`P \cdot \text{bytes} + (P / G) \cdot 2` bytes.

    >>> m = weight_memory(params=8e9, dtype="int4")
    >>> m.weight_bytes / 1e9, m.scale_bytes / 1e9, m.group_size
    (4.0, 0.125, 128)
    """
    if isinstance(params, bool) or not isinstance(params, int | float) or not params > 0:
        raise ValueError(f"params must be a number > 0, e.g. params=8e9; got {params!r}")
    size = dtype_bytes(dtype)
    if group_size is None and dtype == "int4":
        group_size = DEFAULT_INT4_GROUP
    if group_size is not None:
        group_size = positive_int("group_size", group_size, example=DEFAULT_INT4_GROUP)
    scales = params / group_size * SCALE_BYTES if group_size else 0.0
    return WeightMemory(params, dtype, group_size, params * size, scales)
