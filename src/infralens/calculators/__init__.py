"""Calculators: sizing answers (tokens, attention, DiT FLOPs, CFG, KV cache, weights) from the library's own formulas.

The same functions back the ``infralens`` command line, the Calculators page
and the tests; latent shapes come from :func:`infralens.diffusion.latent_shape`.
"""

from .attention import SCORE_DTYPES, AttentionCost, attention_cost
from .cfg import DIFFUSERS_CFG_DEFAULTS, CfgCost, cfg_cost, pipeline_cfg_cost
from .flops import DitFlops, dit_flops
from .kv_cache import kv_cache_bytes
from .tokens import DIFFUSERS_TEXT_TOKENS, PATCH, LatentTokens, latent_tokens
from .weights import DEFAULT_INT4_GROUP, WeightMemory, weight_memory

__all__ = [
    "DEFAULT_INT4_GROUP",
    "DIFFUSERS_CFG_DEFAULTS",
    "DIFFUSERS_TEXT_TOKENS",
    "PATCH",
    "SCORE_DTYPES",
    "AttentionCost",
    "CfgCost",
    "DitFlops",
    "LatentTokens",
    "WeightMemory",
    "attention_cost",
    "cfg_cost",
    "dit_flops",
    "kv_cache_bytes",
    "latent_tokens",
    "pipeline_cfg_cost",
    "weight_memory",
]
