"""What attention slicing and fused attention do to score memory in diffusers 0.42.1 (issue 14 #1 and #7).

Run on tiny random models: ``set_attention_slice`` swaps the default SDPA processor for
``SlicedAttnProcessor``, which loops over slices of the batch-times-heads axis and builds a full
``(slice, S, S)`` score tensor in each; ``DiffusionPipeline.enable_attention_slicing`` reaches only
components that have ``set_attention_slice``, and the Wan, FLUX.1 and SD3 transformers do not. Then a
measurement: naive attention allocates one ``B * h * S * S`` score tensor, PyTorch's SDPA does not.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers.models.attention_processor import Attention  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from ._tiny import tiny_sd_unet  # noqa: E402
from .test_guidance_upstream import tiny_wan  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def processors(model) -> set[str]:
    return {type(p).__name__ for p in model.attn_processors.values()}


def score_shapes(model, *args, **kwargs) -> list[tuple[int, ...]]:
    """Every score tensor ``Attention.get_attention_scores`` builds during one forward pass."""
    shapes, original = [], Attention.get_attention_scores

    def spy(self, query, key, attention_mask=None):
        scores = original(self, query, key, attention_mask)
        shapes.append(tuple(scores.shape))
        return scores

    Attention.get_attention_scores = spy
    try:
        with torch.no_grad():
            model(*args, **kwargs)
    finally:
        Attention.get_attention_scores = original
    return shapes


def test_slicing_replaces_sdpa_and_slices_batch_times_heads_with_full_scores():
    """On a UNet, set_attention_slice(1) replaces AttnProcessor2_0 by SlicedAttnProcessor. With a CFG batch of 2
    and 4 heads (batch*heads = 8) each self-attention slice builds a (1, S, S) score tensor for the full
    S = 64 tokens of the 8x8 level: the query axis is never chunked. The default SDPA path builds none."""
    unet = tiny_sd_unet()
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([500, 500]), torch.randn(2, 5, 12)
    assert processors(unet) == {"AttnProcessor2_0"}
    assert score_shapes(unet, x, t, encoder_hidden_states=text) == []  # SDPA: no score tensor materialised
    unet.set_attention_slice(1)
    assert processors(unet) == {"SlicedAttnProcessor"}
    shapes = score_shapes(unet, x, t, encoder_hidden_states=text)
    heads = {m.heads for m in unet.modules() if isinstance(m, Attention)}
    assert heads == {4}
    self_attention = [s for s in shapes if s[1] == s[2]]
    assert (1, 64, 64) in self_attention and all(s[0] == 1 for s in shapes)
    # batch*heads = 8 slices in each of the three transformer layers at 8x8 (one down, two up)
    assert shapes.count((1, 64, 64)) == 8 * 3
    unet.set_attention_slice("auto")  # "auto": half the heads per slice
    assert (2, 64, 64) in score_shapes(unet, x, t, encoder_hidden_states=text)


def test_slicing_is_a_no_op_on_the_wan_flux_and_sd3_transformers():
    for name in ("WanTransformer3DModel", "FluxTransformer2DModel", "SD3Transformer2DModel", "AutoencoderKL"):
        assert not hasattr(getattr(diffusers, name), "set_attention_slice"), name
    assert hasattr(diffusers.UNet2DConditionModel, "set_attention_slice")
    pipe = tiny_wan()
    before = {n: type(p).__name__ for n, p in pipe.transformer.attn_processors.items()}
    pipe.enable_attention_slicing()  # no error, no effect
    after = {n: type(p).__name__ for n, p in pipe.transformer.attn_processors.items()}
    assert before == after and set(after.values()) == {"WanAttnProcessor"}


def largest_allocation(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.cpu_memory_usage for event in prof.key_averages())


def test_naive_attention_allocates_the_scores_and_sdpa_does_not():
    """S = 2048 tokens, 2 heads, float32: the naive path's largest allocation is one B*h*S*S*4-byte score tensor
    (33.5 MB); torch's scaled_dot_product_attention (diffusers' default AttnProcessor2_0) stays below 5% of it."""
    b, h, s, d = 1, 2, 2048, 64
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, s, d, generator=g) for _ in range(3))
    scores = b * h * s * s * 4
    naive = largest_allocation(lambda: torch.softmax(q @ k.transpose(-1, -2) / d**0.5, -1) @ v)
    sdpa = largest_allocation(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v))
    assert scores <= naive < 1.1 * scores
    assert sdpa < 0.05 * scores
