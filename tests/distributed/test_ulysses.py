"""Ulysses attention on real processes equals one-process attention; its bytes are the formula's; heads rule."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.nn.functional import scaled_dot_product_attention as sdpa

from infralens.distributed import (
    BytesSent,
    check_heads_divisible,
    gather_sequence,
    run_ranks,
    sequence_parallel_bytes,
    sequence_to_heads,
    split_sequence,
    ulysses_attention,
)

HERE = Path(__file__).resolve()
CASES = [  # (B, H, S, d, causal): even and uneven sequences, with and without a causal mask
    (2, 6, 96, 16, False),
    (1, 6, 97, 16, True),
    (1, 6, 13, 8, False),
]


def full_tensors(B, H, S, d):
    g = torch.Generator().manual_seed(S)  # the same on every rank
    return torch.randn(3, B, H, S, d, generator=g).unbind(0)  # q, k, v: (B, H, S, d)


def ulysses_cases(rank, world_size):
    out = {}
    for B, H, S, d, causal in CASES:
        q, k, v = full_tensors(B, H, S, d)
        local = [split_sequence(t, rank, world_size) for t in (q, k, v)]  # (B, H, s, d)
        with BytesSent() as wire:
            o = ulysses_attention(*local, seq_len=S, causal=causal)  # (B, H, s, d)
        whole = gather_sequence(o, seq_len=S)  # (B, H, S, d)
        reference = sdpa(q, k, v, is_causal=causal)
        out[(B, H, S, d, causal)] = {
            "shape": tuple(o.shape),
            "err": (whole - reference).abs().max().item(),
            "wire": wire.bytes,
        }
    heads_first = sequence_to_heads(split_sequence(torch.arange(24.0).view(1, 6, 4, 1), rank, world_size))
    out["regrouped"] = heads_first.flatten().tolist()
    try:
        ulysses_attention(*(torch.zeros(1, 7, 4, 8) for _ in range(3)))
    except ValueError as exc:
        out["error"] = str(exc)
    dist.barrier()
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def runs(request):
    return request.param, run_ranks(f"{HERE}:ulysses_cases", request.param, timeout=120)


def test_equal_to_one_process_attention(runs):
    n, results = runs
    for case in CASES:
        B, H, S, d, _ = case
        assert all(r[case]["shape"] == (B, H, -(-S // n), d) for r in results)
        assert all(r[case]["err"] < 1e-5 for r in results), [r[case]["err"] for r in results]


def test_bytes_on_the_wire_are_the_formulas(runs):
    n, results = runs
    for case in CASES:
        B, H, S, d, _ = case
        formula = sequence_parallel_bytes(
            "ulysses", batch=B, seq_len=S, heads=H, head_dim=d, world_size=n, dtype="fp32"
        )
        messages = 4 * (n - 1)  # four all-to-alls, one message to each peer
        for r in results:  # gloo frames each message with a small header (144 bytes in torch 2.13)
            assert 0 <= r[case]["wire"] - formula <= 256 * messages, (r[case]["wire"], formula)


def test_the_all_to_all_hands_each_rank_whole_heads_over_the_whole_sequence(runs):
    n, results = runs
    x = torch.arange(24.0).view(1, 6, 4, 1)  # (B, H, S, d): value = 4 * head + position
    padded = -(-4 // n) * n
    for rank, r in enumerate(results):
        heads = range(rank * 6 // n, (rank + 1) * 6 // n)
        expected = [x[0, h, p, 0].item() if p < 4 else 0.0 for h in heads for p in range(padded)]
        assert r["regrouped"] == expected


def test_heads_must_divide_by_the_world_size(runs):
    n, results = runs
    expected = "heads must be divisible by world_size={} (Ulysses gives each rank whole heads), e.g. heads={}; got 7"
    assert results[0]["error"] == expected.format(n, {2: "6 or 8", 3: "6 or 9"}[n])


def test_heads_rule_without_processes():
    check_heads_divisible(8, 4)
    with pytest.raises(ValueError, match=r"e.g. heads=4; got 3"):
        check_heads_divisible(3, 4)
