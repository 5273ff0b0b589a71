r"""Rotary position embedding (RoPE, Su et al. 2021): queries and keys rotated by an angle per position.

Channels are taken in pairs; pair :math:`i` of a head of :math:`D_h` channels
turns at the inverse frequency

.. math:: \omega_i = b^{-2i/D_h}, \qquad i = 0, \dots, D_h/2 - 1,

so at position :math:`m` it is rotated by :math:`\theta_{m,i} = m\,\omega_i`:

.. math:: \begin{pmatrix} x'_a \\ x'_b \end{pmatrix} =
   \begin{pmatrix} \cos\theta_{m,i} & -\sin\theta_{m,i} \\ \sin\theta_{m,i} & \cos\theta_{m,i} \end{pmatrix}
   \begin{pmatrix} x_a \\ x_b \end{pmatrix}

Which two channels form pair :math:`i` is a *layout*, fixed when a model is
trained: ``"half"`` pairs :math:`a = i` with :math:`b = i + D_h/2` (GPT-NeoX,
and transformers' Llama through ``rotate_half``); ``"interleaved"`` pairs
:math:`a = 2i` with :math:`b = 2i + 1` (the RoFormer paper, Meta's original
Llama code, GPT-J). A rotation preserves dot products' dependence on the angle
*difference*: :math:`\langle R_m q, R_n k\rangle` depends on :math:`m - n` only.
"""

from __future__ import annotations

import math
import numbers

import torch

from infralens.core import positive_int

LAYOUTS = ("half", "interleaved")
SCALINGS = ("linear", "ntk")


def _head_dim(head_dim: int) -> int:
    d = positive_int("head_dim", head_dim, example=128)
    if d % 2:
        raise ValueError(f"head_dim must be even (channels are rotated in pairs), e.g. head_dim={d + 1}; got {d}")
    return d


def _base(base: object) -> float:
    if isinstance(base, bool) or not isinstance(base, numbers.Real) or not math.isfinite(base) or base <= 1:
        raise ValueError(f"base must be a number > 1, e.g. base=10000.0; got {base!r}")
    return float(base)


def rope_inv_freq(head_dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    r"""The inverse frequencies :math:`\omega_i = b^{-2i/D_h}`, shape ``(head_dim // 2,)``, float32 by default.

    Computed in float64 and rounded once to ``dtype``. Pair 0 turns one radian per
    position; the last pair turns :math:`b^{-(D_h - 2)/D_h}`, about
    :math:`1/b`, radians per position.

    >>> rope_inv_freq(8).tolist()
    [1.0, 0.10000000149011612, 0.009999999776482582, 0.0010000000474974513]
    """
    d, b = _head_dim(head_dim), _base(base)
    two_i = torch.arange(0, d, 2, dtype=torch.float64)  # 2i
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, e.g. dtype=torch.float32; got {dtype!r}")
    return (b ** (-two_i / d)).to(dtype)  # omega_i = b^(-2i / D_h)


def rope_scaled_inv_freq(head_dim: int, *, factor: float, method: str = "linear", base: float = 10000.0):
    r"""Inverse frequencies stretched to serve ``factor`` times the trained context.

    ``"linear"`` (position interpolation, Chen et al. 2023) divides every
    frequency by the factor: position :math:`m` gets the angles position
    :math:`m / \text{factor}` had. ``"ntk"`` (NTK-aware scaling) raises the base
    to :math:`b' = b \cdot \text{factor}^{D_h / (D_h - 2)}`: the fastest pair is
    unchanged and the slowest is divided by exactly the factor, so nearby
    positions stay as distinguishable as in training.

    >>> lin = rope_scaled_inv_freq(8, factor=4)
    >>> torch.allclose(lin, rope_inv_freq(8) / 4)
    True
    >>> ntk = rope_scaled_inv_freq(8, factor=4, method="ntk")
    >>> (ntk / rope_inv_freq(8)).tolist()[0], round((ntk / rope_inv_freq(8)).tolist()[-1], 6)
    (1.0, 0.25)
    """
    d, b = _head_dim(head_dim), _base(base)
    if isinstance(factor, bool) or not isinstance(factor, numbers.Real) or not math.isfinite(factor) or factor < 1:
        raise ValueError(f"factor must be a number >= 1 (the context is stretched), e.g. factor=4.0; got {factor!r}")
    if method not in SCALINGS:
        raise ValueError(f"method must be one of {', '.join(SCALINGS)}, e.g. method='linear'; got {method!r}")
    if method == "linear":
        return (rope_inv_freq(d, b).double() / factor).to(torch.float32)  # omega_i / factor
    return rope_inv_freq(d, b * factor ** (d / (d - 2)))  # b' = b * factor^(D_h / (D_h - 2))


def rope_angles(
    positions: torch.Tensor, head_dim: int, base: float = 10000.0, *, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    r"""The angles :math:`\theta_{m,i} = m\,\omega_i`, shape ``positions.shape + (head_dim // 2,)``.

    In float32 by default, the product taken in float32 as transformers'
    ``LlamaRotaryEmbedding`` takes it, so the angles are the ones a Llama
    checkpoint runs with; float64 for exact checks at long positions.

    >>> rope_angles(torch.tensor([0, 1, 2]), 4).tolist()
    [[0.0, 0.0], [1.0, 0.009999999776482582], [2.0, 0.019999999552965164]]
    """
    if not isinstance(positions, torch.Tensor) or positions.dtype.is_floating_point or positions.dtype == torch.bool:
        raise ValueError(f"positions must be an integer tensor, e.g. torch.arange(16); got {positions!r}")
    inv_freq = rope_inv_freq(head_dim, base, dtype=dtype).to(positions.device)  # (D_h / 2,)
    return positions[..., None].to(dtype) * inv_freq  # theta = m * omega: (..., S, D_h / 2)


def apply_rope(x: torch.Tensor, positions: torch.Tensor, *, base: float = 10000.0, layout: str = "half"):
    r"""Rotate each channel pair of ``x`` by :math:`\theta_{m,i}` at its position :math:`m`.

    :param x: queries or keys, ``(B, H, S, Dh)``.
    :param positions: integer positions, ``(S,)`` shared by the batch or ``(B, S)`` per sample.
    :param base: :math:`b`, the model's ``rope_theta``.
    :param layout: ``"half"`` pairs channel :math:`i` with :math:`i + D_h/2`
        (transformers' ``rotate_half``), ``"interleaved"`` pairs :math:`2i` with :math:`2i + 1`.
    :returns: the rotated tensor, same shape and dtype as ``x``, computed in float32 (float64 for a
        float64 ``x``, angles included).

    >>> x = torch.randn(1, 2, 5, 8)
    >>> y = apply_rope(x, torch.arange(5))
    >>> torch.allclose(y.norm(dim=-1), x.norm(dim=-1))  # a rotation keeps lengths
    True
    >>> torch.equal(y[:, :, 0], x[:, :, 0])  # position 0 is not rotated
    True
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must have 4 axes (B, H, S, Dh), e.g. (1, 8, 16, 64); got {got}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, e.g. layout='half'; got {layout!r}")
    B, _, S, Dh = x.shape
    if not isinstance(positions, torch.Tensor) or positions.shape not in ((S,), (B, S)):
        got = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
        raise ValueError(
            f"positions must have shape (S,) = ({S},) or (B, S) = ({B}, {S}), e.g. torch.arange({S}); got {got}"
        )
    compute = torch.promote_types(x.dtype, torch.float32)
    theta = rope_angles(positions, Dh, base, dtype=compute)  # (S, Dh/2) or (B, S, Dh/2)
    if theta.ndim == 3:
        theta = theta[:, None]  # (B, 1, S, Dh/2): the same angles for every head
    cos, sin = theta.cos(), theta.sin()
    xf = x.to(compute)
    if layout == "half":
        a, b = xf[..., : Dh // 2], xf[..., Dh // 2 :]  # pair i = (i, i + Dh/2)
        out = torch.cat((a * cos - b * sin, b * cos + a * sin), dim=-1)
    else:
        a, b = xf[..., 0::2], xf[..., 1::2]  # pair i = (2i, 2i + 1)
        out = torch.stack((a * cos - b * sin, b * cos + a * sin), dim=-1).flatten(-2)
    return out.to(x.dtype)  # (B, H, S, Dh)


def interleaved_to_half(head_dim: int) -> torch.Tensor:
    r"""The channel order that turns an interleaved-layout head into a half-layout one: ``[0, 2, ..., 1, 3, ...]``.

    ``x[..., perm]`` moves pair :math:`(2i, 2i+1)` to :math:`(i, i + D_h/2)`, so
    ``apply_rope(x, p, layout="interleaved")[..., perm]`` equals
    ``apply_rope(x[..., perm], p, layout="half")``. Converting a checkpoint
    applies the same order to the rows of its query and key projections.

    >>> interleaved_to_half(8).tolist()
    [0, 2, 4, 6, 1, 3, 5, 7]
    """
    d = _head_dim(head_dim)
    return torch.cat((torch.arange(0, d, 2), torch.arange(1, d, 2)))


def interleaved_rows_to_half(weight: torch.Tensor, head_dim: int) -> torch.Tensor:
    r"""A query or key projection trained with interleaved RoPE, reordered to run with the half layout.

    The rows of ``q_proj.weight`` (or ``k_proj.weight``), shape ``(H * Dh, D)``,
    are the heads' output channels; reordering each head's rows by
    :func:`interleaved_to_half` makes the projection emit its channels in the
    order the half layout pairs them, so attention computes the same scores.
    Values and the output projection are unchanged: RoPE never touches them.

    >>> w = torch.arange(8.0)[:, None]                    # one head of 8 channels, D = 1
    >>> interleaved_rows_to_half(w, 8).flatten().tolist()
    [0.0, 2.0, 4.0, 6.0, 1.0, 3.0, 5.0, 7.0]
    """
    d = _head_dim(head_dim)
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2 or weight.shape[0] % d:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be (H * head_dim, D) with head_dim={d}, e.g. (4 * {d}, 512); got {got}")
    heads = weight.shape[0] // d
    perm = interleaved_to_half(d).to(weight.device)
    return weight.view(heads, d, -1)[:, perm].reshape(weight.shape)  # (H, Dh, D) -> rows reordered per head
