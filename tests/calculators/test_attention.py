"""attention_cost against hand arithmetic, the memory module's score_bytes, and PyTorch's FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.attention import naive_attention, score_bytes
from infralens.calculators import attention_cost


def test_formula_by_hand():
    c = attention_cost(tokens=1000, heads=8, head_dim=64, batch=2, dtype="fp32")
    assert c.score_bytes == 2 * 8 * 1000 * 1000 * 4
    assert c.flops == 2 * (2 * 2 * 8 * 1000 * 1000 * 64)  # QK^T and PV, 2 FLOPs per multiply-add
    assert attention_cost(tokens=10, heads=1, head_dim=1).score_bytes == 10 * 10 * 2  # bf16 by default


def test_bytes_are_the_memory_module_s():
    c = attention_cost(tokens=32760, heads=40, head_dim=128)
    assert c.score_bytes == score_bytes(batch=1, heads=40, queries=32760, keys=32760, dtype="bf16")


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_on_real_tensors(dtype, torch_dtype):
    B, h, N, d = 2, 3, 40, 8
    q, k, v = torch.randn(3, B, h, N, d, dtype=torch_dtype).unbind(0)
    c = attention_cost(tokens=N, heads=h, head_dim=d, batch=B, dtype=dtype)
    scores = q @ k.transpose(-2, -1)  # (B, h, N, N)
    assert scores.numel() * scores.element_size() == c.score_bytes
    with FlopCounterMode(display=False) as counter:
        naive_attention(q, k, v)
    assert counter.get_total_flops() == c.flops


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(tokens=0, heads=8, head_dim=64), ["tokens", ">= 1", "tokens=32760"]),
        (dict(tokens=10, heads=True, head_dim=64), ["heads", "whole number"]),
        (dict(tokens=10, heads=8, head_dim=6.5), ["head_dim", "whole number"]),
        (dict(tokens=10, heads=8, head_dim=64, batch=-1), ["batch", ">= 1"]),
        (dict(tokens=10, heads=8, head_dim=64, dtype="fp64"), ["dtype", "bf16", "'fp64'"]),
    ],
)
def test_errors(kwargs, words):
    with pytest.raises(ValueError) as err:
        attention_cost(**kwargs)
    assert all(w in str(err.value) for w in words)


def test_naive_peak_is_two_score_matrices():
    """Measured: a naive attention holds the scores and their softmax at once, plus its output."""
    from infralens.memory import peak_tensor_bytes

    B, h, N, d = 1, 4, 256, 16
    q, k, v = torch.randn(3, B, h, N, d).unbind(0)
    c = attention_cost(tokens=N, heads=h, head_dim=d, batch=B, dtype="fp32")
    out = naive_attention(q, k, v)
    assert peak_tensor_bytes(lambda: naive_attention(q, k, v)) == c.naive_peak_bytes + out.nbytes
    assert c.naive_peak_bytes == 2 * c.score_bytes


@pytest.mark.parametrize("dtype", ["int4", "int8", "fp8"])
def test_scores_are_not_kept_in_storage_formats(dtype):
    with pytest.raises(ValueError, match="dtype must be a format attention scores are kept in") as err:
        attention_cost(tokens=10, heads=2, head_dim=8, dtype=dtype)
    assert "dtype='bf16'" in str(err.value) and repr(dtype) in str(err.value)
