"""Bytes per element of the number formats the calculators accept."""

from __future__ import annotations

DTYPE_BYTES: dict[str, float] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int8": 1,
    "int4": 0.5,
}
"""Bytes per value; int4 packs two values per byte."""


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype``; an unknown name raises ``ValueError`` listing the known ones.

    >>> dtype_bytes("bf16"), dtype_bytes("int4")
    (2, 0.5)
    """
    try:
        return DTYPE_BYTES[dtype]
    except (KeyError, TypeError):
        raise ValueError(f"dtype must be one of {', '.join(DTYPE_BYTES)}, e.g. dtype='bf16'; got {dtype!r}") from None
