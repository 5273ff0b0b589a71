"""Embedding lookup: a gather equal to a one-hot product, its parameters, and what each costs in FLOPs."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from infralens.transformer import one_hot_embedding, padded_vocab_size, vocab_params


def test_one_hot_product_equals_the_lookup():
    g = torch.Generator().manual_seed(0)
    table = nn.Embedding(50, 8)
    ids = torch.randint(0, 50, (3, 7), generator=g)  # (B, S)
    expected = table(ids)  # (B, S, D)
    assert torch.equal(one_hot_embedding(ids, table.weight), expected)
    assert expected.shape == (3, 7, 8)


def test_the_lookup_costs_no_flops_and_the_product_2bsvd():
    ids, weight = torch.zeros(2, 5, dtype=torch.long), torch.randn(100, 16)
    with FlopCounterMode(display=False) as lookup:
        F.embedding(ids, weight)
    with FlopCounterMode(display=False) as product:
        one_hot_embedding(ids, weight)
    assert lookup.get_total_flops() == 0
    assert product.get_total_flops() == 2 * 2 * 5 * 100 * 16


@pytest.mark.parametrize("tied", [False, True])
def test_vocab_params_count_real_modules(tied):
    embed, head = nn.Embedding(100, 16), nn.Linear(16, 100, bias=False)
    if tied:
        head.weight = embed.weight  # one Parameter, counted once
    params = {id(p): p.numel() for m in (embed, head) for p in m.parameters()}
    assert vocab_params(100, 16, tied=tied) == sum(params.values())


def test_padded_vocab_size():
    assert padded_vocab_size(50257) == 50304
    assert padded_vocab_size(32000) == 32000
    assert padded_vocab_size(2000, 128) == 2048
    assert all(padded_vocab_size(v, 64) % 64 == 0 and 0 <= padded_vocab_size(v, 64) - v < 64 for v in range(1, 300))


def test_errors():
    w = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"weight must be a \(V, D\) table.*got \(10,\)"):
        one_hot_embedding(torch.tensor([1]), w[:, 0])
    with pytest.raises(ValueError, match=r"ids must be an integer tensor"):
        one_hot_embedding(torch.tensor([1.0]), w)
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 10\) for a table of 10 rows; got 0..10"):
        one_hot_embedding(torch.tensor([0, 10]), w)
    with pytest.raises(ValueError, match=r"vocab_size must be >= 1, e.g. vocab_size=32000; got 0"):
        vocab_params(0, 4, tied=True)
    with pytest.raises(ValueError, match=r"multiple must be >= 1, e.g. multiple=64; got 0"):
        padded_vocab_size(10, 0)
