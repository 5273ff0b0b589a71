r"""Multi-head and grouped-query self-attention from scratch, with the projection names of transformers' Llama.

.. math:: Q = X W_Q^\top, \quad K = X W_K^\top, \quad V = X W_V^\top, \qquad
   O = \operatorname{softmax}\!\big(Q K^\top / \sqrt{D_h} + M\big)\, V, \qquad Y = O\, W_O^\top

per head, with :math:`H` query heads and :math:`H_{kv}` key/value heads of
:math:`D_h` channels. The weights are named ``q_proj``, ``k_proj``, ``v_proj``
and ``o_proj`` as in transformers' ``LlamaAttention``, so a state dict loads
into either; :meth:`MultiHeadAttention.to_torch` copies them into
``nn.MultiheadAttention``. The softmax and product are
:func:`infralens.attention.naive_attention`: explicit matrix products that a
FLOP counter sees.
"""

from __future__ import annotations

import torch
from torch import nn

from infralens.attention import naive_attention
from infralens.core import positive_int

from .heads import merge_heads, repeat_kv, split_heads
from .rope import LAYOUTS, apply_rope


class MultiHeadAttention(nn.Module):
    r"""Self-attention with :math:`H` query heads and :math:`H_{kv}` key/value heads (:math:`H_{kv} = H`: MHA).

    :param dim: :math:`D`, the model width.
    :param heads: :math:`H`, query heads.
    :param kv_heads: :math:`H_{kv}`, key/value heads; must divide :math:`H` (default :math:`H`).
    :param head_dim: :math:`D_h` (default :math:`D / H`; it need not be).
    :param bias: biases on the four projections (Llama has none).
    :param rope_base: rotate queries and keys with RoPE of this base (Llama's
        ``rope_theta``); ``None`` for no position information in attention.
    :param rope_layout: ``"half"`` (transformers' ``rotate_half``) or ``"interleaved"``.

    >>> attn = MultiHeadAttention(64, 8, kv_heads=2)
    >>> x = torch.randn(2, 10, 64)                   # (B, S, D)
    >>> attn(x).shape
    torch.Size([2, 10, 64])
    >>> [tuple(t.shape) for t in attn.project(x)]    # Q (B, H, S, Dh), K and V (B, H_kv, S, Dh)
    [(2, 8, 10, 8), (2, 2, 10, 8), (2, 2, 10, 8)]
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        *,
        kv_heads: int | None = None,
        head_dim: int | None = None,
        bias: bool = False,
        rope_base: float | None = None,
        rope_layout: str = "half",
    ):
        super().__init__()
        d = positive_int("dim", dim, example=4096)
        h = positive_int("heads", heads, example=32)
        hkv = h if kv_heads is None else positive_int("kv_heads", kv_heads, example=8)
        if h % hkv:
            ok = [k for k in range(1, h + 1) if h % k == 0]
            raise ValueError(
                f"kv_heads must divide heads={h} (each KV head serves a whole group), one of {ok}; got {hkv}"
            )
        if head_dim is None and d % h:
            raise ValueError(f"dim={d} is not divisible by heads={h}: give head_dim, e.g. head_dim={d // h or 1}")
        dh = d // h if head_dim is None else positive_int("head_dim", head_dim, example=128)
        if rope_layout not in LAYOUTS:
            raise ValueError(
                f"rope_layout must be one of {', '.join(LAYOUTS)}, e.g. rope_layout='half'; got {rope_layout!r}"
            )
        if rope_base is not None and dh % 2:
            raise ValueError(f"RoPE rotates channel pairs, so head_dim must be even, e.g. head_dim={dh + 1}; got {dh}")
        self.dim, self.heads, self.kv_heads, self.head_dim = d, h, hkv, dh
        self.rope_base, self.rope_layout = rope_base, rope_layout
        self.q_proj = nn.Linear(d, h * dh, bias=bias)  # W_Q: D -> H * Dh
        self.k_proj = nn.Linear(d, hkv * dh, bias=bias)  # W_K: D -> H_kv * Dh
        self.v_proj = nn.Linear(d, hkv * dh, bias=bias)  # W_V: D -> H_kv * Dh
        self.o_proj = nn.Linear(h * dh, d, bias=bias)  # W_O: H * Dh -> D

    def project(
        self, x: torch.Tensor, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q ``(B, H, S, Dh)``, K and V ``(B, H_kv, S, Dh)`` of ``x`` ``(B, S, D)``; Q and K rotated if RoPE is on.

        ``positions`` (``(S,)`` or ``(B, S)``) defaults to ``0 .. S-1``; a decode
        step passes the position of its token. These K and V are what a KV
        cache stores: keys after rotation, values never rotated.
        """
        if not isinstance(x, torch.Tensor) or x.ndim != 3 or x.shape[-1] != self.dim:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"x must have shape (B, S, D) with D = {self.dim}, e.g. (1, 16, {self.dim}); got {got}")
        q = split_heads(self.q_proj(x), self.heads)  # (B, S, H * Dh) -> (B, H, S, Dh)
        k = split_heads(self.k_proj(x), self.kv_heads)  # (B, H_kv, S, Dh)
        v = split_heads(self.v_proj(x), self.kv_heads)  # (B, H_kv, S, Dh)
        if self.rope_base is not None:
            pos = torch.arange(x.shape[1], device=x.device) if positions is None else positions
            q = apply_rope(q, pos, base=self.rope_base, layout=self.rope_layout)
            k = apply_rope(k, pos, base=self.rope_base, layout=self.rope_layout)
        return q, k, v

    def attend(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        *,
        causal: bool = True,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attention of ``q`` over ``k``, ``v`` (cached keys included), then the output projection: ``(B, S_q, D)``.

        ``mask`` is boolean (``True`` = visible) or additive, broadcasting to
        ``(B, H, S_q, S_k)``; ``causal`` places query ``i`` at key position
        ``S_k - S_q + i``.
        """
        n_rep = self.heads // self.kv_heads
        k, v = repeat_kv(k, n_rep), repeat_kv(v, n_rep)  # (B, H, S_k, Dh)
        out = naive_attention(q, k, v, causal=causal, mask=mask)  # softmax(QK^T / sqrt(Dh) + M) V: (B, H, S_q, Dh)
        return self.o_proj(merge_heads(out))  # (B, S_q, H * Dh) -> (B, S_q, D)

    def forward(
        self,
        x: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        causal: bool = True,
        mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Self-attention of ``x`` ``(B, S, D)`` over itself: :meth:`project` then :meth:`attend`."""
        q, k, v = self.project(x, positions)
        return self.attend(q, k, v, causal=causal, mask=mask)

    def to_torch(self) -> nn.MultiheadAttention:
        """The same weights in ``nn.MultiheadAttention(dim, heads, batch_first=True)`` (MHA without RoPE only).

        torch packs :math:`W_Q, W_K, W_V` into one ``in_proj_weight`` of
        ``(3D, D)`` rows, in that order.
        """
        if self.kv_heads != self.heads or self.heads * self.head_dim != self.dim or self.rope_base is not None:
            raise ValueError(
                "nn.MultiheadAttention has kv_heads == heads, head_dim == dim / heads and no RoPE; "
                f"this module has kv_heads={self.kv_heads}, head_dim={self.head_dim}, rope_base={self.rope_base}"
            )
        bias = self.q_proj.bias is not None
        mha = nn.MultiheadAttention(self.dim, self.heads, bias=bias, batch_first=True)
        mha = mha.to(device=self.q_proj.weight.device, dtype=self.q_proj.weight.dtype)
        with torch.no_grad():
            mha.in_proj_weight.copy_(torch.cat([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight]))
            mha.out_proj.weight.copy_(self.o_proj.weight)
            if bias:
                mha.in_proj_bias.copy_(torch.cat([self.q_proj.bias, self.k_proj.bias, self.v_proj.bias]))
                mha.out_proj.bias.copy_(self.o_proj.bias)
        return mha
