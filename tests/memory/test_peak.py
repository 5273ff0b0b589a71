"""peak_tensor_bytes: live tensor storage counted at the dispatcher, checked by hand and against torch.profiler."""

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from infralens.attention import naive_attention
from infralens.memory import peak_tensor_bytes


def allocator_peak(fn) -> int:
    """Peak of the CPU allocator's running total as torch.profiler records it (independent of the dispatcher)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    running = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        running += event.self_cpu_memory_usage
        peak = max(peak, running)
    return peak


def test_sequential_allocations_by_hand():
    def f():
        a = torch.zeros(1000)  # 4000 B
        b = torch.zeros(2000)  # 8000 B, a still alive: 12000
        del a
        c = torch.zeros(500)  # 2000 B, with b: 10000
        return b, c

    assert peak_tensor_bytes(f) == 12000


def test_views_and_in_place_results_are_not_new_memory():
    x = torch.zeros(100, 100)
    assert peak_tensor_bytes(lambda: (x.t(), x[0], x.view(-1), x.add_(1))) == 0
    assert peak_tensor_bytes(lambda: x + 1) == x.nbytes


def test_a_freed_temporary_counts_while_it_lives():
    x = torch.randn(256, 256)
    # (x * 2) is a temporary; + 1 makes a second tensor while it is alive, then it is freed
    assert peak_tensor_bytes(lambda: x * 2 + 1) == 2 * x.nbytes


@pytest.mark.parametrize("S", [256, 512])
def test_agrees_with_the_profiler_on_naive_attention(S):
    q, k, v = torch.randn(3, 1, 2, S, 32).unbind(0)
    ours = peak_tensor_bytes(lambda: naive_attention(q, k, v))
    scores = 2 * S * S * 4
    assert ours == 2 * scores + q.nbytes  # scores and their softmax alive together, plus the output
    assert ours == pytest.approx(allocator_peak(lambda: naive_attention(q, k, v)), rel=0.05)


def test_error():
    with pytest.raises(ValueError, match=r"fn must be a function of no arguments, e.g. fn=lambda: x @ x; got Tensor"):
        peak_tensor_bytes(torch.zeros(1))
    assert peak_tensor_bytes(lambda: None) == 0
