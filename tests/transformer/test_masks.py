"""Masks: the additive causal mask is SDPA's is_causal; padding joins it; a fully hidden row stays finite."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from infralens.transformer import additive_mask, causal_mask, padded_causal_mask


def test_causal_mask_equals_is_causal():
    q, k, v = torch.randn(3, 2, 4, 9, 8, dtype=torch.float64).unbind(0)
    mask = causal_mask(9, dtype=torch.float64)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-12)


def test_decode_rows_are_the_last_rows_of_the_full_mask():
    full = causal_mask(7)
    for q_len in range(1, 8):
        assert torch.equal(causal_mask(q_len, 7), full[7 - q_len :])
    assert causal_mask(1, 7).eq(0).all()  # one new token sees every cached key


def test_values_and_dtypes():
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        m = causal_mask(3, dtype=dtype)
        assert m.dtype == dtype
        assert m[0, 1].item() == torch.finfo(dtype).min and m[1, 0].item() == 0


def test_padded_causal_mask_by_loops():
    attention_mask = torch.tensor([[1, 1, 1, 1, 0], [0, 0, 1, 1, 1]])  # right- and left-padded
    for q_len in (5, 2, 1):
        m = padded_causal_mask(attention_mask, q_len=q_len)
        assert m.shape == (2, 1, q_len, 5)
        for b in range(2):
            for i in range(q_len):
                pos = 5 - q_len + i
                for j in range(5):
                    visible = j <= pos and attention_mask[b, j] == 1
                    assert (m[b, 0, i, j] == 0).item() == visible


def test_a_fully_hidden_row_is_finite_with_finfo_min_and_nan_with_minus_inf():
    scores = torch.randn(3)
    hidden = torch.tensor([False, False, False])
    finite = (scores + additive_mask(hidden)).softmax(-1)
    assert torch.allclose(finite, torch.full((3,), 1 / 3))  # uniform: every score sank to the same value
    assert torch.isnan((scores + torch.full((3,), float("-inf"))).softmax(-1)).all()


def test_adding_two_additive_masks_overflows_to_minus_inf():
    m = additive_mask(torch.tensor([False]))
    assert torch.isinf(m + m).all()


def test_errors():
    with pytest.raises(ValueError, match=r"k_len must be >= q_len=4.*e.g. k_len=4"):
        causal_mask(4, 3)
    with pytest.raises(ValueError, match=r"q_len must be >= 1, e.g. q_len=16; got 0"):
        causal_mask(0)
    with pytest.raises(ValueError, match=r"dtype must be a floating-point torch dtype.*got torch.int64"):
        causal_mask(2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"visible must be a boolean tensor.*got torch.float32"):
        additive_mask(torch.ones(2))
    with pytest.raises(ValueError, match=r"attention_mask must have 2 axes \(B, S_k\).*got \(3,\)"):
        padded_causal_mask(torch.ones(3))
    with pytest.raises(ValueError, match=r"attention_mask must hold 1 \(real token\) or 0 \(padding\)"):
        padded_causal_mask(torch.tensor([[2, 1]]))
    with pytest.raises(ValueError, match=r"q_len must be <= the keys in attention_mask \(2\), e.g. q_len=1; got 3"):
        padded_causal_mask(torch.ones(1, 2), q_len=3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_padded_causal_mask_is_in_the_scores_dtype(dtype):
    mask = padded_causal_mask(torch.tensor([[0, 1, 1]]), dtype=dtype)
    assert mask.dtype == dtype
    assert mask[0, 0, 2, 0] == torch.finfo(dtype).min and mask[0, 0, 2, 2] == 0  # padding hidden, last key seen
