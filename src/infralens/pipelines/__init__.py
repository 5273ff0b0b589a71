"""Pipelines as component graphs: configs, loaders, miniature pipelines and traces."""

from .config import (
    COMPONENTS,
    DIFFSYNTH_WAN_DEFAULTS,
    DTYPES,
    PATCH_SIZE,
    ComponentSpec,
    PipelineConfig,
    RuntimeSpec,
    load_config,
)
from .ddim_scheduler import TinyDDIMScheduler
from .diffusers_components import DIFFUSERS_COMPONENTS
from .registry import (
    LOADERS,
    ComponentStats,
    architecture_fingerprint,
    component_stats,
    load_component,
    load_components,
    register_loader,
)
from .residency import STAGES, PipelineStage, layer_bytes, stage_calls, stage_residency
from .step_cache import CacheDecision, FirstBlockCache
from .text_to_video import run_text_to_video
from .tiny_diffusers import (
    SD15_SCHEDULER,
    tiny_clip,
    tiny_flux_pipeline,
    tiny_flux_transformer,
    tiny_kl_vae,
    tiny_sd3_transformer,
    tiny_sd_pipeline,
    tiny_sdxl_pipeline,
    tiny_tokenizer,
    tiny_unet,
    tiny_wan_pipeline,
    tiny_wan_transformer,
)
from .tiny_text_to_image import (
    COMPONENT_NAMES,
    ByteTokenizer,
    ComponentRow,
    TinyTextToImagePipeline,
    component_table,
    format_component_table,
)
from .trace import Tracer, TraceRow

__all__: list[str] = [
    "COMPONENTS",
    "COMPONENT_NAMES",
    "DIFFSYNTH_WAN_DEFAULTS",
    "DIFFUSERS_COMPONENTS",
    "DTYPES",
    "LOADERS",
    "PATCH_SIZE",
    "SD15_SCHEDULER",
    "STAGES",
    "ByteTokenizer",
    "CacheDecision",
    "ComponentRow",
    "ComponentSpec",
    "ComponentStats",
    "FirstBlockCache",
    "PipelineConfig",
    "PipelineStage",
    "RuntimeSpec",
    "TinyDDIMScheduler",
    "TinyTextToImagePipeline",
    "TraceRow",
    "Tracer",
    "architecture_fingerprint",
    "component_stats",
    "component_table",
    "format_component_table",
    "layer_bytes",
    "load_component",
    "load_components",
    "load_config",
    "register_loader",
    "run_text_to_video",
    "stage_calls",
    "stage_residency",
    "tiny_clip",
    "tiny_flux_pipeline",
    "tiny_flux_transformer",
    "tiny_kl_vae",
    "tiny_sd3_transformer",
    "tiny_sd_pipeline",
    "tiny_sdxl_pipeline",
    "tiny_tokenizer",
    "tiny_unet",
    "tiny_wan_pipeline",
    "tiny_wan_transformer",
]
