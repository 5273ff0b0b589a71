r"""Parameters of a Llama-style decoder from its configuration: where they live, and the SwiGLU width rule.

A Llama decoder is an embedding table, :math:`L` identical blocks and an output
head. Each block holds an attention layer (grouped-query when
:math:`h_{kv} < h`), a SwiGLU feed-forward layer with three matrices, and two
RMSNorm scales; one more RMSNorm sits before the head. With no biases:

.. math:: P = \underbrace{V d}_\text{embeddings}
   + L\,\big(\underbrace{d\,h\,d_h + 2\,d\,h_{kv} d_h + h\,d_h\,d}_\text{attention}
   + \underbrace{3\,d\,f}_\text{SwiGLU FFN} + \underbrace{2 d}_\text{norms}\big)
   + \underbrace{d}_\text{final norm} + \underbrace{V d}_\text{head, unless tied}

Every term is a layer count of :mod:`infralens.core` (``attention_params``,
``gated_ffn_params``, ``norm_params``, ``linear_params``), each checked
against torch layers; ``tox -e upstream`` compares the total with
``sum(p.numel())`` of transformers' ``LlamaForCausalLM`` built on the meta
device. Argument names are the fields of transformers' ``LlamaConfig``.
"""

from __future__ import annotations

import inspect
import math
import numbers
from dataclasses import dataclass

from infralens.core import attention_params, gated_ffn_params, linear_params, nearest_text, norm_params, positive_int

LLAMA2_7B = {
    "vocab_size": 32000,
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 32,
    "tie_word_embeddings": False,
}
"""Llama-2-7B's published configuration, the fields :func:`llama_param_count` reads.

They are also the defaults of transformers' ``LlamaConfig`` (checked by ``tox -e upstream``).
"""


SWIGLU_MULTIPLE_OF = 256
"""The rounding step of the SwiGLU width in Meta's Llama 2 code (7B and 13B): :math:`f` is a multiple of it."""


@dataclass(frozen=True)
class LlamaParams:
    """Parameters of a Llama-style decoder, by where they live."""

    embeddings: int
    """:math:`V d`: the token embedding table (``model.embed_tokens``)."""
    attention: int
    """:math:`L (d h d_h + 2 d h_{kv} d_h + h d_h d)`: Q, K, V and O of every layer."""
    ffn: int
    """:math:`3 L d f`: ``gate_proj``, ``up_proj`` and ``down_proj`` of every layer."""
    norms: int
    """:math:`(2L + 1) d`: two RMSNorm scales per layer and the final one."""
    head: int
    """:math:`V d`, or 0 with tied embeddings (``lm_head`` reuses the embedding table)."""
    num_hidden_layers: int
    """:math:`L`."""

    @property
    def total(self) -> int:
        """Every parameter, each counted once."""
        return self.embeddings + self.attention + self.ffn + self.norms + self.head

    @property
    def per_layer(self) -> int:
        """One decoder block: attention, FFN and its two norms."""
        L = self.num_hidden_layers
        return (self.attention + self.ffn) // L + (self.norms // (2 * L + 1)) * 2

    @property
    def ffn_share_of_block(self) -> float:
        """The FFN's share of one block's parameters (about two thirds for Llama-2-7B)."""
        return self.ffn / self.num_hidden_layers / self.per_layer


def swiglu_intermediate_size(
    hidden_size: int, *, multiple_of: int = SWIGLU_MULTIPLE_OF, ffn_dim_multiplier: float | None = None
) -> int:
    r"""SwiGLU's inner width :math:`f` from the model width :math:`d`, by the rule of Meta's Llama code.

    A plain MLP of width :math:`4d` has :math:`8d^2` parameters. SwiGLU has three
    matrices, so its width is cut to :math:`\tfrac23 \cdot 4d` to keep about
    that budget, optionally scaled, then rounded *up* to a multiple:

    .. math:: f = m \left\lceil \frac{\lfloor \mu \lfloor 8d/3 \rfloor \rfloor}{m} \right\rceil

    :param hidden_size: :math:`d`.
    :param multiple_of: :math:`m`, the rounding step (256 in Llama 2 7B and 13B).
    :param ffn_dim_multiplier: :math:`\mu`, an extra scale (none in Llama 2 7B and 13B).
    :returns: :math:`f`, the ``intermediate_size``.

    >>> swiglu_intermediate_size(4096), 8 * 4096 / 3
    (11008, 10922.666666666666)
    """
    d = positive_int("hidden_size", hidden_size, example=4096)
    m = positive_int("multiple_of", multiple_of, example=256)
    f = int(2 * (4 * d) / 3)  # floor(8d/3): the width that keeps 3 d f near 8 d^2
    if ffn_dim_multiplier is not None:
        mu = ffn_dim_multiplier
        if isinstance(mu, bool) or not isinstance(mu, numbers.Real) or not math.isfinite(mu) or mu <= 0:
            raise ValueError(f"ffn_dim_multiplier must be a finite number > 0, e.g. ffn_dim_multiplier=1.3; got {mu!r}")
        f = int(mu * f)
    return m * -(-f // m)  # round up to a multiple of m


def llama_param_breakdown(**config: int | bool | None) -> LlamaParams:
    r"""Parameters of a Llama-style decoder, by part: embeddings, attention, FFN, norms and head.

    :param config: the keywords of :func:`llama_param_count` (the names of ``transformers.LlamaConfig``);
        a missing or unknown keyword is a :class:`TypeError`, as in a call of that function.
    :returns: a :class:`LlamaParams`.

    >>> p = llama_param_breakdown(**LLAMA2_7B)
    >>> p.embeddings, p.attention, p.ffn, p.norms, p.head
    (131072000, 2147483648, 4328521728, 266240, 131072000)
    >>> p.total, p.per_layer
    (6738415616, 202383360)
    """
    bound = inspect.signature(llama_param_count).bind(**config)  # one signature: llama_param_count's
    bound.apply_defaults()
    c = bound.arguments
    vocab_size, hidden_size, intermediate_size = c["vocab_size"], c["hidden_size"], c["intermediate_size"]
    num_hidden_layers, num_attention_heads = c["num_hidden_layers"], c["num_attention_heads"]
    num_key_value_heads, head_dim = c["num_key_value_heads"], c["head_dim"]
    tie_word_embeddings = c["tie_word_embeddings"]
    V = positive_int("vocab_size", vocab_size, example=32000)
    d = positive_int("hidden_size", hidden_size, example=4096)
    f = positive_int("intermediate_size", intermediate_size, example=11008)
    L = positive_int("num_hidden_layers", num_hidden_layers, example=32)
    h = positive_int("num_attention_heads", num_attention_heads, example=32)
    h_kv = positive_int("num_key_value_heads", num_key_value_heads, example=8)
    if h % h_kv:
        raise ValueError(
            f"num_attention_heads={h} must be a multiple of num_key_value_heads={h_kv} "
            f"(each KV head serves a whole group of query heads); {nearest_text(h_kv, lambda k: h % k == 0)}"
        )
    if head_dim is None:
        if d % h:
            raise ValueError(
                f"hidden_size={d} is not a multiple of num_attention_heads={h}: give head_dim, e.g. head_dim={d // h}"
            )
        head_dim = d // h
    dh = positive_int("head_dim", head_dim, example=128)
    if not isinstance(tie_word_embeddings, bool):
        raise ValueError(f"tie_word_embeddings must be True or False; got {tie_word_embeddings!r}")
    return LlamaParams(
        embeddings=V * d,  # an embedding table is a bias-free linear map of its V one-hot inputs
        attention=L * attention_params(d, heads=h, kv_heads=h_kv, head_dim=dh),
        ffn=L * gated_ffn_params(d, f),
        norms=(2 * L + 1) * norm_params(d),  # input_layernorm, post_attention_layernorm per layer; model.norm
        head=0 if tie_word_embeddings else linear_params(d, V, bias=False),
        num_hidden_layers=L,
    )


def llama_param_count(
    *,
    vocab_size: int,
    hidden_size: int,
    intermediate_size: int,
    num_hidden_layers: int,
    num_attention_heads: int,
    num_key_value_heads: int,
    tie_word_embeddings: bool = False,
    head_dim: int | None = None,
) -> int:
    r"""Every parameter of a Llama-style decoder: ``sum(p.numel())`` of ``LlamaForCausalLM(config)``.

    The total of :func:`llama_param_breakdown` (norms included, no biases).

    :param vocab_size: :math:`V`.
    :param hidden_size: :math:`d`.
    :param intermediate_size: :math:`f`, the SwiGLU width (see :func:`swiglu_intermediate_size`).
    :param num_hidden_layers: :math:`L`.
    :param num_attention_heads: :math:`h`.
    :param num_key_value_heads: :math:`h_{kv}`, a divisor of :math:`h` (:math:`h` without grouped-query attention).
    :param tie_word_embeddings: the head reuses the embedding table.
    :param head_dim: :math:`d_h` (default :math:`d / h`, which must then be whole).

    >>> llama_param_count(**LLAMA2_7B)
    6738415616
    """
    return llama_param_breakdown(**locals()).total  # the same keywords, passed through
