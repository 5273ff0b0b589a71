"""Tiny Llama configurations and attention layers of transformers, built in code (nothing downloaded).

Shared by the transformer track's cross-checks so that "a tiny Llama attention"
means the same module in every test.
"""

from __future__ import annotations

import pytest

transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")

from transformers import LlamaConfig  # noqa: E402
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding  # noqa: E402

from infralens.transformer import MultiHeadAttention  # noqa: E402

SHAPES = {  # hidden_size, heads, kv_heads, head_dim (None: hidden_size / heads)
    "mha": (32, 4, 4, None),
    "gqa": (32, 4, 2, None),
    "mqa-wide-heads": (32, 4, 1, 16),  # head_dim 16 != 32 / 4: Dh is not always D / H
}


def tiny_config(shape: str = "gqa", *, attn: str = "eager", rope_theta: float = 10000.0, **extra) -> LlamaConfig:
    """A one-layer Llama config of one of :data:`SHAPES`; ``attn`` is ``"eager"`` or ``"sdpa"``."""
    dim, heads, kv_heads, head_dim = SHAPES[shape]
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=dim,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=head_dim or dim // heads,
        max_position_embeddings=64,
        rope_theta=rope_theta,
        **extra,
    )
    cfg._attn_implementation = attn
    return cfg


def tiny_pair(shape: str = "gqa", *, attn: str = "eager", seed: int = 0, dtype=torch.float64):
    """Our :class:`MultiHeadAttention` and transformers' ``LlamaAttention`` holding the same weights, plus its RoPE."""
    cfg = tiny_config(shape, attn=attn)
    dim, heads, kv_heads, head_dim = SHAPES[shape]
    torch.manual_seed(seed)
    ours = MultiHeadAttention(dim, heads, kv_heads=kv_heads, head_dim=head_dim, rope_base=10000.0).to(dtype)
    theirs = LlamaAttention(cfg, layer_idx=0).to(dtype).eval()
    theirs.load_state_dict(ours.state_dict())  # the same parameter names: q_proj, k_proj, v_proj, o_proj
    return ours, theirs, LlamaRotaryEmbedding(cfg), cfg
