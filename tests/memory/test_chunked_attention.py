"""Naive and query-chunked attention: same output, a chunk of the scores alive at a time."""

import pytest
import torch
import torch.nn.functional as F  # noqa: N812

from infralens.memory import chunked_attention, naive_attention, peak_tensor_bytes, score_bytes


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
    # the output buffer, two score blocks (scores and softmax) and one chunk of output
    assert peak_tensor_bytes(lambda: chunked_attention(q, k, v, chunk_size=64)) == q.nbytes + 2 * block + q.nbytes // 8


def test_errors():
    q = torch.zeros(1, 2, 8, 4)
    with pytest.raises(
        ValueError, match=r"query must have 4 axes \(B, h, S, d\), e.g. \(1, 8, 1024, 64\); got \(2, 8, 4\)"
    ):
        naive_attention(q[0], q, q)
    with pytest.raises(ValueError, match=r"value must have 4 axes .* got list"):
        naive_attention(q, q, [1])
    with pytest.raises(ValueError, match=r"must agree on B, h and d, and key must have the shape of value"):
        naive_attention(q, q, torch.zeros(1, 2, 9, 4))
    with pytest.raises(ValueError, match=r"must agree on B, h and d"):
        naive_attention(torch.zeros(1, 2, 8, 5), q, q)
    with pytest.raises(ValueError, match=r"chunk_size must be >= 1, e.g. chunk_size=1024; got 0"):
        chunked_attention(q, q, q, chunk_size=0)
    with pytest.raises(ValueError, match=r"chunk_size must be a whole number >= 1, e.g. chunk_size=1024; got 2.5"):
        chunked_attention(q, q, q, chunk_size=2.5)
    with pytest.raises(ValueError, match=r"heads must be >= 1, e.g. heads=40; got 0"):
        score_bytes(batch=1, heads=0, queries=1, keys=1)
    with pytest.raises(ValueError, match=r"dtype must be one of fp32, bf16"):
        score_bytes(batch=1, heads=1, queries=1, keys=1, dtype="float32")
