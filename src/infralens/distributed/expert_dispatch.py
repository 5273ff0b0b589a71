r"""Expert parallelism: dispatch tokens to the rank that owns their expert with ``all_to_all_single``, combine back.

With :math:`W` ranks and :math:`E` experts each rank owns :math:`E/W`
consecutive experts (expert :math:`e` lives on rank :math:`\lfloor e W / E
\rfloor`) and routes its own :math:`T` tokens. One MoE layer is

1. *dispatch*: every kept assignment's token row is sent to the owner of its
   expert, sorted by destination rank, with one ``all_to_all_single`` (the
   row counts travel first, in a smaller one, so each rank knows what it
   receives, and the expert ids travel with the rows);
2. each rank runs its experts on the rows it received;
3. *combine*: the outputs go back by the reverse ``all_to_all_single`` and each
   token sums its choices, :math:`y_t = \sum_{c\ \text{kept}} w_{t,c}\,
   \text{FFN}_{e_{t,c}}(x_t)`.

:func:`moe_reference` computes the same sum one token at a time with every
expert in one process: the dense per-token reference.

Forward only: ``torch.distributed.all_to_all_single`` writes into buffers
outside autograd, so no gradient reaches the experts or the tokens through
this layer. A training layer uses ``torch.distributed.nn.functional.all_to_all_single``,
whose backward is the all-to-all with the splits swapped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from infralens.core import positive_int, seeded

from .routing import Routing


def make_experts(num_experts: int, dim: int, hidden: int, *, seed: int = 0) -> nn.Module:
    """An ``nn.ModuleList`` of ``num_experts`` FFNs (``Linear``, GELU, ``Linear``), the same for one seed.

    Every rank builds all of them from one seed and keeps its own, so the
    reference and the distributed run use identical weights.
    """
    E = positive_int("num_experts", num_experts, example=8)
    with seeded(seed):
        return nn.ModuleList(nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)) for _ in range(E))


def moe_reference(x: torch.Tensor, routing: Routing, experts: Sequence[nn.Module]) -> torch.Tensor:
    r"""Dense per-token reference: :math:`y_t = \sum_c [\text{kept}]\, w_{t,c}\, \text{FFN}_{e_{t,c}}(x_t)`, a loop."""
    out = torch.zeros_like(x)  # (T, D)
    for t in range(x.shape[0]):
        for c in range(routing.experts.shape[1]):
            if routing.kept[t, c]:
                e = int(routing.experts[t, c])
                out[t] += routing.weights[t, c].to(x.dtype) * experts[e](x[t : t + 1])[0]  # (D,)
    return out


@dataclass(frozen=True)
class DispatchStats:
    """What one rank sent and received in the dispatch (the combine mirrors it)."""

    send_rows: tuple[int, ...]
    """Token rows sent to each rank (including itself)."""
    recv_rows: tuple[int, ...]
    """Token rows received from each rank."""
    bytes_to_others: int
    """Bytes of token rows this rank sent to other ranks in the dispatch."""


def expert_parallel_moe(
    x: torch.Tensor,
    routing: Routing,
    local_experts: Sequence[nn.Module],
    *,
    group: dist.ProcessGroup | None = None,
) -> tuple[torch.Tensor, DispatchStats]:
    """One MoE layer with experts spread over the ranks of ``group``: dispatch, expert FFNs, combine.

    Called on every rank with its own tokens ``x`` ``(T, D)``, their
    :class:`~infralens.distributed.Routing` and the ``E / W`` experts this rank
    owns. Returns the ``(T, D)`` output and this rank's :class:`DispatchStats`.
    """
    W, rank = dist.get_world_size(group), dist.get_rank(group)
    E, per_rank = routing.num_experts, len(local_experts)
    if per_rank * W != E:
        raise ValueError(
            f"local_experts must hold E / world_size = {E} / {W} experts per rank (E must divide evenly), "
            f"e.g. {E // W or 1}; got {per_rank}"
        )
    token, choice = routing.kept.nonzero(as_tuple=True)  # kept assignments, (A,) each
    expert = routing.experts[token, choice]  # (A,)
    dest = expert // per_rank  # (A,) owner rank
    order = torch.argsort(dest, stable=True)  # group the rows by destination
    token, choice, expert, dest = token[order], choice[order], expert[order], dest[order]
    send_rows = torch.bincount(dest, minlength=W)  # (W,)
    recv_rows = torch.empty_like(send_rows)
    dist.all_to_all_single(recv_rows, send_rows, group=group)  # how many rows each rank will send me
    splits_out, splits_in = send_rows.tolist(), recv_rows.tolist()

    # [dispatch] rows and their expert ids, one all_to_all_single each
    rows_in = x.new_empty(sum(splits_in), x.shape[1])  # (R, D)
    dist.all_to_all_single(rows_in, x[token], splits_in, splits_out, group=group)
    ids_in = expert.new_empty(sum(splits_in))  # (R,)
    dist.all_to_all_single(ids_in, expert, splits_in, splits_out, group=group)

    # the experts this rank owns, on the rows it received
    y_in = torch.empty_like(rows_in)  # (R, D)
    for j, ffn in enumerate(local_experts):
        mine = ids_in == rank * per_rank + j
        y_in[mine] = ffn(rows_in[mine])

    # [combine] back to the senders (splits reversed), then a weighted sum per token
    y_out = x.new_empty(len(token), x.shape[1])  # (A, D)
    dist.all_to_all_single(y_out, y_in, splits_out, splits_in, group=group)
    out = torch.zeros_like(x)  # (T, D)
    out.index_add_(0, token, routing.weights[token, choice].unsqueeze(1).to(x.dtype) * y_out)
    row_bytes = x.shape[1] * x.element_size()
    to_others = sum(n for r, n in enumerate(splits_out) if r != rank) * row_bytes
    return out, DispatchStats(tuple(splits_out), tuple(splits_in), to_others)
