r"""Ring attention: each rank keeps its queries while the key/value blocks travel around the ring.

Rank :math:`r` of :math:`N` holds tokens :math:`[rs, (r+1)s)` of Q, K and V. At
step :math:`t = 0, \dots, N-1` it attends its queries to the K/V block of rank
:math:`(r - t) \bmod N`, folds the result into its
:class:`~infralens.attention.OnlineSoftmax` state, and passes the block to rank
:math:`r + 1` while receiving the next one from rank :math:`r - 1` (the send is
started before the block is used, so on a GPU it overlaps the compute). After
:math:`N` steps every query has seen every key, and the online softmax makes the
result exactly softmax attention, not an approximation (Liu et al. 2023).

Each rank sends its K and V block :math:`N-1` times per attention layer, and
never holds more than two blocks: memory per rank falls as :math:`1/N`, bytes
per rank do not. With ``causal=True`` a block that lies entirely after a rank's
queries is passed on but not computed, so rank :math:`r` computes :math:`r + 1`
of the :math:`N` blocks: the last rank does most of the work (load-balanced
layouts such as zigzag reorder the tokens to even this out).
"""

from __future__ import annotations

import torch
import torch.distributed as dist

from infralens.attention import OnlineSoftmax

from .sequence_shards import key_visible


def ring_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    seq_len: int | None = None,
    causal: bool = False,
    group: dist.ProcessGroup | None = None,
    trace: list[tuple[int, int, bool]] | None = None,
) -> torch.Tensor:
    """Exact attention over a sequence split across the ranks of ``group``, with K/V blocks passed around a ring.

    Call it on every rank with that rank's shard (:func:`~infralens.distributed.split_sequence`).

    :param query: this rank's tokens, ``(B, H, s, d)``.
    :param key: ``(B, H, s, d)``.
    :param value: ``(B, H, s, d_v)``.
    :param seq_len: the unpadded sequence length :math:`S` (default :math:`N s`): keys beyond it are hidden.
    :param causal: each token sees only earlier positions.
    :param group: the process group (default: the world).
    :param trace: if a list, ``(step, owner of the block, computed)`` is appended at each step.
    :returns: this rank's tokens of the output, ``(B, H, s, d_v)``.
    """
    n, rank = dist.get_world_size(group), dist.get_rank(group)
    right = (rank + 1) % n if group is None else dist.get_global_rank(group, (rank + 1) % n)
    left = (rank - 1) % n if group is None else dist.get_global_rank(group, (rank - 1) % n)
    s, d = query.shape[2], key.shape[-1]
    seq_len = n * s if seq_len is None else seq_len
    q_pos = torch.arange(rank * s, (rank + 1) * s)  # (s,) global positions of my queries
    state = OnlineSoftmax(query, value_dim=value.shape[-1])  # m, l, a for my queries
    block = torch.cat([key, value], dim=-1).contiguous()  # (B, H, s, d + d_v): one message per step
    for step in range(n):
        owner = (rank - step) % n  # whose K/V block this is
        if step < n - 1:  # start passing it on before using it
            incoming = torch.empty_like(block)
            requests = [dist.isend(block, right, group=group), dist.irecv(incoming, left, group=group)]
        k_pos = torch.arange(owner * s, (owner + 1) * s)  # (s,) global positions of these keys
        compute = not (causal and owner * s > q_pos[-1])  # a block wholly in my future is skipped
        if compute:
            visible = key_visible(q_pos, k_pos, seq_len=seq_len, causal=causal)  # (s, s) or None
            state.update(block[..., :d], block[..., d:], visible=visible)  # fold into m, l, a
        if trace is not None:
            trace.append((step, owner, compute))
        if step < n - 1:
            for request in requests:
                request.wait()
            block = incoming  # (B, H, s, d + d_v) from rank r - 1
    return state.output  # (B, H, s, d_v): a / l
