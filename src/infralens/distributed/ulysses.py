r"""DeepSpeed-Ulysses attention: an all-to-all trades a sequence split for a head split, and back.

Each of :math:`N` ranks holds :math:`s = S/N` tokens of Q, K and V for all
:math:`H` heads. Attention mixes tokens but never heads, so one all-to-all per
tensor regroups them: afterwards rank :math:`r` holds *all* :math:`S` tokens of
heads :math:`[rH/N, (r+1)H/N)` and runs ordinary attention on them, the whole
sequence at once (any kernel, causal or not). A last all-to-all returns the
output to the sequence split:

.. math:: (B, H, S/N, d) \xrightarrow{\text{all-to-all}} (B, H/N, S, d)
   \xrightarrow{\text{attention}} (B, H/N, S, d)
   \xrightarrow{\text{all-to-all}} (B, H, S/N, d)

So :math:`H` must be divisible by :math:`N` (a head cannot be split), and each
rank sends :math:`(N-1)/N` of its Q, K, V and output shards: four all-to-alls
per attention layer, whose bytes per rank *fall* as :math:`1/N` for a fixed
sequence (Jacobs et al. 2023).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.nn.functional import scaled_dot_product_attention

from .sequence_shards import key_visible


def check_heads_divisible(heads: int, world_size: int) -> None:
    """Ulysses' rule: every rank gets whole heads. Raises ``ValueError`` with the nearest valid head counts.

    >>> check_heads_divisible(7, 2)
    Traceback (most recent call last):
    ...
    ValueError: heads must be divisible by world_size=2 (Ulysses gives each rank whole heads), e.g. heads=6 or 8; got 7
    """
    if heads % world_size:
        below, above = heads - heads % world_size, heads - heads % world_size + world_size
        example = f"{below} or {above}" if below else f"{above}"
        raise ValueError(
            f"heads must be divisible by world_size={world_size} (Ulysses gives each rank whole heads), "
            f"e.g. heads={example}; got {heads}"
        )


def sequence_to_heads(x: torch.Tensor, *, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """All-to-all ``(B, H, S/N, d)`` (my tokens, all heads) to ``(B, H/N, S, d)`` (all tokens, my heads)."""
    n = dist.get_world_size(group)
    B, H, s, d = x.shape
    check_heads_divisible(H, n)
    send = x.reshape(B, n, H // n, s, d).transpose(0, 1).contiguous()  # (N, B, H/N, s, d): part j -> rank j
    recv = torch.empty_like(send)  # (N, B, H/N, s, d): part i is rank i's tokens of my heads
    dist.all_to_all_single(recv, send, group=group)
    return recv.permute(1, 2, 0, 3, 4).reshape(B, H // n, n * s, d)  # (B, H/N, S, d), tokens in rank order


def heads_to_sequence(y: torch.Tensor, *, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """The inverse all-to-all: ``(B, H/N, S, d)`` (all tokens, my heads) to ``(B, H, S/N, d)``."""
    n = dist.get_world_size(group)
    B, h, S, d = y.shape
    send = y.reshape(B, h, n, S // n, d).permute(2, 0, 1, 3, 4).contiguous()  # (N, B, H/N, s, d): tokens of rank j
    recv = torch.empty_like(send)  # (N, B, H/N, s, d): part i is head group i of my tokens
    dist.all_to_all_single(recv, send, group=group)
    return recv.transpose(0, 1).reshape(B, n * h, S // n, d)  # (B, H, s, d)


def ulysses_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    seq_len: int | None = None,
    causal: bool = False,
    group: dist.ProcessGroup | None = None,
) -> torch.Tensor:
    """Exact attention over a sequence split across the ranks of ``group``, by head-regrouping all-to-alls.

    Call it on every rank with that rank's shard (:func:`~infralens.distributed.split_sequence`).

    :param query: this rank's tokens, ``(B, H, s, d)``; ``H`` divisible by the world size.
    :param key: ``(B, H, s, d)``.
    :param value: ``(B, H, s, d_v)``.
    :param seq_len: the unpadded sequence length :math:`S` (default :math:`N s`): keys beyond it are hidden.
    :param causal: each token sees only earlier positions.
    :param group: the process group (default: the world).
    :returns: this rank's tokens of the output, ``(B, H, s, d_v)``.
    """
    n = dist.get_world_size(group)
    check_heads_divisible(query.shape[1], n)
    q, k, v = (sequence_to_heads(t, group=group) for t in (query, key, value))  # (B, H/N, S_pad, d) each
    positions = torch.arange(q.shape[2])  # the whole (padded) sequence is here now
    visible = key_visible(positions, positions, seq_len=seq_len or q.shape[2], causal=causal)  # (S_pad, S_pad)
    out = scaled_dot_product_attention(q, k, v, attn_mask=visible)  # (B, H/N, S_pad, d_v): plain attention
    return heads_to_sequence(out, group=group)  # (B, H, s, d_v)
