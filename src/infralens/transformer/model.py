r"""A tiny Llama-style decoder of our own: the model the training loop, KV-cache and quantization labs run.

It is Llama's architecture at toy size, written out in torch: token
embeddings, :math:`L` pre-norm blocks of grouped-query attention with RoPE
(:class:`~infralens.transformer.MultiHeadAttention` in the half-split
``rotate_half`` layout) and a SwiGLU feed-forward layer, a final RMSNorm and an
output head. Module and parameter names are those of
transformers' ``LlamaForCausalLM`` (``model.layers.0.self_attn.q_proj.weight``,
...), so a state dict moves between the two unchanged and ``tox -e upstream``
compares their logits and their caches on the same weights. One block:

.. math:: h = x + \operatorname{Attn}(\operatorname{RMSNorm}(x)), \qquad
   y = h + W_\text{down}\big(\operatorname{SiLU}(W_\text{gate} \hat h) \odot W_\text{up} \hat h\big),
   \quad \hat h = \operatorname{RMSNorm}(h)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch reader knows
from torch import nn

from infralens.core import positive_int

from .kv_cache import KVCache
from .multi_head import MultiHeadAttention
from .params import llama_param_count


@dataclass(frozen=True)
class DecoderConfig:
    """The fields of transformers' ``LlamaConfig`` that the tiny decoder reads, with toy-sized defaults."""

    vocab_size: int = 96
    hidden_size: int = 64
    intermediate_size: int = 176
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        llama_param_count(**self.count_fields())  # the count's checks are the architecture's rules

    @property
    def dh(self) -> int:
        """:math:`d_h`, channels per head (``head_dim``, or ``hidden_size / num_attention_heads``)."""
        return self.head_dim or self.hidden_size // self.num_attention_heads

    def count_fields(self) -> dict:
        """The keyword arguments of :func:`~infralens.transformer.llama_param_count` for this config."""
        names = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads")
        names += ("num_key_value_heads", "tie_word_embeddings", "head_dim")
        return {k: getattr(self, k) for k in names}

    def replace(self, **changes) -> DecoderConfig:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


class MLP(nn.Module):
    r"""SwiGLU: :math:`W_\text{down}(\operatorname{SiLU}(W_\text{gate} x) \odot W_\text{up} x)`, three matrices."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        d, f = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, f, bias=False)
        self.up_proj = nn.Linear(d, f, bias=False)
        self.down_proj = nn.Linear(f, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))  # (B, S, F) -> (B, S, D)


class DecoderLayer(nn.Module):
    """Pre-norm block: grouped-query attention with RoPE, then SwiGLU, each added to the residual stream."""

    def __init__(self, config: DecoderConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.self_attn = MultiHeadAttention(
            config.hidden_size,
            config.num_attention_heads,
            kv_heads=config.num_key_value_heads,
            head_dim=config.dh,
            rope_base=config.rope_theta,
        )
        self.mlp = MLP(config)
        self.input_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)
        self.post_attention_layernorm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(self, x: torch.Tensor, positions: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        q, k, v = self.self_attn.project(self.input_layernorm(x), positions)  # K rotated: (B, H_kv, S, Dh)
        if cache is not None:
            k, v = cache.update(self.layer_idx, k, v)  # (B, H_kv, S_past + S, Dh)
        x = x + self.self_attn.attend(q, k, v, causal=True)  # query i at position S_k - S + i: (B, S, D)
        return x + self.mlp(self.post_attention_layernorm(x))


class _Backbone(nn.Module):
    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = nn.RMSNorm(config.hidden_size, eps=config.rms_norm_eps)


class TinyLlama(nn.Module):
    """A Llama-style causal language model; ``forward(input_ids)`` returns logits ``(B, S, V)``.

    :param config: the architecture; :class:`DecoderConfig` defaults give a toy model.

    With a :class:`~infralens.transformer.KVCache`, the call appends this chunk's
    keys and values to the cache and its tokens stand after the cached ones:

    >>> model = TinyLlama(DecoderConfig()).eval()
    >>> ids = torch.randint(0, 96, (1, 6))                 # (B, S)
    >>> full = model(ids)                                   # (B, S, V)
    >>> cache = KVCache()
    >>> prefill = model(ids[:, :5], cache=cache)            # (B, 5, V)
    >>> step = model(ids[:, 5:], cache=cache)               # (B, 1, V)
    >>> cache.seq_len, torch.allclose(step[:, -1], full[:, -1], atol=1e-5)
    (6, True)
    """

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = config
        self.model = _Backbone(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        for module in self.modules():  # transformers' initialisation: N(0, 0.02) weights, unit norm scales
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=config.initializer_range)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def forward(self, input_ids: torch.Tensor, *, cache: KVCache | None = None) -> torch.Tensor:
        """Logits ``(B, S, V)`` for token ids ``(B, S)``; with ``cache``, after the cached tokens."""
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be integer token ids of shape (B, S), e.g. (1, 16); got {got}")
        past = cache.seq_len if cache is not None else 0
        positions = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)  # (S,)
        x = self.model.embed_tokens(input_ids)  # (B, S, D)
        for layer in self.model.layers:
            x = layer(x, positions, cache)
        return self.lm_head(self.model.norm(x))  # (B, S, V)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, *, cache: KVCache | None = None) -> torch.Tensor:
        """Greedy decoding: one prefill, then one cached step per new token; returns ``(B, S + new)`` ids."""
        n = positive_int("max_new_tokens", max_new_tokens, example=32)
        cache = KVCache() if cache is None else cache
        ids = input_ids
        logits = self(ids, cache=cache)  # prefill: (B, S, V)
        for step in range(n):
            nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
            ids = torch.cat([ids, nxt], dim=1)
            if step < n - 1:
                logits = self(nxt, cache=cache)  # decode: (B, 1, V)
        return ids
