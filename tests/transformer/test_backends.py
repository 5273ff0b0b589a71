"""sdpa_dispatch on this machine's torch (CPU): which kernel runs, which backends accept a call, and why not."""

import pytest
import torch

from infralens.transformer import BACKENDS, sdpa_dispatch

CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


def qkv(dtype=torch.float32, heads=4, kv_heads=4, dh=64, s=32):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, heads, s, dh, generator=g).to(dtype)
    k = torch.randn(1, kv_heads, s, dh, generator=g).to(dtype)
    return q, k, torch.randn_like(k)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("dh", [64, 100, 256])
def test_cpu_flash_runs_for_every_float_dtype_and_head_size(dtype, dh):
    d = sdpa_dispatch(*qkv(dtype, dh=dh), is_causal=True)
    assert d.backend == "FLASH_ATTENTION" and d.ops == (CPU_FLASH,)
    assert d.accepted == ("FLASH_ATTENTION", "MATH")


def test_masks_and_gqa_still_take_the_cpu_flash_kernel():
    q, k, v = qkv()
    bool_mask = torch.ones(32, 32, dtype=torch.bool).tril()
    assert sdpa_dispatch(q, k, v, attn_mask=bool_mask).backend == "FLASH_ATTENTION"
    assert sdpa_dispatch(q, k, v, attn_mask=torch.zeros(32, 32)).backend == "FLASH_ATTENTION"
    q, k, v = qkv(kv_heads=2)
    assert sdpa_dispatch(q, k, v, enable_gqa=True).backend == "FLASH_ATTENTION"


def test_dropout_falls_back_to_the_math_path_and_says_why():
    d = sdpa_dispatch(*qkv(), dropout_p=0.1)
    assert d.backend == "MATH" and CPU_FLASH not in d.ops and "bmm" in d.ops
    assert d.accepted == ("MATH",)
    assert "dropout" in d.refusals["FLASH_ATTENTION"]


def test_a_strided_last_axis_falls_back():
    q, k, v = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in qkv())  # same values, last stride != 1
    assert q.stride(-1) != 1
    assert sdpa_dispatch(q, k, v).backend == "MATH"


def test_cuda_only_backends_refuse_on_cpu():
    d = sdpa_dispatch(*qkv())
    assert set(d.refusals) == {"EFFICIENT_ATTENTION", "CUDNN_ATTENTION"}
    assert set(d.accepted) | set(d.refusals) == set(BACKENDS)


def test_every_backend_that_accepts_gives_the_same_output():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = qkv()
    outs = []
    for name in sdpa_dispatch(q, k, v, is_causal=True).accepted:
        with sdpa_kernel([getattr(SDPBackend, name)]):
            outs.append(torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert len(outs) == 2 and torch.allclose(outs[0], outs[1], atol=1e-5)
