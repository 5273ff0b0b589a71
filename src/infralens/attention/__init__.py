"""Attention kernels written in torch: naive, sliced as diffusers slices it, and blocked on one online softmax.

Every blocked attention in the book (query chunks for the memory lab, tiles for
the transformer track's FlashAttention lab, key blocks from other ranks for ring
attention) folds blocks into :class:`OnlineSoftmax`.
"""

from .sliced import sliced_attention
from .softmax import (
    OnlineSoftmax,
    causal_visible,
    chunked_attention,
    flash_attention,
    naive_attention,
    score_bytes,
)

__all__ = [
    "OnlineSoftmax",
    "causal_visible",
    "chunked_attention",
    "flash_attention",
    "naive_attention",
    "score_bytes",
    "sliced_attention",
]
