r"""Top-k routing of a mixture of experts: softmax gate, capacity, dropped tokens and the load-balancing loss.

For :math:`T` tokens and :math:`E` experts the router's logits :math:`z` are
``(T, E)``. Each token picks the :math:`k` experts of highest probability

.. math:: p = \operatorname{softmax}(z), \qquad
   w_{t,c} = p_{t, e_{t,c}} \;\text{or}\; \frac{p_{t, e_{t,c}}}{\sum_{c'} p_{t, e_{t,c'}}} \;\text{(renormalised)}

Models differ on the renormalisation (:data:`RENORMALIZES`). An expert
accepts at most :math:`C` assignments (its *capacity*, usually
:math:`\lceil k T / E \cdot f \rceil`, see
:func:`~infralens.distributed.expert_capacity`); the rest are *dropped*:
their token skips that expert and, if every choice is dropped, reaches the
next layer through the residual connection only. Nothing fails; the output is
just different. Assignments claim places in priority order: every token's
first choice in token order, then every second choice (GShard's order; with
:math:`k = 1` it is Switch Transformer's token order).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from infralens.core import positive_int

RENORMALIZES: Mapping[str, bool] = MappingProxyType(
    {
        "mixtral": True,
        "qwen2_moe": False,
        "qwen3_moe": False,
        "olmoe": False,
        "switch_transformers": False,
    }
)
"""Whether the router of each transformers model renormalises its top-k weights to sum to 1.

Read from transformers 5.23.0 and checked by running each router on tiny
configs (``tests/upstream``). Mixtral always divides by the sum; Qwen2-MoE,
Qwen3-MoE and OLMoE do it only when the config sets ``norm_topk_prob``, whose
default is ``False``; Switch Transformers routes to one expert and scales its
output by that expert's probability.
"""


@dataclass(frozen=True)
class Routing:
    """Where each token goes, with what weight, and which assignments the capacity dropped."""

    experts: torch.Tensor
    """``(T, k)`` int64: the chosen experts, best first."""
    weights: torch.Tensor
    """``(T, k)``: each choice's weight in the combine."""
    probs: torch.Tensor
    """``(T, E)`` float32: the router's softmax over all experts."""
    kept: torch.Tensor
    """``(T, k)`` bool: the assignment fits its expert's capacity."""
    capacity: int | None
    """Assignments each expert accepts (``None``: unlimited)."""

    @property
    def num_experts(self) -> int:
        """:math:`E`."""
        return self.probs.shape[-1]

    @property
    def load(self) -> torch.Tensor:
        """``(E,)`` assignments each expert was asked to take, before the capacity."""
        return torch.bincount(self.experts.flatten(), minlength=self.num_experts)

    @property
    def kept_load(self) -> torch.Tensor:
        """``(E,)`` assignments each expert took."""
        return torch.bincount(self.experts[self.kept], minlength=self.num_experts)

    @property
    def dropped(self) -> int:
        """Assignments refused by a full expert."""
        return int((~self.kept).sum())

    @property
    def unrouted_tokens(self) -> int:
        """Tokens whose every choice was dropped: they pass through the layer unchanged (residual only)."""
        return int((~self.kept).all(dim=-1).sum())


def top_k_gating(
    logits: torch.Tensor, top_k: int, *, renormalize: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Softmax over experts in float32, the ``top_k`` best, optionally renormalised: ``(experts, weights, probs)``.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> experts, w, p = top_k_gating(logits, 2, renormalize=False)
    >>> experts.tolist(), [round(v, 4) for v in w[0].tolist()]
    ([[0, 1]], [0.6439, 0.2369])
    >>> [round(v, 4) for v in top_k_gating(logits, 2, renormalize=True)[1][0].tolist()]
    [0.7311, 0.2689]
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2 or not logits.is_floating_point():
        raise ValueError("logits must be a float tensor of shape (T, E), e.g. torch.randn(4096, 8)")
    E = logits.shape[1]
    k = positive_int("top_k", top_k, example=2)
    if k > E:
        raise ValueError(f"top_k must be <= the number of experts E={E}, e.g. top_k=2; got {k}")
    probs = torch.softmax(logits.float(), dim=-1)  # (T, E)
    weights, experts = torch.topk(probs, k, dim=-1)  # (T, k) each
    if renormalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)  # the k weights sum to 1
    return experts, weights, probs


def capacity_mask(experts: torch.Tensor, num_experts: int, capacity: int | None) -> torch.Tensor:
    """``(T, k)`` bool: which assignments fit, claiming places first choices first, in token order.

    >>> experts = torch.tensor([[0, 1], [0, 1], [0, 2]])    # (T, k)
    >>> capacity_mask(experts, 3, 2).tolist()               # expert 0 is full after two first choices
    [[True, True], [True, True], [False, True]]
    """
    E = positive_int("num_experts", num_experts, example=8)
    if capacity is None:
        return torch.ones_like(experts, dtype=torch.bool)
    C = positive_int("capacity", capacity, example=1280)
    order = experts.t().reshape(-1)  # (k*T,) choice-major: all first choices, then all second ...
    onehot = torch.nn.functional.one_hot(order, E)  # (k*T, E)
    position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1)  # 1-based place in its expert's queue
    return (position <= C).reshape(experts.shape[1], -1).t()  # (T, k)


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor) -> torch.Tensor:
    r"""Switch Transformer's auxiliary loss :math:`E \sum_i f_i P_i`, in transformers' top-k convention.

    :math:`f_i` is the number of assignments to expert :math:`i` over all
    :math:`k` choices divided by :math:`T`, :math:`P_i` the mean router
    probability of expert :math:`i`. Perfectly even routing gives :math:`k`
    (1 for Switch's top-1); everything on one expert gives up to :math:`kE`.

    >>> probs = torch.full((8, 4), 0.25)                       # a uniform router
    >>> experts = torch.arange(8).remainder(4).view(8, 1)      # top-1, evenly spread
    >>> load_balancing_loss(probs, experts).item()
    1.0
    """
    T, E = probs.shape
    f = torch.bincount(experts.flatten(), minlength=E).float() / T  # (E,)
    P = probs.float().mean(dim=0)  # (E,)
    return E * (f * P).sum()


def route_tokens(logits: torch.Tensor, *, top_k: int, capacity: int | None, renormalize: bool) -> Routing:
    """Gate, then apply the capacity: the whole router of one MoE layer for one group of tokens.

    >>> logits = torch.tensor([[3.0, 1.0, 0.0]]).repeat(6, 1)   # (T, E): every token prefers expert 0
    >>> routing = route_tokens(logits, top_k=1, capacity=2, renormalize=False)
    >>> routing.load.tolist(), routing.kept_load.tolist(), routing.dropped, routing.unrouted_tokens
    ([6, 0, 0], [2, 0, 0], 4, 4)
    """
    experts, weights, probs = top_k_gating(logits, top_k, renormalize=renormalize)
    kept = capacity_mask(experts, logits.shape[1], capacity)
    return Routing(experts, weights, probs, kept, capacity)
