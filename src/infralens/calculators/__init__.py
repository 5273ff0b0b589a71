"""Calculators: sizing answers (tokens, attention, CFG, KV cache, weights) from the library's own formulas.

The same functions back the ``infralens`` command line, the Calculators page
and the tests; latent shapes come from :func:`infralens.diffusion.latent_shape`.
"""

# dtypes first: infralens.memory imports dtype_bytes from this package
from .dtypes import DTYPE_BYTES, dtype_bytes

# isort: split
from .attention import AttentionCost, attention_cost
from .cfg import CfgCost, cfg_cost
from .kv_cache import kv_cache_bytes
from .tokens import PATCH, LatentTokens, latent_tokens
from .weights import DEFAULT_INT4_GROUP, WeightMemory, weight_memory

__all__ = [
    "DEFAULT_INT4_GROUP",
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
