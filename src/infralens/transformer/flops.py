r"""FLOPs of one attention layer: the four projections against the scores and the weighted values.

A linear layer spends 2 FLOPs (a multiply and an add) per weight per token, so
the projections cost :math:`2 B S` times their weights; the score and value
products cost :math:`2 B H S^2 D_h` each (:func:`infralens.calculators.attention_cost`):

.. math:: F_\text{proj} = 2 B S \,(2 D D_q + 2 D D_{kv}), \qquad F_\text{attn} = 4 B S^2 D_q,
   \qquad D_q = H D_h,\; D_{kv} = H_{kv} D_h

(:math:`D_q` the width of the queries and of ``o_proj``'s input, :math:`D_{kv}`
that of the keys and of the values). For multi-head attention
(:math:`D_q = D_{kv} = D`) that is :math:`8 B S D^2` against :math:`4 B S^2 D`: the
projections dominate until :math:`S = 2D`, and the quadratic term only after. In general the two are equal at

.. math:: S^* = D\,(D_q + D_{kv}) / D_q

Softmax, masking and RoPE (a few FLOPs per score or channel) are not counted,
nor is a causal kernel's saving from skipping hidden blocks (it can halve
:math:`F_\text{attn}`): these are the dense matrix products, the ones torch's
FLOP counter sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from infralens.calculators import attention_cost
from infralens.core import attention_params, positive_int


@dataclass(frozen=True)
class AttentionFlops:
    """FLOPs of one self-attention layer's matrix products, split by where they are spent."""

    projections: int
    r""":math:`2 B S` times the weights of :math:`W_Q, W_K, W_V, W_O`."""
    attention: int
    r""":math:`Q K^\top` and :math:`P V`: :math:`2 B H S^2 D_h` each."""

    @property
    def total(self) -> int:
        """Projections plus attention."""
        return self.projections + self.attention


def _shape(dim: int, heads: int, kv_heads: int | None, head_dim: int | None) -> tuple[int, int, int, int]:
    d = positive_int("dim", dim, example=4096)
    h = positive_int("heads", heads, example=32)
    hkv = h if kv_heads is None else positive_int("kv_heads", kv_heads, example=8)
    dh = d // h if head_dim is None else positive_int("head_dim", head_dim, example=128)
    if dh == 0:
        raise ValueError(f"heads={h} exceeds dim={d}: give head_dim, e.g. head_dim=128")
    return d, h, hkv, dh


def attention_flops(
    *, batch: int, seq_len: int, dim: int, heads: int, kv_heads: int | None = None, head_dim: int | None = None
) -> AttentionFlops:
    r"""Dense FLOPs of one self-attention layer over ``seq_len`` tokens (no cache, no causal skipping).

    >>> f = attention_flops(batch=1, seq_len=4096, dim=4096, heads=32)
    >>> f.projections == 8 * 4096 * 4096**2, f.attention == 4 * 4096**2 * 4096
    (True, True)
    """
    d, h, hkv, dh = _shape(dim, heads, kv_heads, head_dim)
    b = positive_int("batch", batch, example=1)
    s = positive_int("seq_len", seq_len, example=4096)
    weights = attention_params(d, heads=h, kv_heads=hkv, head_dim=dh, bias=False)  # D D_q + 2 D D_kv + D_q D
    projections = 2 * b * s * weights  # 2 FLOPs per weight per token
    attention = attention_cost(tokens=s, heads=h, head_dim=dh, batch=b).flops  # 4 B H S^2 Dh
    return AttentionFlops(projections, attention)


def attention_crossover(*, dim: int, heads: int, kv_heads: int | None = None, head_dim: int | None = None) -> float:
    r"""The sequence length :math:`S^* = D (D_q + D_{kv}) / D_q` where attention's FLOPs overtake the projections'.

    >>> attention_crossover(dim=4096, heads=32)               # MHA: 2 D
    8192.0
    >>> attention_crossover(dim=4096, heads=32, kv_heads=8)   # GQA, 8 KV heads: D + D / 4
    5120.0
    """
    d, h, hkv, dh = _shape(dim, heads, kv_heads, head_dim)
    d_q, d_kv = h * dh, hkv * dh  # D_q = H Dh, D_kv = H_kv Dh
    return d * (d_q + d_kv) / d_q  # S* = D (D_q + D_kv) / D_q


def count_attention_flops(module: nn.Module, *args: object, **kwargs: object) -> AttentionFlops:
    """Run ``module(*args, **kwargs)`` under torch's ``FlopCounterMode``; split its FLOPs at its ``*_proj`` submodules.

    Works on the meta device (no arithmetic is done, the counter reads shapes).
    The counter knows matrix products (``mm``, ``bmm``, ``addmm``, ...) and
    fused attention kernels registered for it; torch's fused CPU attention
    kernel is not registered (torch 2.13), so attention must run through
    explicit products, as :class:`~infralens.transformer.MultiHeadAttention` does.
    """
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    counts = {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}
    projections = sum(n for name, n in counts.items() if name.rsplit(".", 1)[-1].endswith("_proj"))
    return AttentionFlops(projections, counter.get_total_flops() - projections)
