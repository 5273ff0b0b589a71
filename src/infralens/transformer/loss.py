r"""The causal language-modelling loss: labels shifted by one, ignored positions, a mean over counted tokens.

Position :math:`t` of the logits predicts token :math:`t + 1`, so the labels
are the input ids shifted left by one, and the last position has no target.
Positions whose label is ``ignore_index`` (padding, a prompt not to be
learned) count neither in the sum nor in the count:

.. math:: \mathcal L = \frac{1}{N} \sum_{b,t \,:\, y_{b,t+1} \ne \text{ignore}}
   -\log \operatorname{softmax}(z_{b,t})_{y_{b,t+1}},
   \qquad N = \#\{(b, t) : y_{b,t+1} \ne \text{ignore}\}

:func:`causal_lm_loss` takes unshifted labels and shifts them itself, as
transformers' ``labels=`` argument does (``tox -e upstream`` compares the two).
With gradient accumulation, :math:`N` must be the count over *all*
micro-batches of the step (``num_items_in_batch``), not each micro-batch's own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812 - the name every torch reader knows

IGNORE_INDEX = -100
"""The label that marks a position as not trained (PyTorch's and transformers' default)."""


def _check_labels(labels: torch.Tensor) -> None:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 2 or labels.is_floating_point():
        got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
        raise ValueError(f"labels must be integer ids of shape (B, S), e.g. labels = input_ids.clone(); got {got}")


def shift_labels(labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """The target of every position: ``labels[:, t + 1]``, and ``ignore_index`` at the last position.

    :param labels: ``(B, S)`` token ids (usually the input ids), ``ignore_index`` where not trained.
    :returns: ``(B, S)`` targets aligned with the logits.

    >>> shift_labels(torch.tensor([[5, 6, 7, 8]]))
    tensor([[   6,    7,    8, -100]])
    """
    _check_labels(labels)
    return F.pad(labels[:, 1:], (0, 1), value=ignore_index)  # (B, S)


def count_label_tokens(labels: torch.Tensor, *, ignore_index: int = IGNORE_INDEX) -> int:
    """:math:`N`: positions with a target after the shift (the ``num_items_in_batch`` of a micro-batch).

    >>> count_label_tokens(torch.tensor([[5, 6, 7, -100], [5, 6, -100, -100]]))
    3
    """
    return int((shift_labels(labels, ignore_index=ignore_index) != ignore_index).sum())


def causal_lm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    num_items_in_batch: int | None = None,
) -> torch.Tensor:
    r"""Next-token cross-entropy: shift ``labels`` by one, sum over counted positions, divide by :math:`N`.

    :param logits: ``(B, S, V)``.
    :param labels: ``(B, S)`` *unshifted* ids (``input_ids``, with ``ignore_index`` where not trained).
    :param ignore_index: the label of positions that do not count.
    :param num_items_in_batch: :math:`N` to divide by (an int or a 0-d integer tensor); default: this batch's
        own count. With gradient accumulation pass the count over every micro-batch of the optimizer step.
    :returns: the loss, a 0-d float32 tensor.

    A uniform prediction costs :math:`\ln V` per token:

    >>> V = 50
    >>> loss = causal_lm_loss(torch.zeros(2, 8, V), torch.randint(0, V, (2, 8)))
    >>> round(loss.item(), 4), round(torch.log(torch.tensor(V * 1.0)).item(), 4)
    (3.912, 3.912)
    """
    if not isinstance(logits, torch.Tensor) or logits.ndim != 3:
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise ValueError(f"logits must have shape (B, S, V), e.g. (2, 16, 32000); got {got}")
    targets = shift_labels(labels, ignore_index=ignore_index)  # (B, S)
    if targets.shape != logits.shape[:2]:
        raise ValueError(
            f"labels {tuple(labels.shape)} must match the logits' (B, S) = {tuple(logits.shape[:2])}; "
            "pass the unshifted input ids"
        )
    total = F.cross_entropy(
        logits.float().flatten(0, 1), targets.flatten(), ignore_index=ignore_index, reduction="sum"
    )  # sum over counted tokens, in float32
    n = int((targets != ignore_index).sum()) if num_items_in_batch is None else num_items_in_batch
    if isinstance(n, torch.Tensor) and n.ndim == 0 and not n.is_floating_point():
        n = int(n)  # transformers passes a 0-d tensor
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(
            f"num_items_in_batch must be a whole number >= 1 (tokens with a target in the whole step), "
            f"e.g. num_items_in_batch=count_label_tokens(labels); got {n!r}"
        )
    return total / n
