r"""Symmetric integer quantization of weights, activations and KV caches: codes, scales, error and bytes.

A block of values shares one scale, chosen so its largest magnitude maps to the
largest code :math:`q_{\max} = 2^{b-1} - 1` (127 for int8, 7 for int4):

.. math:: s = \frac{\max |x|}{q_{\max}}, \qquad
   q = \operatorname{clamp}\big(\operatorname{round}(x / s), -q_{\max}, q_{\max}\big), \qquad \hat x = s\,q

The *scheme* says which values share a scale: the whole tensor (``"tensor"``),
each row (``"row"``: an output channel of a ``(out, in)`` weight, a token of a
``(tokens, channels)`` activation, one head's vector of a ``(B, H, S, Dh)``
cache), or each group of :math:`G` consecutive values along the last axis
(``"group"``, int4 weights with :math:`G = 128`). Scales are stored in 16 bits,
as :func:`infralens.calculators.weight_memory` counts them; :attr:`Quantized.nbytes`
measures the codes (int4 packed two to a byte) and the scales on the tensors.
The codes are those of torch's reference quantization ops
(``torch.ops.quantized_decomposed``), checked in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from infralens.core import positive_int

SCHEMES = ("tensor", "row", "group")
BITS = (8, 4)


@dataclass(frozen=True)
class Quantized:
    """Integer codes and their scales; :meth:`~infralens.transformer.Quantized.dequantize` gives the values back."""

    codes: torch.Tensor
    """int8 tensor of the input's shape, values in :math:`[-q_{\\max}, q_{\\max}]`."""
    scale: torch.Tensor
    """float16 scales, one per block, shaped to broadcast over the blocks (see :attr:`blocks`)."""
    bits: int
    """8 or 4."""
    scheme: str
    """``"tensor"``, ``"row"`` or ``"group"``."""
    group_size: int | None
    """:math:`G` for ``"group"``, else ``None``."""

    def dequantize(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        r""":math:`\hat x = s\,q` in ``dtype``, the input's shape."""
        blocks = self.blocks.to(torch.float32) * self.scale.to(torch.float32)  # (..., n_blocks, block)
        return blocks.reshape(self.codes.shape).to(dtype)

    @property
    def blocks(self) -> torch.Tensor:
        """The codes viewed so that :attr:`scale` broadcasts over them."""
        if self.scheme == "group":
            return self.codes.reshape(*self.codes.shape[:-1], -1, self.group_size)  # (..., n/G, G)
        return self.codes

    def packed(self) -> torch.Tensor:
        """The codes as stored: int8 for 8 bits, two 4-bit codes per ``uint8`` for 4 bits."""
        return self.codes if self.bits == 8 else pack_int4(self.codes)

    @property
    def nbytes(self) -> int:
        """Bytes of the stored codes plus the 16-bit scales, measured on the tensors."""
        return self.packed().nbytes + self.scale.nbytes


def quantize_symmetric(x: torch.Tensor, *, bits: int = 8, scheme: str = "row", group_size: int = 128) -> Quantized:
    r"""Quantize ``x`` with one scale per tensor, row or group: :math:`q = \operatorname{round}(x / s)`.

    :param x: a floating-point tensor (a weight ``(out, in)``, an activation ``(tokens, channels)``, a cache).
    :param bits: 8 or 4.
    :param scheme: ``"tensor"``, ``"row"`` (reduce over the last axis) or ``"group"`` (groups along it).
    :param group_size: :math:`G` for ``"group"``; must divide the last axis.
    :returns: a :class:`Quantized`.

    >>> w = torch.tensor([[0.5, -1.0, 0.25, 0.0], [2.0, 1.0, -0.5, 0.125]])
    >>> q = quantize_symmetric(w, bits=8, scheme="row")
    >>> q.codes
    tensor([[  64, -127,   32,    0],
            [ 127,   64,  -32,    8]], dtype=torch.int8)
    >>> q.scale.flatten().tolist()          # 1/127 and 2/127, rounded to float16
    [0.00787353515625, 0.0157470703125]
    >>> (q.dequantize() - w).abs().max().item() <= q.scale.max().item() / 2
    True
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.ndim == 0:
        got = f"{x.dtype} with {x.ndim} axes" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a floating-point tensor with one axis or more, e.g. a (out, in) weight; got {got}")
    if bits not in BITS:
        raise ValueError(f"bits must be 8 or 4, e.g. bits=8; got {bits!r}")
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}, e.g. scheme='row'; got {scheme!r}")
    G = None
    xf = x.float()
    if scheme == "group":
        G = positive_int("group_size", group_size, example=128)
        n = x.shape[-1]
        if n % G:
            divisors = [g for g in (32, 64, 128, 256) if n % g == 0] or [1]
            raise ValueError(f"group_size={G} must divide the last axis ({n} values), e.g. group_size={divisors[-1]}")
        xf = xf.reshape(*x.shape[:-1], n // G, G)  # (..., n/G, G)
    if bits == 4 and x.shape[-1] % 2:
        raise ValueError(f"4-bit codes are packed in pairs: the last axis must be even; got {x.shape[-1]}")
    q_max = 2 ** (bits - 1) - 1
    if scheme == "tensor":
        amax = xf.abs().amax().reshape((1,) * xf.ndim)  # (1, ..., 1)
    else:
        amax = xf.abs().amax(dim=-1, keepdim=True)  # (..., 1): per row or per group
    scale = (amax / q_max).to(torch.float16)  # s = max|x| / q_max, stored in 16 bits
    scale = torch.where(scale == 0, torch.ones_like(scale), scale)  # an all-zero block: any scale, codes 0
    codes = torch.round(xf * (1.0 / scale.float())).clamp(-q_max, q_max)  # q = round(x / s), as torch's ops do
    return Quantized(codes.to(torch.int8).reshape(x.shape), scale, bits, scheme, G)


def pack_int4(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last axis: ``(..., n)`` int8 in [-8, 7] -> ``(..., n/2)`` uint8.

    The even-indexed code fills the low nibble (two's complement in 4 bits).

    >>> pack_int4(torch.tensor([1, -2, 7, -8], dtype=torch.int8))
    tensor([225, 135], dtype=torch.uint8)
    >>> torch.equal(unpack_int4(pack_int4(torch.tensor([1, -2, 7, -8], dtype=torch.int8))),
    ...             torch.tensor([1, -2, 7, -8], dtype=torch.int8))
    True
    """
    if codes.dtype != torch.int8 or codes.shape[-1] % 2 or codes.min() < -8 or codes.max() > 7:
        raise ValueError(
            f"codes must be int8 in [-8, 7] with an even last axis; got {codes.dtype} {tuple(codes.shape)}"
        )
    nibbles = (codes.to(torch.int16) & 0xF).to(torch.uint8)  # (..., n) two's complement low nibbles
    return nibbles[..., 0::2] | (nibbles[..., 1::2] << 4)  # (..., n/2)


def unpack_int4(packed: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: ``(..., n/2)`` uint8 -> ``(..., n)`` int8 in [-8, 7]."""
    low = (packed & 0xF).to(torch.int8)
    high = (packed >> 4).to(torch.int8)
    both = torch.stack([low, high], dim=-1).flatten(-2)  # (..., n)
    return torch.where(both > 7, both - 16, both)
