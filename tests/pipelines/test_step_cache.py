"""FirstBlockCache on the library's DiT: what it skips, what it adds back, and its errors.

diffusers' own cache is compared with it in tests/upstream/test_speed_knobs_upstream.py.
"""

import copy

import pytest
import torch
from torch import nn

from infralens.nets import DiTBlock, TinyDiT
from infralens.pipelines import FirstBlockCache


def blocks(n=4, seed=0):
    torch.manual_seed(seed)
    return nn.ModuleList([DiTBlock(16, 2) for _ in range(n)]).eval()


def run(bs, x, c, t):
    with torch.no_grad():
        for b in bs:
            x = b(x, c, t)
    return x


def inputs(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(1, 8, 16, generator=g), torch.randn(1, 4, 16, generator=g), torch.randn(1, 6, 16, generator=g)


DIRECTION = torch.randn(1, 8, 16, generator=torch.Generator().manual_seed(2))  # a constant shift: LayerNorm erases it


def test_threshold_zero_skips_only_an_exact_repeat():
    # diffusers computes when diff > threshold: at 0, a head residual equal to the reference is skipped
    bs = blocks(n=2)  # two blocks: the head and a tail of one
    cache = FirstBlockCache(bs, threshold=0.0)
    x, c, t = inputs()
    for name in ("cond", "uncond", "cond"):
        with cache.context(name):
            run(bs, x, c, t)
    assert [d.computed for d in cache.decisions("cond")] == [True, False]  # the repeat, change 0 = threshold
    assert [d.computed for d in cache.decisions("uncond")] == [True]  # its own state: a first call computes
    assert cache.skipped_blocks == 1


def test_threshold_zero_never_skips_a_changed_input_and_changes_nothing():
    plain, cached = blocks(), blocks()
    cache = FirstBlockCache(cached, threshold=0.0)
    x, c, t = inputs()
    for k in range(5):
        xk = x + 0.01 * k * DIRECTION
        with cache.context("cond"):
            assert torch.equal(run(cached, xk, c, t), run(plain, xk, c, t))
    assert cache.skipped_blocks == 0 and all(d.computed for d in cache.decisions())


def test_a_skipped_call_adds_the_tail_residual_of_the_reference_call():
    bs = blocks()
    ref_blocks = copy.deepcopy(bs)
    cache = FirstBlockCache(bs, threshold=0.5)
    x, c, t = inputs()
    with cache.context("cond"):
        first = run(bs, x, c, t)  # computed: the reference
    x2 = x + 0.01 * DIRECTION
    with cache.context("cond"):
        second = run(bs, x2, c, t)  # a small change: skipped
    assert [d.computed for d in cache.decisions()] == [True, False]
    assert cache.skipped_blocks == 3
    head_ref = run(ref_blocks[:1], x, c, t)
    tail = first - head_ref  # what blocks 1-3 added at the reference call
    assert torch.allclose(second, run(ref_blocks[:1], x2, c, t) + tail, atol=1e-6)
    assert not torch.allclose(second, run(ref_blocks, x2, c, t), atol=1e-6)  # an approximation


def test_change_is_the_relative_mean_absolute_change_of_the_head_residual():
    bs = blocks()
    head = copy.deepcopy(bs[0])
    cache = FirstBlockCache(bs, threshold=10.0)
    x, c, t = inputs()
    y = x * 1.5
    with cache.context("cond"):
        run(bs, x, c, t)
    with cache.context("cond"):
        run(bs, y, c, t)
    with torch.no_grad():
        r0, r1 = head(x, c, t) - x, head(y, c, t) - y
    expected = ((r1 - r0).abs().mean() / r0.abs().mean()).item()
    assert cache.decisions()[1].change == pytest.approx(expected, rel=1e-6)


def test_the_reference_is_kept_while_skipping_so_small_changes_add_up():
    bs = blocks()
    cache = FirstBlockCache(bs, threshold=0.02)
    x, c, t = inputs()
    decisions = []
    for k in range(12):
        with cache.context("cond"):
            run(bs, x + 0.004 * k * DIRECTION, c, t)
    decisions = [d.computed for d in cache.decisions()]
    changes = [d.change for d in cache.decisions()]
    assert decisions[0] and not all(decisions[1:]) and any(decisions[1:])  # skips, then a forced full step
    first_full = decisions.index(True, 1)
    assert changes[first_full] > 0.02 >= changes[first_full - 1]
    assert changes[1] < changes[first_full - 1]  # growing against a fixed reference


def test_contexts_keep_separate_states():
    bs = blocks()
    cache = FirstBlockCache(bs, threshold=0.5)
    x, c, t = inputs()
    for name in ("cond", "uncond", "cond", "uncond"):
        with cache.context(name):
            run(bs, x, c, t)
    assert [d.computed for d in cache.decisions("cond")] == [True, False]
    assert [d.computed for d in cache.decisions("uncond")] == [True, False]
    assert [d.context for d in cache.decisions()] == ["cond", "uncond", "cond", "uncond"]


def test_whole_model_and_remove():
    dit = TinyDiT(latent_channels=4, text_dim=8, dim=16, num_layers=3)
    z, text = torch.randn(1, 4, 8, 8), torch.randn(1, 3, 8)
    with torch.no_grad():
        plain = dit(z, torch.tensor([500.0]), text)
        exact = dit(z * 1.01, torch.tensor([500.0]), text)
        cache = FirstBlockCache(dit.blocks, threshold=1.0)
        with cache.context("cond"):
            dit(z, torch.tensor([500.0]), text)
        with cache.context("cond"):
            skipped = dit(z * 1.01, torch.tensor([500.0]), text)
        assert cache.skipped_blocks == 2
        assert not torch.allclose(skipped, exact, atol=1e-6)  # the skipped call is an approximation
        cache.remove()
        assert torch.equal(dit(z, torch.tensor([500.0]), text), plain)  # the blocks' own forward again


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: FirstBlockCache(blocks(1)), ["at least 2 blocks"]),
        (lambda: FirstBlockCache([DiTBlock(16, 2)] * 2), ["nn.ModuleList"]),
        (lambda: FirstBlockCache(blocks(), threshold=-0.1), ["threshold must be a number >= 0", "-0.1"]),
        (lambda: FirstBlockCache(blocks(), threshold=True), ["threshold must be a number >= 0"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_calls_outside_a_context_and_bad_names():
    bs = blocks()
    cache = FirstBlockCache(bs)
    with pytest.raises(ValueError, match="no cache context is set"):
        run(bs, *inputs())
    with pytest.raises(ValueError, match="non-empty string"), cache.context(""):
        pass
