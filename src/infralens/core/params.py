r"""Parameter counts of the layers every model here is built from, so that each model's count is a short sum.

The Llama counter of the transformer track and the Wan/UMT5 counters of the
offload lab add up these terms; each is checked against real modules
(``sum(p.numel())`` of the torch layer) in the tests.

.. math:: P_\text{linear} = d_\text{in} d_\text{out} + [\text{bias}]\, d_\text{out}, \qquad
   P_\text{attention} = d\,h\,d_h + 2\,d\,h_{kv} d_h + h\,d_h\,d \;(+\text{biases}), \qquad
   P_\text{gated FFN} = 3\,d\,f \;(+\text{biases})
"""

from __future__ import annotations

from .args import positive_int


def linear_params(d_in: int, d_out: int, *, bias: bool = True) -> int:
    """Weights and bias of ``nn.Linear(d_in, d_out, bias)``: ``d_in * d_out + d_out * bias``.

    >>> import torch
    >>> linear_params(64, 32) == sum(p.numel() for p in torch.nn.Linear(64, 32).parameters())
    True
    """
    i = positive_int("d_in", d_in, example=4096)
    o = positive_int("d_out", d_out, example=4096)
    return i * o + (o if bias else 0)


def norm_params(dim: int, *, bias: bool = False) -> int:
    """Scale (and shift with ``bias``) of an RMSNorm or LayerNorm over ``dim`` channels.

    >>> import torch
    >>> norm_params(64, bias=True) == sum(p.numel() for p in torch.nn.LayerNorm(64).parameters())
    True
    """
    d = positive_int("dim", dim, example=4096)
    return d * (2 if bias else 1)


def attention_params(
    dim: int, *, heads: int, kv_heads: int | None = None, head_dim: int | None = None, bias: bool = False
) -> int:
    r"""Q, K, V and output projections of one attention layer (grouped-query when ``kv_heads < heads``).

    :math:`d \cdot h d_h` for Q, :math:`d \cdot h_{kv} d_h` each for K and V,
    :math:`h d_h \cdot d` for the output, plus one bias per output feature with ``bias``.

    :param dim: :math:`d`, the model width.
    :param heads: :math:`h`, query heads.
    :param kv_heads: :math:`h_{kv}`, key/value heads (default :math:`h`).
    :param head_dim: :math:`d_h` (default :math:`d / h`).
    :param bias: whether the four projections have biases.

    >>> import torch
    >>> mha = torch.nn.MultiheadAttention(64, 8)
    >>> attention_params(64, heads=8, bias=True) == sum(p.numel() for p in mha.parameters())
    True
    """
    d = positive_int("dim", dim, example=4096)
    h = positive_int("heads", heads, example=32)
    hkv = h if kv_heads is None else positive_int("kv_heads", kv_heads, example=8)
    if h % hkv:
        raise ValueError(f"heads={h} must be a multiple of kv_heads={hkv} (each KV head serves whole groups)")
    dh = d // h if head_dim is None else positive_int("head_dim", head_dim, example=128)
    q, kv = h * dh, hkv * dh
    return linear_params(d, q, bias=bias) + 2 * linear_params(d, kv, bias=bias) + linear_params(q, d, bias=bias)


def gated_ffn_params(dim: int, hidden: int, *, bias: bool = False) -> int:
    r"""Gate, up and down projections of a gated feed-forward layer (SwiGLU, GeGLU): :math:`3 d f`.

    ``gate_proj`` and ``up_proj`` map :math:`d \to f`, ``down_proj`` maps :math:`f \to d`
    (transformers' names); plus one bias per output feature with ``bias``.

    :param dim: :math:`d`, the model width.
    :param hidden: :math:`f`, the FFN's inner width (``intermediate_size``).
    :param bias: whether the three projections have biases.

    >>> import torch
    >>> gate, up, down = torch.nn.Linear(64, 172), torch.nn.Linear(64, 172), torch.nn.Linear(172, 64)
    >>> gated_ffn_params(64, 172, bias=True) == sum(p.numel() for m in (gate, up, down) for p in m.parameters())
    True
    """
    d = positive_int("dim", dim, example=4096)
    f = positive_int("hidden", hidden, example=11008)
    return 2 * linear_params(d, f, bias=bias) + linear_params(f, d, bias=bias)
