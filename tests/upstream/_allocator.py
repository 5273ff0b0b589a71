"""Peak bytes the CPU allocator handed out during a call, from torch.profiler's memory events.

``infralens.memory.peak_tensor_bytes`` counts the tensors operators return; it
cannot see scratch buffers a fused kernel allocates and frees inside one
operator. The profiler records every allocation and free of the CPU allocator
as a ``[memory]`` event with a signed size; summing them in time order and
taking the maximum gives the allocator's peak above the start, scratch included.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile


def allocator_peak_bytes(fn: Callable[[], object]) -> int:
    """Most bytes the CPU allocator had handed out at once during ``fn()``, beyond what was allocated before."""
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"), key=lambda e: e.start_ns()
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()  # negative for a free
        peak = max(peak, live)
    return peak
