"""Training across processes: the arithmetic of data, tensor, pipeline, sequence and expert parallelism.

The distributed track's pages and the command line use these formulas; the
real ``torch.distributed`` runs live in the starters, the tests and the page
examples, started through one bounded launcher, :func:`run_ranks`.
"""

from .alpha_beta_fit import AlphaBetaFit, Sample, fit_alpha_beta
from .collective_cost import COLLECTIVES, CollectiveTerms, bus_bandwidth, collective_terms, collective_time
from .collective_timing import DEFAULT_SIZES, measure_collectives, time_collectives
from .collectives import all_gather_bytes, all_to_all_bytes, reduce_scatter_bytes, ring_allreduce_bytes
from .ddp_buckets import ddp_bucket_plan
from .device_mesh_layout import MeshLayout, mesh_layout
from .expert_dispatch import DispatchStats, expert_parallel_moe, make_experts, moe_reference
from .experts import expert_capacity
from .launch import DEFAULT_TIMEOUT, RankError, run_ranks
from .links import LINKS, Link
from .pipeline import (
    BUBBLE_CONVENTIONS,
    PIPELINE_SCHEDULES,
    PipelineOp,
    PipelineTimeline,
    pipeline_bubble,
    schedule_order,
    simulate_pipeline,
)
from .plan import ClusterSpec, ModelSpec, ParallelismPlan, load_plan
from .plan_costs import AxisTraffic, RankMemory, rank_memory, stage_params, step_traffic
from .ring import RingSend, ring_allreduce, ring_allreduce_schedule
from .ring_attn import ring_attention
from .routing import RENORMALIZES, Routing, capacity_mask, load_balancing_loss, route_tokens, top_k_gating
from .sequence_bytes import SEQUENCE_SCHEMES, sequence_parallel_bytes
from .sequence_shards import (
    gather_sequence,
    key_visible,
    padded_length,
    reduce_scatter_sequence,
    shard_positions,
    split_sequence,
)
from .topology import MESH_ORDER, AxisLink, op_seconds, plan_links
from .traffic import BytesSent
from .ulysses import check_heads_divisible, heads_to_sequence, sequence_to_heads, ulysses_attention
from .zero import ZERO_STAGES, zero_bytes_per_rank

__all__ = [
    "BUBBLE_CONVENTIONS",
    "COLLECTIVES",
    "DEFAULT_SIZES",
    "DEFAULT_TIMEOUT",
    "LINKS",
    "MESH_ORDER",
    "PIPELINE_SCHEDULES",
    "RENORMALIZES",
    "SEQUENCE_SCHEMES",
    "ZERO_STAGES",
    "AlphaBetaFit",
    "AxisLink",
    "AxisTraffic",
    "BytesSent",
    "ClusterSpec",
    "CollectiveTerms",
    "DispatchStats",
    "Link",
    "MeshLayout",
    "ModelSpec",
    "ParallelismPlan",
    "PipelineOp",
    "PipelineTimeline",
    "RankError",
    "RankMemory",
    "RingSend",
    "Routing",
    "Sample",
    "all_gather_bytes",
    "all_to_all_bytes",
    "bus_bandwidth",
    "capacity_mask",
    "check_heads_divisible",
    "collective_terms",
    "collective_time",
    "ddp_bucket_plan",
    "expert_capacity",
    "expert_parallel_moe",
    "fit_alpha_beta",
    "gather_sequence",
    "heads_to_sequence",
    "key_visible",
    "load_balancing_loss",
    "load_plan",
    "make_experts",
    "measure_collectives",
    "mesh_layout",
    "moe_reference",
    "op_seconds",
    "padded_length",
    "pipeline_bubble",
    "plan_links",
    "rank_memory",
    "reduce_scatter_bytes",
    "reduce_scatter_sequence",
    "ring_allreduce",
    "ring_allreduce_bytes",
    "ring_allreduce_schedule",
    "ring_attention",
    "route_tokens",
    "run_ranks",
    "schedule_order",
    "sequence_parallel_bytes",
    "sequence_to_heads",
    "shard_positions",
    "simulate_pipeline",
    "split_sequence",
    "stage_params",
    "step_traffic",
    "time_collectives",
    "top_k_gating",
    "ulysses_attention",
    "zero_bytes_per_rank",
]
