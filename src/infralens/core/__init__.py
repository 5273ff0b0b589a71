"""The small core every other package reads: argument checks, number formats, seeding, layer parameter counts.

It imports nothing else of ``infralens``, so any package can depend on it
without a cycle.
"""

from .args import (
    Scalar,
    compute_dtype,
    exact_keys,
    multiple_of,
    nearest_text,
    nearest_valid,
    per_sample,
    per_sample_floats,
    positive_int,
    same_shape,
)
from .dtypes import DTYPE_BYTES, TORCH_DTYPES, TORCH_NAMES, dtype_bytes, dtype_name, torch_dtype
from .params import attention_params, gated_ffn_params, linear_params, norm_params
from .seeding import seeded

__all__ = [
    "DTYPE_BYTES",
    "TORCH_DTYPES",
    "TORCH_NAMES",
    "Scalar",
    "attention_params",
    "compute_dtype",
    "dtype_bytes",
    "dtype_name",
    "exact_keys",
    "gated_ffn_params",
    "linear_params",
    "multiple_of",
    "nearest_text",
    "nearest_valid",
    "norm_params",
    "per_sample",
    "per_sample_floats",
    "positive_int",
    "same_shape",
    "seeded",
    "torch_dtype",
]
