"""Number formats: one vocabulary for the whole library, and the bytes per value of each.

Two spellings name the same format everywhere: the short names the calculators
print (``bf16``) and torch's own (``bfloat16``, as in ``torch_dtype=torch.bfloat16``).
Every function that takes a dtype name accepts both; outputs use the short names.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import torch

DTYPE_BYTES: Mapping[str, float] = MappingProxyType({"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1, "int8": 1, "int4": 0.5})
"""Bytes per value, by short name; int4 packs two values per byte."""

TORCH_NAMES: Mapping[str, str] = MappingProxyType(
    {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16", "float8_e4m3fn": "fp8"}
)
"""torch's names (and its aliases ``float`` and ``half``) for the short names they mean."""

TORCH_DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
    {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp8": torch.float8_e4m3fn}
)
"""The torch dtype of each floating-point short name (int8 and int4 are storage formats of quantised weights)."""


def dtype_name(dtype: str) -> str:
    """The short name of ``dtype`` (either spelling); an unknown name raises ``ValueError`` listing the known ones.

    >>> dtype_name("bfloat16"), dtype_name("bf16"), dtype_name("half")
    ('bf16', 'bf16', 'fp16')
    """
    if isinstance(dtype, str):
        name = TORCH_NAMES.get(dtype, dtype)
        if name in DTYPE_BYTES:
            return name
    raise ValueError(
        f"dtype must be one of {', '.join(DTYPE_BYTES)} (or torch's name: {', '.join(TORCH_NAMES)}), "
        f"e.g. dtype='bf16'; got {dtype!r}"
    )


def dtype_bytes(dtype: str) -> float:
    """Bytes per value of ``dtype`` (short or torch name).

    >>> dtype_bytes("bf16"), dtype_bytes("bfloat16"), dtype_bytes("int4")
    (2, 2, 0.5)
    """
    return DTYPE_BYTES[dtype_name(dtype)]


def torch_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of a floating-point format named either way.

    >>> torch_dtype("bf16"), torch_dtype("float32")
    (torch.bfloat16, torch.float32)
    """
    name = dtype_name(dtype)
    if name not in TORCH_DTYPES:
        raise ValueError(f"dtype {dtype!r} has no torch dtype here (a quantised storage format); e.g. dtype='bf16'")
    return TORCH_DTYPES[name]
