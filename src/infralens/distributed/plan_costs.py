r"""What a 3-D plan costs each rank: memory held, and bytes sent per optimizer step along each axis.

Stated assumptions (the page repeats them): bf16 parameters, gradients and
activations; mixed-precision Adam (ZeRO's 2 + 2 + 12 bytes per parameter,
:func:`~infralens.distributed.zero_bytes_per_rank`); Megatron-style tensor
parallelism with sequence parallelism; full activation recomputation (each
layer keeps only its input, :math:`b s d / t` values); the 1F1B schedule.

**Memory.** A rank of pipeline stage :math:`s` holds :math:`L/p` layers split
:math:`t` ways, plus the embedding's :math:`1/t` on the first stage and the
output head's :math:`1/t` and the final norm on the last. Its states follow the
ZeRO stage over the :math:`d` data-parallel replicas, and in 1F1B stage
:math:`s` keeps the inputs of :math:`\min(p - s, m)` micro-batches in flight:

.. math:: M_s = \text{zero}(P_s, d, \text{stage}) + \min(p - s, m)\,\frac{L}{p}\,\frac{b\, s_\text{seq}\, h}{t}\cdot 2

The busiest stage is reported unless one is asked for (the first, for any
plan with more than one stage: it holds the most micro-batches).

**Communication per step, per rank.** Each micro-batch crosses every layer
with 2 TP all-reduces forward, 2 again in the recomputation and 2 backward,
each of the full activation :math:`b s h` (with sequence parallelism each is
an all-gather plus a reduce-scatter: the same steps and bytes); pipeline
neighbours exchange one activation slice (:math:`b s h / t`) per micro-batch
and direction; the data-parallel axis reduces the rank's gradients once per
step (an all-reduce, or ZeRO's reduce-scatter plus all-gather of the updated
parameters: the same bytes); ZeRO-3 keeps the reduce-scatter but gathers the
parameters before forward and again before backward instead of after the
update, 1.5 times the bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collective_cost import collective_terms
from .plan import ParallelismPlan
from .zero import zero_bytes_per_rank

BF16 = 2
"""Bytes per bf16 value: parameters, gradients and activations in this model."""


@dataclass(frozen=True)
class RankMemory:
    """Memory of one rank of a plan's pipeline stage, in bytes."""

    stage: int
    """The pipeline stage of the rank (0 is the first)."""
    params: int
    """Parameters the rank owns before ZeRO (its TP shard of its stage)."""
    state_bytes: float
    """Parameters, gradients and optimizer states after ZeRO over the data-parallel axis."""
    in_flight: int
    """Micro-batches whose activations the stage holds at once (1F1B: ``min(pp - stage, micro_batches)``)."""
    activation_bytes: float
    """Checkpointed layer inputs of those micro-batches."""

    @property
    def total_bytes(self) -> float:
        """States plus activations (a lower bound: one layer's recomputation and the logits come on top)."""
        return self.state_bytes + self.activation_bytes


@dataclass(frozen=True)
class AxisTraffic:
    """One axis's communication in one optimizer step, seen from one rank."""

    axis: str
    """``"tp"``, ``"pp"`` or ``"dp"``."""
    group_size: int
    ops: tuple[tuple[str, int, float], ...]
    """``(collective, calls per step, bytes n per call)``; ``"send_recv"`` is one point-to-point message."""

    @property
    def bytes_sent(self) -> float:
        """Bytes the rank sends per step: :math:`\\sum \\text{calls} \\cdot v n`."""
        return sum(calls * _volume(op, self.group_size) * n for op, calls, n in self.ops)


def _volume(op: str, n: int) -> float:
    return 1.0 if op == "send_recv" else collective_terms(op, n).volume


def _stage(plan: ParallelismPlan, stage: int) -> int:
    if isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage < plan.pp:
        raise ValueError(
            f"stage must be a pipeline stage 0 to {plan.pp - 1} (pp={plan.pp}), e.g. stage=0; got {stage!r}"
        )
    return stage


def stage_params(plan: ParallelismPlan, stage: int = 0) -> int:
    """Parameters one rank of pipeline ``stage`` owns: ``L/p`` layers split ``t`` ways, plus the embedding's
    ``1/t`` on the first stage, the output head's ``1/t`` and the final norm on the last.

    Norm weights are replicated across TP ranks, not split; a vocabulary that
    ``t`` does not divide is padded, as Megatron pads it.
    """
    s = _stage(plan, stage)
    m, t = plan.model, plan.tp
    d = m.hidden_size
    per_layer = (m.layer_params - 2 * d) // t + 2 * d  # matrices split, the two norms replicated
    table = -(-m.vocab_size // t) * d  # one vocabulary-parallel embedding or head shard
    first = table if s == 0 else 0
    last = table + d if s == plan.pp - 1 else 0  # output head and final norm
    return m.layers // plan.pp * per_layer + first + last


def rank_memory(plan: ParallelismPlan, stage: int | None = None) -> RankMemory:
    """Per-rank memory of pipeline ``stage`` (default: the busiest stage); see the module for the model."""
    if stage is None:
        return max((rank_memory(plan, s) for s in range(plan.pp)), key=lambda r: r.total_bytes)
    s = _stage(plan, stage)
    params = stage_params(plan, s)
    states = zero_bytes_per_rank(params, plan.dp, plan.zero_stage)
    in_flight = min(plan.pp - s, plan.micro_batches)
    layer_input = plan.micro_batch_size * plan.seq_len * plan.model.hidden_size * BF16 / plan.tp  # (b, s/t, h)
    activations = in_flight * (plan.model.layers // plan.pp) * layer_input
    return RankMemory(s, params, states, in_flight, activations)


def step_traffic(plan: ParallelismPlan, stage: int | None = None) -> tuple[AxisTraffic, ...]:
    """Per-step communication of one rank of pipeline ``stage`` along ``tp``, ``pp`` and ``dp``.

    ``stage`` defaults to the busiest stage of :func:`rank_memory`. See the module for the counts.
    """
    s = rank_memory(plan).stage if stage is None else _stage(plan, stage)
    m, mb = plan.model, plan.micro_batches
    activation = plan.micro_batch_size * plan.seq_len * m.hidden_size * BF16  # (b, s, h) bytes
    layers = m.layers // plan.pp
    tp = AxisTraffic("tp", plan.tp, (("all_reduce", 6 * layers * mb, activation),) if plan.tp > 1 else ())
    sends = mb * ((s > 0) + (s < plan.pp - 1))  # activations forward, gradients backward
    pp = AxisTraffic("pp", plan.pp, (("send_recv", sends, activation / plan.tp),) if sends else ())
    grads = stage_params(plan, s) * BF16
    dp_ops: tuple[tuple[str, int, float], ...] = ()
    if plan.dp > 1 and plan.zero_stage < 3:
        dp_ops = (("all_reduce", 1, grads),)  # ZeRO 1-2: reduce-scatter + all-gather of the update, the same bytes
    elif plan.dp > 1:  # ZeRO-3: gradients reduce-scattered; parameters gathered for forward and for backward
        dp_ops = (("reduce_scatter", 1, grads), ("all_gather", 2, grads))
    return (tp, pp, AxisTraffic("dp", plan.dp, dp_ops))
