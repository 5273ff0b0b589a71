"""What attention holds in memory on diffusers' paths, measured with the CPU allocator (diffuser Lab 10, Calculators).

* PyTorch's SDPA (diffusers' default ``AttnProcessor2_0``, and the "native"
  backend of the DiTs) allocates less than one score matrix; its math backend
  and diffusers' classic ``AttnProcessor`` materialise the scores;
* ``set_attention_slice`` replaces SDPA by ``SlicedAttnProcessor``, which
  walks the batch-times-heads axis and builds a full S x S score tensor per
  slice, so it adds score memory against SDPA;
* ``enable_attention_slicing`` does nothing for Wan, FLUX and SD3, whose
  transformers have no ``set_attention_slice``;
* ``set_attention_backend`` reaches only models whose processors dispatch
  through ``dispatch_attention_fn``: Wan's and FLUX's, not the UNet's nor SD3's.
"""

from __future__ import annotations

import sys

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

import torch.nn.functional as F  # noqa: E402, N812
from diffusers.models.attention_processor import (  # noqa: E402
    Attention,
    AttnProcessor,
    AttnProcessor2_0,
    SlicedAttnProcessor,
)
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402

from infralens.attention import score_bytes  # noqa: E402

from . import _tiny_pipelines as tiny  # noqa: E402
from ._allocator import allocator_peak_bytes  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

B, HEADS, S, DH = 2, 8, 1024, 8
MATRIX = S * S * 4  # one (S, S) float32 score matrix: 4 MiB


def one_layer(processor) -> tuple[Attention, torch.Tensor]:
    """One diffusers self-attention layer (8 heads of 8) with ``processor``, and its input (B, S, 64)."""
    torch.manual_seed(0)
    attn = Attention(query_dim=HEADS * DH, heads=HEADS, dim_head=DH).eval()
    attn.set_processor(processor)
    return attn, torch.randn(B, S, HEADS * DH)


def test_sdpa_allocates_less_than_one_score_matrix_and_math_materialises_them():
    q, k, v = torch.randn(3, B, HEADS, S, DH).unbind(0)  # (B, h, S, d)
    fused = allocator_peak_bytes(lambda: F.scaled_dot_product_attention(q, k, v))

    def math_backend():
        with sdpa_kernel(SDPBackend.MATH):
            F.scaled_dot_product_attention(q, k, v)

    every_score = score_bytes(batch=B, heads=HEADS, queries=S, keys=S, dtype="fp32")
    assert 0 < fused < MATRIX  # scratch, not scores: less than one head's matrix, let alone all 16
    assert allocator_peak_bytes(math_backend) >= every_score  # the math path writes them all out


def test_default_unet_processor_is_sdpa_and_the_classic_one_stores_scores_and_probabilities():
    unet = tiny.tiny_unet()
    assert {type(p) for p in unet.attn_processors.values()} == {AttnProcessor2_0}
    attn, h = one_layer(AttnProcessor())
    every_score = score_bytes(batch=B, heads=HEADS, queries=S, keys=S, dtype="fp32")
    assert allocator_peak_bytes(lambda: attn(h)) >= 2 * every_score  # scores and softmax, all heads at once


def test_attention_slicing_replaces_sdpa_and_builds_full_scores_per_slice():
    unet = tiny.tiny_unet(heads=4)
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 10]), torch.randn(2, 5, 16)  # (B, C, h, w), (B,), (B, L, D)
    with torch.no_grad():
        before = unet(x, t, text).sample
    unet.set_attention_slice("auto")
    processors = list(unet.attn_processors.values())
    assert {type(p) for p in processors} == {SlicedAttnProcessor}  # SDPA is gone, not wrapped
    assert {p.slice_size for p in processors} == {4 // 2}  # "auto": half the heads per slice
    shapes = []
    original = Attention.get_attention_scores

    def spy(self, query, key, mask=None):
        probs = original(self, query, key, mask)
        shapes.append((self, tuple(probs.shape)))
        return probs

    Attention.get_attention_scores = spy
    try:
        with torch.no_grad():
            after = unet(x, t, text).sample
    finally:
        Attention.get_attention_scores = original
    first = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1  # 8x8 latent: 64 tokens
    # batch x heads = 8 rows, in 4 slices of 2; each slice's scores are (2, S, S): every query against every key
    assert [shape for module, shape in shapes if module is first] == [(2, 64, 64)] * 4
    assert torch.allclose(before, after, atol=1e-5)  # same output, another kernel


@pytest.mark.parametrize("slice_size", [1, 4])
def test_a_sliced_layer_holds_two_score_matrices_per_slice_against_sdpa_s_scratch(slice_size):
    sliced, h = one_layer(SlicedAttnProcessor(slice_size))
    sdpa, _ = one_layer(AttnProcessor2_0())
    with torch.no_grad():
        assert torch.allclose(sliced(h), sdpa(h), atol=1e-5)
    peak_sliced = allocator_peak_bytes(lambda: sliced(h))
    peak_sdpa = allocator_peak_bytes(lambda: sdpa(h))
    assert 2 * slice_size * MATRIX <= peak_sliced < (2 * slice_size + 1) * MATRIX
    assert peak_sdpa < MATRIX < peak_sliced


def test_sd15_unet_defaults_give_8_heads_and_auto_slices_of_4():
    """SD 1.5's UNet is diffusers' default UNet2DConditionModel; its first self-attention has 8 heads (of 40)."""
    with torch.device("meta"):
        unet = diffusers.UNet2DConditionModel()
    first = unet.down_blocks[0].attentions[0].transformer_blocks[0].attn1
    assert (first.heads, first.inner_dim // first.heads) == (8, 40)
    unet.set_attention_slice("auto")
    assert first.processor.slice_size == 4


@pytest.mark.parametrize("name", ["WanPipeline", "FluxPipeline", "StableDiffusion3Pipeline"])
def test_attention_slicing_is_a_no_op_for_dit_pipelines(name):
    torch.manual_seed(0)
    sched = diffusers.FlowMatchEulerDiscreteScheduler()
    if name == "WanPipeline":
        model = tiny.wan_transformer(text_dim=12)
        pipe = diffusers.WanPipeline(tokenizer=None, text_encoder=None, vae=None, scheduler=sched, transformer=model)

        def run():
            return model(torch.randn(1, 4, 2, 8, 8), torch.tensor([500]), torch.randn(1, 5, 12)).sample

    elif name == "FluxPipeline":
        model = tiny.flux_transformer(guidance_embeds=False)
        pipe = diffusers.FluxPipeline(
            scheduler=sched, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None,
            transformer=model,
        )  # fmt: skip

        def run():
            return model(
                torch.randn(1, 16, 16), encoder_hidden_states=torch.randn(1, 5, 16),
                pooled_projections=torch.randn(1, 16), timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3),
                txt_ids=torch.zeros(5, 3),
            ).sample  # fmt: skip

    else:
        model = tiny.sd3_transformer()
        pipe = diffusers.StableDiffusion3Pipeline(
            transformer=model, scheduler=sched, vae=None, text_encoder=None, tokenizer=None, text_encoder_2=None,
            tokenizer_2=None, text_encoder_3=None, tokenizer_3=None,
        )  # fmt: skip

        def run():
            return model(
                torch.randn(1, 4, 8, 8), encoder_hidden_states=torch.randn(1, 5, 12),
                pooled_projections=torch.randn(1, 8), timestep=torch.tensor([500]),
            ).sample  # fmt: skip

    assert not hasattr(model, "set_attention_slice")  # so the pipeline skips it
    before_processors = {k: type(v) for k, v in model.attn_processors.items()}
    with torch.no_grad():
        torch.manual_seed(5)
        before = run()
        pipe.enable_attention_slicing()
        torch.manual_seed(5)
        after = run()
    assert {k: type(v) for k, v in model.attn_processors.items()} == before_processors
    assert torch.equal(before, after)


def test_set_attention_backend_reaches_wan_and_flux_but_not_the_unet_nor_sd3():
    from diffusers.models import attention_dispatch

    calls = []
    original = attention_dispatch.dispatch_attention_fn

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    modules = [m for m in list(sys.modules.values()) if getattr(m, "dispatch_attention_fn", None) is original]
    for m in modules:
        m.dispatch_attention_fn = counting
    # set_attention_backend also makes its backend the process-wide default (modeling_utils.py:668): restored
    # below, or every later diffusers model of the session would run the math kernel
    active = attention_dispatch._AttentionBackendRegistry._active_backend
    try:
        unet = tiny.tiny_unet()
        unet.set_attention_backend("_native_math")  # accepted
        with torch.no_grad():
            unet(torch.randn(1, 4, 8, 8), 10, encoder_hidden_states=torch.randn(1, 5, 16))
        unet_calls, calls[:] = len(calls), []
        wan = tiny.wan_transformer(text_dim=12)
        wan.set_attention_backend("_native_math")
        with torch.no_grad():
            wan(torch.randn(1, 4, 2, 8, 8), torch.tensor([500]), torch.randn(1, 5, 12))
        wan_calls, calls[:] = len(calls), []
        flux = tiny.flux_transformer(guidance_embeds=False)
        flux.set_attention_backend("_native_math")
        with torch.no_grad():
            flux(
                torch.randn(1, 16, 16), encoder_hidden_states=torch.randn(1, 5, 16),
                pooled_projections=torch.randn(1, 16), timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3),
                txt_ids=torch.zeros(5, 3),
            )  # fmt: skip
        flux_calls, calls[:] = len(calls), []
        sd3 = tiny.sd3_transformer()
        sd3.set_attention_backend("_native_math")  # accepted, like the UNet's
        with torch.no_grad():
            sd3(
                torch.randn(1, 4, 8, 8), encoder_hidden_states=torch.randn(1, 5, 12),
                pooled_projections=torch.randn(1, 8), timestep=torch.tensor([500]),
            )  # fmt: skip
        sd3_calls = len(calls)
    finally:
        for m in modules:
            m.dispatch_attention_fn = original
        attention_dispatch._AttentionBackendRegistry.set_active_backend(active)
    assert unet_calls == 0  # AttnProcessor2_0 calls F.scaled_dot_product_attention itself
    assert wan_calls == 2  # self- and cross-attention of its one block
    assert flux_calls > 0  # FLUX's processors dispatch too
    assert sd3_calls == 0  # SD3's JointAttnProcessor2_0 calls F.scaled_dot_product_attention itself
