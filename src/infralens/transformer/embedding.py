r"""Token embeddings: an id selects a row of a :math:`V \times D` table.

.. math:: E[\text{ids}] = \operatorname{onehot}(\text{ids})\,E, \qquad
   \operatorname{onehot}(\text{ids}) \in \{0, 1\}^{B \times S \times V}

The two sides are equal, but the lookup reads :math:`B S D` numbers and does no
arithmetic, while the one-hot product does :math:`2 B S V D` FLOPs. The output
head maps a hidden state back to :math:`V` logits with a :math:`D \times V`
matrix; *tied* embeddings reuse the input table for it, so the model holds
:math:`V D` embedding parameters instead of :math:`2 V D`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812

from infralens.core import positive_int


def one_hot_embedding(ids: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    r"""The embedding lookup written as a matrix product, :math:`\operatorname{onehot}(\text{ids})\,E`.

    :param ids: integer token ids, shape ``(B, S)`` (any leading axes), each in ``[0, V)``.
    :param weight: :math:`E`, the table, shape ``(V, D)``.
    :returns: ``(B, S, D)``, equal to ``F.embedding(ids, weight)``.

    >>> E = torch.randn(10, 4)
    >>> ids = torch.tensor([[3, 0, 9]])
    >>> torch.equal(one_hot_embedding(ids, E), F.embedding(ids, E))
    True
    """
    if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
        got = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a (V, D) table, e.g. torch.randn(2048, 64); got {got}")
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError(f"ids must be an integer tensor, e.g. torch.tensor([[1, 5, 7]]); got {ids!r}")
    vocab = weight.shape[0]
    if ids.numel() and (ids.min() < 0 or ids.max() >= vocab):
        raise ValueError(f"ids must lie in [0, {vocab}) for a table of {vocab} rows; got {ids.min()}..{ids.max()}")
    one_hot = F.one_hot(ids, vocab).to(weight.dtype)  # (B, S, V)
    return one_hot @ weight  # (B, S, V) @ (V, D) -> (B, S, D)


def vocab_params(vocab_size: int, dim: int, *, tied: bool) -> int:
    r"""Parameters of the input embedding and the output head: :math:`V D` if tied, :math:`2 V D` if not.

    >>> vocab_params(32000, 4096, tied=False), vocab_params(32000, 4096, tied=True)
    (262144000, 131072000)
    """
    v = positive_int("vocab_size", vocab_size, example=32000)
    d = positive_int("dim", dim, example=4096)
    return v * d * (1 if tied else 2)


def padded_vocab_size(vocab_size: int, multiple: int = 64) -> int:
    r"""The vocabulary rounded up to a multiple, :math:`\lceil V / m \rceil\, m`: the rows a model allocates.

    Matrix kernels run fastest when the output head's width is a multiple of the
    hardware tile; rows beyond the tokenizer's last id are never looked up.

    >>> padded_vocab_size(50257)  # GPT-2's tokenizer; nanoGPT allocates 50304 rows
    50304
    """
    v = positive_int("vocab_size", vocab_size, example=50257)
    m = positive_int("multiple", multiple, example=64)
    return math.ceil(v / m) * m
