"""Memory: attention score memory, chunking, tiling and offload residency plans."""

from .attention import chunked_attention, naive_attention, score_bytes
from .offload import STRATEGIES, Component, OffloadPlan, StageResidency, plan_offload
from .param_counts import WAN21_VAE_PARAMS, umt5_encoder_layer_params, wan21_t2v_components, wan_dit_layer_params
from .passes import Pass, bytes_moved, memory_passes
from .peak import peak_tensor_bytes
from .tiling import TinyConvDecoder, blended_tiled_decode, tiled_decode

__all__ = [
    "STRATEGIES",
    "WAN21_VAE_PARAMS",
    "Component",
    "OffloadPlan",
    "Pass",
    "StageResidency",
    "TinyConvDecoder",
    "blended_tiled_decode",
    "bytes_moved",
    "chunked_attention",
    "memory_passes",
    "naive_attention",
    "peak_tensor_bytes",
    "plan_offload",
    "score_bytes",
    "tiled_decode",
    "umt5_encoder_layer_params",
    "wan21_t2v_components",
    "wan_dit_layer_params",
]
