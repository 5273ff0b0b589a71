"""Ring attention on real processes equals one-process attention, exactly as the online softmax promises."""

from pathlib import Path

import pytest
import torch
from torch.nn.functional import scaled_dot_product_attention as sdpa

from infralens.distributed import (
    BytesSent,
    gather_sequence,
    ring_attention,
    run_ranks,
    sequence_parallel_bytes,
    split_sequence,
)

HERE = Path(__file__).resolve()
CASES = [(2, 4, 96, 16, False), (1, 4, 97, 16, True), (1, 2, 5, 8, True), (1, 2, 5, 8, False)]


def ring_cases(rank, world_size):
    out = {}
    for B, H, S, d, causal in CASES:
        g = torch.Generator().manual_seed(S)
        q, k, v = torch.randn(3, B, H, S, d, generator=g, dtype=torch.float64).unbind(0)  # (B, H, S, d)
        local = [split_sequence(t, rank, world_size) for t in (q, k, v)]  # (B, H, s, d)
        trace = []
        with BytesSent() as wire:
            o = ring_attention(*local, seq_len=S, causal=causal, trace=trace)
        whole = gather_sequence(o, seq_len=S)
        reference = sdpa(q, k, v, is_causal=causal)
        out[(B, H, S, d, causal)] = {"err": (whole - reference).abs().max().item(), "wire": wire.bytes, "trace": trace}
    return out


@pytest.fixture(scope="module", params=[2, 3], ids=lambda n: f"{n}ranks")
def runs(request):
    return request.param, run_ranks(f"{HERE}:ring_cases", request.param, timeout=120)


def test_equal_to_one_process_attention_in_float64(runs):
    _, results = runs
    for case in CASES:
        assert all(r[case]["err"] < 1e-12 for r in results), [r[case]["err"] for r in results]  # exact, not approximate


def test_each_rank_sees_every_block_once_in_ring_order(runs):
    n, results = runs
    for rank, r in enumerate(results):
        trace = r[CASES[0]]["trace"]
        assert [owner for _, owner, _ in trace] == [(rank - t) % n for t in range(n)]
        assert all(computed for *_, computed in trace)


def test_causal_skips_future_blocks_so_rank_r_computes_r_plus_1(runs):
    n, results = runs
    computed = [sum(c for *_, c in r[CASES[1]]["trace"]) for r in results]
    assert computed == [rank + 1 for rank in range(n)]


def test_bytes_on_the_wire_are_the_formulas(runs):
    n, results = runs
    for case in CASES[:2]:
        B, H, S, d, _ = case
        fp32 = sequence_parallel_bytes("ring", batch=B, seq_len=S, heads=H, head_dim=d, world_size=n, dtype="fp32")
        formula = 2 * fp32  # the run is in float64
        for r in results:  # N - 1 messages, each with gloo's small header (144 bytes in torch 2.13)
            assert 0 <= r[case]["wire"] - formula <= 256 * (n - 1), (r[case]["wire"], formula)
