r"""Gradient accumulation: several micro-batches, one optimizer step, and the one normalisation that is exact.

The loss of a step is a mean over its counted tokens. Split the step into
micro-batches :math:`m` with :math:`n_m` counted tokens and per-token losses
:math:`\ell_{m,i}`; the full-batch loss and its gradient are

.. math:: \mathcal L = \frac{1}{\sum_m n_m} \sum_m \sum_i \ell_{m,i}
   \;\ne\; \frac{1}{M} \sum_m \frac{1}{n_m} \sum_i \ell_{m,i}

The right-hand side, each micro-batch's mean averaged over the :math:`M`
micro-batches, weighs a token of a short micro-batch more than one of a long
one; the two agree only when every :math:`n_m` is equal. Summing per-token
losses and dividing by the step's total count (``normalize="tokens"``, what
transformers' ``num_items_in_batch`` does) gives the full-batch gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .loss import IGNORE_INDEX, causal_lm_loss, count_label_tokens

NORMALIZATIONS = ("tokens", "micro_batch")


def accumulate_gradients(
    model: nn.Module,
    micro_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    *,
    normalize: str = "tokens",
    ignore_index: int = IGNORE_INDEX,
) -> float:
    """Run forward and backward on every micro-batch, adding into ``.grad``; return the step's loss.

    :param model: maps ids ``(B, S)`` to logits ``(B, S, V)``; its ``.grad`` fields are added to (zero them first).
    :param micro_batches: ``(input_ids, labels)`` pairs, ``(B_m, S_m)`` each; lengths may differ.
    :param normalize: ``"tokens"``: divide every micro-batch's summed loss by the tokens of the whole step
        (exact); ``"micro_batch"``: average each micro-batch's own mean over the micro-batches (biased).
    :param ignore_index: the label of positions that do not count.
    :returns: the loss the gradients belong to.

    >>> model = nn.Embedding(10, 10)                # a "model" whose logits are one row per token
    >>> short, long = torch.tensor([[1, 2, 3]]), torch.tensor([[4, 5, 6, 7, 8]])
    >>> padded = torch.tensor([[1, 2, 3, 0, 0], [4, 5, 6, 7, 8]])   # the same two sequences, one batch
    >>> full = causal_lm_loss(model(padded), padded.masked_fill(padded == 0, -100)).item()
    >>> step = accumulate_gradients(model, [(short, short), (long, long)])
    >>> abs(step - full) < 1e-6
    True
    """
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"normalize must be one of {', '.join(NORMALIZATIONS)}, e.g. normalize='tokens'; got {normalize!r}"
        )
    if not micro_batches:
        raise ValueError("micro_batches must hold at least one (input_ids, labels) pair")
    total_tokens = sum(count_label_tokens(labels, ignore_index=ignore_index) for _, labels in micro_batches)
    loss_value = 0.0
    for ids, labels in micro_batches:
        logits = model(ids)  # (B_m, S_m, V)
        if normalize == "tokens":
            loss = causal_lm_loss(logits, labels, ignore_index=ignore_index, num_items_in_batch=total_tokens)
        else:  # each micro-batch's own mean, then the mean of those
            loss = causal_lm_loss(logits, labels, ignore_index=ignore_index) / len(micro_batches)
        loss.backward()
        loss_value += loss.item()
    return loss_value
