"""sliced_attention: equal to naive attention, and holding two score matrices per row of a slice (measured)."""

import pytest
import torch

from infralens.attention import naive_attention, score_bytes, sliced_attention
from infralens.memory import peak_tensor_bytes


@pytest.mark.parametrize("slice_size", [1, 3, 8])
def test_equals_naive_attention(slice_size):
    q, k, v = torch.randn(3, 2, 4, 50, 8).unbind(0)
    assert torch.allclose(sliced_attention(q, k, v, slice_size=slice_size), naive_attention(q, k, v), atol=1e-6)


def test_value_width_and_cross_attention_lengths():
    q = torch.randn(1, 2, 10, 8)
    k, v = torch.randn(1, 2, 7, 8), torch.randn(1, 2, 7, 5)
    assert torch.allclose(sliced_attention(q, k, v, slice_size=1), naive_attention(q, k, v), atol=1e-6)


@pytest.mark.parametrize("slice_size", [1, 2, 4])
def test_peak_is_two_score_matrices_per_row_of_a_slice(slice_size):
    B, h, S, d = 2, 4, 256, 8
    q, k, v = torch.randn(3, B, h, S, d).unbind(0)
    out = naive_attention(q, k, v)
    matrix = score_bytes(batch=1, heads=1, queries=S, keys=S, dtype="fp32")
    peak = peak_tensor_bytes(lambda: sliced_attention(q, k, v, slice_size=slice_size))
    slice_out = slice_size * S * d * 4
    assert peak == out.nbytes + 2 * slice_size * matrix + slice_out


@pytest.mark.parametrize(
    ("slice_size", "words"), [(0, ["slice_size", ">= 1"]), (9, ["slice_size", "batch * heads = 8", "slice_size=4"])]
)
def test_errors(slice_size, words):
    q = torch.randn(2, 4, 8, 8)
    with pytest.raises(ValueError) as err:
        sliced_attention(q, q, q, slice_size=slice_size)
    assert all(w in str(err.value) for w in words)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_output_keeps_the_dtype_of_the_query(dtype):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 4, 6, 8, generator=g, dtype=dtype) for _ in range(3))
    out = sliced_attention(q, k, v, slice_size=2)
    assert out.dtype == dtype
    assert torch.equal(out, naive_attention(q, k, v))
