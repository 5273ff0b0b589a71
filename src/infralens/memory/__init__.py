"""Memory: measured peak bytes, VAE tiling, passes over memory, offload residency plans, group offloading and
layerwise casting."""

from .casting import LAYERWISE_CASTING_LAYERS, LAYERWISE_SKIP_PATTERNS, enable_layerwise_casting, stored_bytes
from .group_offload import GroupOffload, OffloadEvent, offload_timeline
from .offload import STRATEGIES, Component, OffloadPlan, StageResidency, diffsynth_residency, plan_offload
from .param_counts import (
    WAN21_VAE_PARAMS,
    umt5_encoder_layer_params,
    wan21_t2v_components,
    wan22_a14b_components,
    wan_dit_layer_params,
)
from .passes import Pass, bytes_moved, memory_passes
from .peak import peak_tensor_bytes
from .tiling import (
    blended_tiled_decode,
    diffsynth_tile_coverage,
    diffsynth_tiled_decode,
    diffsynth_tiles,
    tiled_decode,
)

__all__ = [
    "LAYERWISE_CASTING_LAYERS",
    "LAYERWISE_SKIP_PATTERNS",
    "STRATEGIES",
    "WAN21_VAE_PARAMS",
    "Component",
    "GroupOffload",
    "OffloadEvent",
    "OffloadPlan",
    "Pass",
    "StageResidency",
    "blended_tiled_decode",
    "bytes_moved",
    "diffsynth_residency",
    "diffsynth_tile_coverage",
    "diffsynth_tiled_decode",
    "diffsynth_tiles",
    "enable_layerwise_casting",
    "memory_passes",
    "offload_timeline",
    "peak_tensor_bytes",
    "plan_offload",
    "stored_bytes",
    "tiled_decode",
    "umt5_encoder_layer_params",
    "wan21_t2v_components",
    "wan22_a14b_components",
    "wan_dit_layer_params",
]
