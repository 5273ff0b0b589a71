"""Naive and query-chunked attention: same output, a chunk of the scores alive at a time."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from infralens.attention import OnlineSoftmax, chunked_attention, flash_attention, naive_attention, score_bytes
from infralens.memory import peak_tensor_bytes


@pytest.fixture
def qkv():
    g = torch.Generator().manual_seed(0)
    return torch.randn(3, 2, 3, 100, 16, generator=g).unbind(0)  # (B, h, S, d) each


def test_naive_matches_sdpa(qkv):
    q, k, v = qkv
    assert torch.allclose(naive_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6)


@pytest.mark.parametrize("chunk_size", [1, 7, 32, 100, 1000])
def test_chunked_matches_naive(qkv, chunk_size):
    q, k, v = qkv
    assert torch.allclose(chunked_attention(q, k, v, chunk_size=chunk_size), naive_attention(q, k, v), atol=1e-6)


def test_rectangular_cross_attention():
    q, k, v = torch.randn(1, 2, 50, 8), torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 8)  # text keys
    out = chunked_attention(q, k, v, chunk_size=16)
    assert out.shape == q.shape
    assert torch.allclose(out, F.scaled_dot_product_attention(q, k, v), atol=1e-6)


def test_score_bytes_formula():
    assert score_bytes(batch=2, heads=3, queries=5, keys=7, dtype="fp32") == 2 * 3 * 5 * 7 * 4
    assert score_bytes(batch=1, heads=40, queries=75600, keys=75600) == 40 * 75600**2 * 2


def test_measured_peaks_follow_the_score_formula():
    q, k, v = torch.randn(3, 1, 2, 512, 16).unbind(0)
    full = score_bytes(batch=1, heads=2, queries=512, keys=512, dtype="fp32")
    block = score_bytes(batch=1, heads=2, queries=64, keys=512, dtype="fp32")
    assert peak_tensor_bytes(lambda: naive_attention(q, k, v)) == 2 * full + q.nbytes
    # the output buffer, one score block (exponentiated in place) and a few chunk-sized running buffers
    chunked = peak_tensor_bytes(lambda: chunked_attention(q, k, v, chunk_size=64))
    assert q.nbytes + block <= chunked < q.nbytes + block + q.nbytes


def test_errors():
    q = torch.zeros(1, 2, 8, 4)
    with pytest.raises(
        ValueError, match=r"query must have 4 axes \(B, h, S, d\), e.g. \(1, 8, 1024, 64\); got \(2, 8, 4\)"
    ):
        naive_attention(q[0], q, q)
    with pytest.raises(ValueError, match=r"value must have 4 axes .* got list"):
        naive_attention(q, q, [1])
    with pytest.raises(ValueError, match=r"must agree on B, h, S_k and d"):
        naive_attention(q, q, torch.zeros(1, 2, 9, 4))
    with pytest.raises(ValueError, match=r"must agree on B, h, S_k and d"):
        naive_attention(torch.zeros(1, 2, 8, 5), q, q)
    with pytest.raises(ValueError, match=r"chunk_size must be >= 1, e.g. chunk_size=1024; got 0"):
        chunked_attention(q, q, q, chunk_size=0)
    with pytest.raises(ValueError, match=r"chunk_size must be a whole number >= 1, e.g. chunk_size=1024; got 2.5"):
        chunked_attention(q, q, q, chunk_size=2.5)
    with pytest.raises(ValueError, match=r"heads must be >= 1, e.g. heads=40; got 0"):
        score_bytes(batch=1, heads=0, queries=1, keys=1)
    with pytest.raises(ValueError, match=r"dtype must be one of fp32, bf16.*got 'float64'"):
        score_bytes(batch=1, heads=1, queries=1, keys=1, dtype="float64")
    # one vocabulary: torch's name and the short name are the same format
    assert score_bytes(batch=1, heads=1, queries=1, keys=1, dtype="float32") == 4


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize(("sq", "sk", "bq", "bk"), [(37, 37, 8, 5), (1, 20, 4, 6), (5, 40, 3, 7), (64, 64, 64, 64)])
def test_flash_attention_equals_sdpa(causal, sq, sk, bq, bk):
    """Independent referent: torch's own SDPA (math path on CPU), with the bottom-right causal alignment."""
    q = torch.randn(2, 3, sq, 8, dtype=torch.float64)
    k, v = torch.randn(2, 2, 3, sk, 8, dtype=torch.float64).unbind(0)
    mask = torch.ones(sq, sk, dtype=torch.bool).tril(diagonal=sk - sq) if causal else None
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(flash_attention(q, k, v, block_q=bq, block_k=bk, causal=causal), expected, atol=1e-12)
    assert torch.allclose(naive_attention(q, k, v, causal=causal), expected, atol=1e-12)


def test_online_softmax_in_any_block_order_and_its_logsumexp():
    q = torch.randn(1, 2, 6, 4, dtype=torch.float64)
    k, v = torch.randn(2, 1, 2, 12, 4, dtype=torch.float64).unbind(0)
    state = OnlineSoftmax(q)
    for block in (slice(8, 12), slice(0, 3), slice(3, 8)):  # order does not matter
        state.update(k[:, :, block], v[:, :, block])
    assert torch.allclose(state.output, naive_attention(q, k, v), atol=1e-12)
    scores = q @ k.transpose(-2, -1) / 2
    assert torch.allclose(state.logsumexp, scores.logsumexp(-1), atol=1e-12)


def test_a_row_that_sees_no_key_is_nan_as_in_softmax():
    q, k, v = torch.randn(3, 1, 1, 2, 4).unbind(0)
    state = OnlineSoftmax(q)
    state.update(k, v, visible=torch.zeros(2, 2, dtype=torch.bool))
    assert torch.isnan(state.output).all()
    assert torch.isnan(torch.full((2,), float("-inf")).softmax(0)).all()


def test_flash_attention_peak_grows_with_the_tile_not_the_sequence():
    q, k, v = torch.randn(3, 1, 2, 512, 16).unbind(0)
    tile = score_bytes(batch=1, heads=2, queries=64, keys=64, dtype="fp32")
    full = score_bytes(batch=1, heads=2, queries=512, keys=512, dtype="fp32")
    peak = peak_tensor_bytes(lambda: flash_attention(q, k, v, block_q=64, block_k=64))
    assert q.nbytes + tile <= peak < q.nbytes + 2 * q.nbytes < full


@pytest.mark.parametrize("kind", ["bool", "additive"])
def test_naive_attention_mask_equals_sdpa_attn_mask(kind):
    """Independent referent: SDPA's attn_mask, boolean (True = visible) or added to the scores."""
    g = torch.Generator().manual_seed(3)
    q, k, v = torch.randn(3, 2, 3, 6, 8, generator=g, dtype=torch.float64).unbind(0)
    keep = torch.rand(2, 1, 6, 6, generator=g) < 0.7  # (B, 1, S_q, S_k), per sample
    keep[..., 0] = True  # every query row sees at least one key
    mask = keep if kind == "bool" else torch.zeros(keep.shape, dtype=torch.float64).masked_fill(~keep, -1e9)
    expected = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(naive_attention(q, k, v, mask=mask), expected, atol=1e-12)
    both = naive_attention(q, k, v, mask=mask, causal=True)  # the two combine
    causal_keep = keep & torch.ones(6, 6, dtype=torch.bool).tril()
    assert torch.allclose(both, F.scaled_dot_product_attention(q, k, v, attn_mask=causal_keep), atol=1e-12)


def test_naive_attention_mask_errors():
    q = torch.zeros(1, 2, 8, 4)
    with pytest.raises(ValueError, match=r"mask must be a boolean or floating-point tensor, e.g. .*\(8, 8\); got int"):
        naive_attention(q, q, q, mask=1)
    with pytest.raises(ValueError, match=r"mask must be a boolean or floating-point tensor, .*; got torch.int64"):
        naive_attention(q, q, q, mask=torch.ones(8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match=r"mask must broadcast to the scores .* = \(1, 2, 8, 8\), .*; got \(8, 7\)"):
        naive_attention(q, q, q, mask=torch.ones(8, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must broadcast .*; got \(3, 1, 8, 8\)"):
        naive_attention(q, q, q, mask=torch.ones(3, 1, 8, 8, dtype=torch.bool))


def test_causal_attention_on_the_meta_device_counts_without_computing():
    q = torch.empty(1, 2, 16, 8, device="meta")
    assert naive_attention(q, q, q, causal=True).shape == (1, 2, 16, 8)
