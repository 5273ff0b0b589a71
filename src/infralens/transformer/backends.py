r"""Which kernel ``torch.nn.functional.scaled_dot_product_attention`` runs for a call, observed on this machine.

SDPA is one function with several implementations (backends): the math path
(matmul, softmax, matmul: the :math:`S \times S` scores in memory), FlashAttention,
memory-efficient attention and cuDNN. It picks one *per call* from the inputs'
device, dtype, shapes, mask and dropout, among those enabled (the
``torch.nn.attention.sdpa_kernel`` context manager narrows the set).
:func:`sdpa_dispatch` runs the call under a dispatch recorder and reports the
aten operator that executed, then forces each backend alone to learn which
ones accept the call and, from torch's own warnings, why the others refuse.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch reader knows
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode

BACKENDS = ("FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION", "MATH")
"""The SDPA backends of ``torch.nn.attention.SDPBackend`` that run attention."""

_KERNELS = {  # aten operator -> backend
    "_scaled_dot_product_flash_attention_for_cpu": "FLASH_ATTENTION",
    "_scaled_dot_product_flash_attention": "FLASH_ATTENTION",
    "_scaled_dot_product_efficient_attention": "EFFICIENT_ATTENTION",
    "_scaled_dot_product_cudnn_attention": "CUDNN_ATTENTION",
}


_MATH_CORE = {"bmm", "matmul", "mm", "_safe_softmax", "_softmax", "native_dropout", "bernoulli_"}
"""The operators that make up the math path's work (the rest are views, scales and casts)."""


class _Ops(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


@dataclass(frozen=True)
class SdpaDispatch:
    """What SDPA did with one call."""

    backend: str
    """The backend that ran with every backend enabled: a name of :data:`BACKENDS`."""
    ops: tuple[str, ...]
    """The aten operators that executed, in order (one fused kernel, or the math path's matmuls and softmax)."""
    accepted: tuple[str, ...]
    """Backends that run the call when forced alone with ``sdpa_kernel``."""
    refusals: dict[str, str]
    """For each other backend, torch's reason (its warnings), or ``"refused"`` if it gave none."""

    @property
    def kernel(self) -> str:
        """The fused kernel's aten operator, or the math path's matmuls and softmax in the order they ran."""
        fused = [op for op in self.ops if op in _KERNELS]
        if fused:
            return fused[0]
        core = [op for op in self.ops if op in _MATH_CORE]
        return "math: " + ", ".join(core)


def _run(query, key, value, kwargs) -> tuple[str, ...]:
    recorder = _Ops()
    with recorder:
        F.scaled_dot_product_attention(query, key, value, **kwargs)
    return tuple(recorder.ops)


def sdpa_dispatch(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    enable_gqa: bool = False,
) -> SdpaDispatch:
    """Run SDPA on these inputs and report which backend executed, which accept them, and why others refuse.

    :param query: ``(B, H, S_q, Dh)``.
    :param key: ``(B, H_kv, S_k, Dh)``.
    :param value: ``(B, H_kv, S_k, Dh_v)``.
    :param attn_mask: boolean (``True`` = visible) or additive float mask, broadcasting to ``(B, H, S_q, S_k)``.
    :param dropout_p: dropout on the attention weights.
    :param is_causal: the lower-triangular mask without a tensor.
    :param enable_gqa: let ``H_kv`` divide ``H`` (grouped-query attention).
    :returns: a :class:`SdpaDispatch`.

    >>> q = torch.randn(1, 8, 128, 64)
    >>> d = sdpa_dispatch(q, q, q, is_causal=True)
    >>> d.backend, d.ops
    ('FLASH_ATTENTION', ('_scaled_dot_product_flash_attention_for_cpu',))
    >>> math = sdpa_dispatch(q, q, q, dropout_p=0.1)
    >>> math.backend, math.kernel
    ('MATH', 'math: bmm, _safe_softmax, bernoulli_, bmm')
    """
    kwargs = {"attn_mask": attn_mask, "dropout_p": dropout_p, "is_causal": is_causal, "enable_gqa": enable_gqa}
    ops = _run(query, key, value, kwargs)
    fused = [_KERNELS[op] for op in ops if op in _KERNELS]
    backend = fused[0] if fused else "MATH"
    accepted, refusals = [], {}
    for name in BACKENDS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                with sdpa_kernel([getattr(SDPBackend, name)]):
                    F.scaled_dot_product_attention(query, key, value, **kwargs)
                accepted.append(name)
                continue
            except RuntimeError:
                pass
        reasons = [str(w.message).split(" (Triggered internally")[0].strip() for w in caught]
        refusals[name] = "; ".join(r for r in reasons if r and not r.endswith(":")) or "refused"
    return SdpaDispatch(backend=backend, ops=ops, accepted=tuple(accepted), refusals=refusals)
