"""Heads: view + transpose is a per-head slice of the channels; repeat_kv is repeat_interleave on the head axis."""

import pytest
import torch

from infralens.transformer import merge_heads, repeat_kv, split_heads


def test_split_heads_is_a_slice_of_channels_per_head():
    x = torch.randn(2, 5, 24)  # (B, S, H * Dh), H = 3, Dh = 8
    heads = split_heads(x, 3)
    assert heads.shape == (2, 3, 5, 8)
    for h in range(3):
        assert torch.equal(heads[:, h], x[..., 8 * h : 8 * (h + 1)])
    assert torch.equal(merge_heads(heads), x)


def test_a_reshape_without_transpose_mixes_positions_into_heads():
    x = torch.randn(1, 4, 8)
    wrong = x.reshape(1, 2, 4, 4)  # the right shape (B, H, S, Dh), the wrong contents
    assert wrong.shape == split_heads(x, 2).shape
    assert not torch.equal(wrong, split_heads(x, 2))
    assert torch.equal(wrong[0, 0, 1], x[0, 0, 4:])  # "position 1 of head 0" is channels 4..7 of position 0


def test_repeat_kv_equals_repeat_interleave():
    kv = torch.randn(2, 3, 5, 4)
    for n in (1, 2, 4):
        assert torch.equal(repeat_kv(kv, n), torch.repeat_interleave(kv, n, dim=1))


def test_errors():
    with pytest.raises(ValueError, match=r"x must have 3 axes \(B, S, H \* Dh\).*got \(2, 3\)"):
        split_heads(torch.zeros(2, 3), 1)
    with pytest.raises(ValueError, match=r"heads must divide the last axis \(12\), e.g. heads=4; got 5"):
        split_heads(torch.zeros(1, 2, 12), 5)
    with pytest.raises(ValueError, match=r"x must have 4 axes \(B, H, S, Dh\).*got \(1, 2, 12\)"):
        merge_heads(torch.zeros(1, 2, 12))
    with pytest.raises(ValueError, match=r"n_rep must be >= 1, e.g. n_rep=4; got 0"):
        repeat_kv(torch.zeros(1, 2, 3, 4), 0)
    with pytest.raises(ValueError, match=r"x must have 4 axes \(B, H_kv, S, Dh\)"):
        repeat_kv(torch.zeros(2, 3, 4), 2)
