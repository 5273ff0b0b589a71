r"""LoRA: a frozen linear layer plus a trainable update of rank :math:`r`.

A LoRA adapter leaves the pretrained weight :math:`W \in \mathbb R^{d_\text{out} \times d_\text{in}}`
untouched and learns two thin matrices, :math:`A \in \mathbb R^{r \times d_\text{in}}` (down) and
:math:`B \in \mathbb R^{d_\text{out} \times r}` (up). The layer computes

.. math:: y = W x + b + s\, B A x, \qquad s = \frac{\alpha}{r}

so its effective weight is :math:`W + s\,BA`, a matrix of rank at most :math:`r` added to :math:`W`.
:math:`B` starts at zero, which makes a new adapter an exact no-op; only :math:`A` and :math:`B`
train, :math:`r (d_\text{in} + d_\text{out})` numbers instead of :math:`d_\text{in} d_\text{out}`.

The names are PEFT's, which diffusers uses for its LoRA layers: ``lora_A``, ``lora_B``,
``lora_alpha`` (:math:`\alpha`) and ``scaling`` (:math:`s`, PEFT ``LoraLayer.update_layer``).
A runtime strength ``lora_scale`` multiplies :math:`s`, as diffusers' ``set_adapters``
weights and ``fuse_lora(lora_scale=...)`` do through PEFT's ``set_scale``.
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from infralens.core.args import compute_dtype, positive_int


def _rank(name: str, value: object, in_features: int, out_features: int) -> int:
    """A rank between 1 and min(in_features, out_features), or a ValueError saying why not."""
    rank = positive_int(name, value, example=8)
    limit = min(in_features, out_features)
    if rank > limit:
        raise ValueError(
            f"{name} must be <= min(in_features, out_features) = {limit}: B A has rank at most {limit}, so a "
            f"larger {name} adds parameters but no expressiveness; e.g. {name}={min(8, limit)}; got {rank}"
        )
    return rank


def _real(name: str, value: object, *, example: float, positive: bool) -> float:
    """A finite real number (> 0 if ``positive``) as a Python float, or a ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, e.g. {name}={example}; got {value!r}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, e.g. {name}={example}; got {value}")
    return float(value)


def lora_param_count(in_features: int, out_features: int, rank: int) -> int:
    r"""Trainable parameters of one LoRA adapter on a ``(out_features, in_features)`` weight.

    .. math:: P_\text{LoRA} = r\,(d_\text{in} + d_\text{out})
       \quad\text{versus}\quad P_W = d_\text{in}\, d_\text{out}

    :param in_features: :math:`d_\text{in}`, the width the layer reads.
    :param out_features: :math:`d_\text{out}`, the width it writes.
    :param rank: :math:`r`, between 1 and :math:`\min(d_\text{in}, d_\text{out})`.
    :returns: the number of entries of :math:`A` and :math:`B` (the frozen :math:`W` not included).

    >>> lora_param_count(3072, 3072, rank=16)  # one FLUX.1 attention projection
    98304
    >>> lora_param_count(3072, 3072, rank=16) / (3072 * 3072)  # of the full weight
    0.010416666666666666
    """
    d_in = positive_int("in_features", in_features, example=3072)
    d_out = positive_int("out_features", out_features, example=3072)
    r = _rank("rank", rank, d_in, d_out)
    return r * (d_in + d_out)  # A is (r, d_in), B is (d_out, r)


class LoRALinear(nn.Module):
    r"""A frozen ``nn.Linear`` plus a low-rank update: :math:`y = Wx + b + s\,BAx`, :math:`s = \alpha / r`.

    ``forward(x (..., d_in)) -> (..., d_out)``. The wrapped layer's parameters are set to
    ``requires_grad=False``; ``lora_A`` is initialised like an ``nn.Linear`` weight (Kaiming
    uniform, PEFT's default) and ``lora_B`` to zeros, so the new layer returns exactly what the
    base layer returns until :math:`B` is trained.

    :param base: the pretrained ``torch.nn.Linear``, frozen in place (another module type raises
        ``ValueError``).
    :param rank: :math:`r`, between 1 and ``min(in_features, out_features)``.
    :param lora_alpha: :math:`\alpha`; ``None`` means :math:`\alpha = r` (:math:`s = 1`), what
        diffusers assumes for a checkpoint that stores no alpha.
    :param lora_scale: a runtime strength multiplying :math:`s` (diffusers' adapter weight);
        0 switches the adapter off.

    >>> _ = torch.manual_seed(0)
    >>> layer = LoRALinear(nn.Linear(64, 32), rank=4, lora_alpha=8)
    >>> x = torch.randn(2, 10, 64)                       # (B, L, d_in)
    >>> torch.equal(layer(x), layer.base(x)), layer.scaling  # B = 0: a no-op
    (True, 2.0)
    >>> layer.lora_A.shape, layer.lora_B.shape           # (r, d_in), (d_out, r)
    (torch.Size([4, 64]), torch.Size([32, 4]))
    """

    def __init__(
        self,
        base: nn.Module,
        rank: int,
        lora_alpha: float | None = None,
        *,
        lora_scale: float = 1.0,
    ):
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise ValueError(
                "base must be a torch.nn.Linear, e.g. LoRALinear(nn.Linear(3072, 3072), rank=8); "
                f"got {type(base).__name__}"
            )
        self.rank = _rank("rank", rank, base.in_features, base.out_features)
        alpha = self.rank if lora_alpha is None else lora_alpha
        self.lora_alpha = _real("lora_alpha", alpha, example=16, positive=True)
        self.lora_scale = _real("lora_scale", lora_scale, example=1.0, positive=False)
        self.base = base.requires_grad_(False)  # W and b stay frozen
        w = base.weight
        self.lora_A = nn.Parameter(torch.empty(self.rank, base.in_features, dtype=w.dtype, device=w.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, self.rank, dtype=w.dtype, device=w.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # like nn.Linear (and PEFT); B stays 0

    @property
    def scaling(self) -> float:
        r""":math:`s = \text{lora\_scale} \cdot \alpha / r`, the factor in front of :math:`BA`."""
        return self.lora_scale * self.lora_alpha / self.rank

    def delta_weight(self) -> torch.Tensor:
        r"""The update :math:`\Delta W = s\,BA`, shape ``(out_features, in_features)``, rank at most :math:`r`.

        Computed in float32 or better and returned in the base weight's dtype.
        """
        return self._delta().to(self.base.weight.dtype)  # (d_out, d_in)

    def _delta(self) -> torch.Tensor:
        dtype = compute_dtype(self.base.weight.dtype)
        # Delta W = s * B A
        return self.scaling * (self.lora_B.to(dtype) @ self.lora_A.to(dtype))  # (d_out, r) @ (r, d_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d_in = self.base.in_features
        if not isinstance(x, torch.Tensor) or x.ndim == 0 or x.shape[-1] != d_in:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(
                f"x must be a tensor whose last axis has in_features = {d_in}, e.g. torch.randn(2, 10, {d_in}); "
                f"got {shape}"
            )
        # y = W x + b + s * B (A x): the adapter path never forms the (d_out, d_in) update
        down = x @ self.lora_A.T  # (..., r)
        return self.base(x) + self.scaling * (down @ self.lora_B.T)  # (..., d_out)

    def merge(self) -> nn.Module:
        r"""A new frozen ``torch.nn.Linear`` with weight :math:`W + s\,BA` and the same bias.

        Its output equals the adapter path's up to float rounding, at the cost of one
        plain matmul. The adapter itself is left unchanged (PEFT's ``merge`` and
        diffusers' ``fuse_lora`` instead write into the base weight in place).

        >>> _ = torch.manual_seed(0)
        >>> layer = LoRALinear(nn.Linear(64, 32), rank=4, lora_alpha=8)
        >>> with torch.no_grad():
        ...     _ = layer.lora_B.normal_()        # stand-in for a trained B
        >>> x = torch.randn(2, 10, 64)
        >>> torch.allclose(layer.merge()(x), layer(x), atol=1e-5)
        True
        """
        base = self.base
        shape_only = nn.Linear(  # built on the meta device: no random init, the global RNG is untouched
            base.in_features, base.out_features, bias=base.bias is not None, device="meta", dtype=base.weight.dtype
        )
        merged = shape_only.to_empty(device=base.weight.device)
        with torch.no_grad():
            dtype = compute_dtype(base.weight.dtype)
            # W' = W + s * B A, added in float32 or better, stored in W's dtype
            merged.weight.copy_((base.weight.to(dtype) + self._delta()).to(base.weight.dtype))
            if base.bias is not None:
                merged.bias.copy_(base.bias)
        return merged.requires_grad_(False)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, lora_alpha={self.lora_alpha:g}, scaling={self.scaling:g}"
