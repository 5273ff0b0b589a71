"""decode_cost against torch's FLOP counter on a real decode step, and the bytes it reads measured on tensors."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from infralens.transformer import DecoderConfig, KVCache, TinyLlama, decode_cost


@pytest.mark.parametrize(("batch", "prompt"), [(1, 16), (4, 40)])
def test_flops_and_bytes_of_a_real_decode_step(batch, prompt):
    config = DecoderConfig(num_hidden_layers=3)
    torch.manual_seed(0)
    model = TinyLlama(config).eval()
    cache = KVCache()
    with torch.no_grad():
        model(torch.randint(0, 96, (batch, prompt)), cache=cache)  # prefill
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            model(torch.randint(0, 96, (batch, 1)), cache=cache)  # one decode step
    matrices = sum(p.numel() for n, p in model.named_parameters() if n.endswith("proj.weight") or n == "lm_head.weight")
    c = decode_cost(
        params=matrices, layers=3, heads=4, kv_heads=2, head_dim=config.dh, seq=prompt + 1, batch=batch,
        weight_dtype="fp32", kv_dtype="fp32",
    )  # fmt: skip
    assert counter.get_total_flops() == c.flops
    assert c.kv_bytes == cache.nbytes  # the step reads the cache it just appended to
    assert c.weight_bytes == sum(p.nbytes for n, p in model.named_parameters() if "embed" not in n and "norm" not in n)


def test_decode_is_memory_bound_and_batching_helps():
    one = decode_cost(params=6.5e9, layers=32, heads=32, kv_heads=32, head_dim=128, seq=4096)
    assert one.intensity == 1.0  # 16-bit MHA, B = 1: each byte read (a weight or a cached value) feeds one FLOP
    gqa = decode_cost(params=6.5e9, layers=32, heads=32, kv_heads=8, head_dim=128, seq=4096)
    assert gqa.flops == one.flops and gqa.kv_bytes == one.kv_bytes / 4 and gqa.intensity > 1.0
    big = decode_cost(params=6.5e9, layers=32, heads=32, kv_heads=32, head_dim=128, seq=4096, batch=64)
    assert big.weight_bytes == one.weight_bytes and big.kv_bytes == 64 * one.kv_bytes
    assert big.intensity > 1.0 and big.intensity < 64 * one.intensity
    int4 = decode_cost(params=6.5e9, layers=32, heads=32, kv_heads=32, head_dim=128, seq=4096, weight_dtype="int4")
    assert int4.flops == one.flops and int4.weight_bytes == 6.5e9 * (0.5 + 2 / 128)  # codes + a scale per 128


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"params": 0}, ["params", "> 0"]),
        ({"params": float("inf")}, ["params", "finite"]),
        ({"kv_heads": 3}, ["heads=32", "kv_heads=3", "2 or 4"]),
        ({"seq": 0}, ["seq", ">= 1"]),
        ({"weight_dtype": "fp64"}, ["dtype must be one of"]),
    ],
)
def test_errors(change, words):
    kwargs = dict(params=6.5e9, layers=32, heads=32, kv_heads=8, head_dim=128, seq=4096) | change
    with pytest.raises(ValueError) as err:
        decode_cost(**kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize("params", [1, 0.5])
def test_any_positive_parameter_count_is_accepted(params):
    # the rule is P > 0, not P > 1: a one-weight model decodes with 2P FLOPs of matmul per token
    c = decode_cost(params=params, layers=1, heads=1, kv_heads=1, head_dim=1, seq=1)
    assert c.flops == 2 * params + 4 * 1 * 1 * 1 * 1
