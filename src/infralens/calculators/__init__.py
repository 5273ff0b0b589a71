"""Calculators: sizing answers (tokens, attention, CFG, KV cache, weights) from the library's own formulas.

The same functions back the ``infralens`` command line, the Calculators page and the tests.
"""

from .attention import AttentionCost, attention_cost
from .cfg import CfgCost, cfg_cost
from .dtypes import DTYPE_BYTES, dtype_bytes
from .kv_cache import kv_cache_bytes
from .tokens import PATCH, LatentTokens, latent_tokens
from .weights import WeightMemory, weight_memory

__all__ = [
    "DTYPE_BYTES",
    "PATCH",
    "AttentionCost",
    "CfgCost",
    "LatentTokens",
    "WeightMemory",
    "attention_cost",
    "cfg_cost",
    "dtype_bytes",
    "kv_cache_bytes",
    "latent_tokens",
    "weight_memory",
]
