"""Lab 05 against the real packages: Wan's block and its decoupled image cross-attention, run, not read.

The book's tiny :class:`~infralens.nets.DiTBlock` and :class:`~infralens.nets.CrossAttention`
are given the same weights as DiffSynth-Studio's ``DiTBlock`` / ``CrossAttention``
(``models/wan_video_dit.py``) and diffusers' ``WanAttention`` with its
``WanAttnProcessor`` (``models/transformers/transformer_wan.py``), and all run on
the same tokens: 257 CLIP image tokens and a text context.

* With the weights copied (the biases the tiny block has not at zero, RoPE at
  angle 0), the three compute the same output at Wan 2.1 I2V's 257 + 512 tokens,
  qk-norm included.
* Where the image tokens are split off the context differs: DiffSynth keeps the
  first 257 rows (a literal), diffusers everything before the last 512 (the text
  encoder's length, "hardcoded for now"). So they agree only on 257 + 512; the FLF2V
  model's 2 x 257 tokens and any prompt length other than 512 split differently.
* The pipeline pads prompts to 512 and zeroes the padding, but attends to it.
* Cross-attention against self-attention, in FLOPs, at the 480x832x81 request.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.nets import CrossAttention, DiTBlock, SelfAttention

from ._diffsynth import import_submodule
from ._wan_pipeline import wan_video

pytestmark = pytest.mark.upstream

D, H = 24, 2  # head_dim 12, so DiffSynth's 3-D RoPE tables split it


@pytest.fixture(scope="module")
def wan_dit():
    pytest.importorskip("einops")
    return import_submodule("models.wan_video_dit")


def _randomise_norms(module: torch.nn.Module) -> None:
    """RMSNorm weights away from 1, so that a missing or misplaced norm changes the output."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and p.ndim == 1:
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


def _tiny_cross(seed: int = 0) -> CrossAttention:
    torch.manual_seed(seed)
    attn = CrossAttention(D, D, heads=H, image_dim=D, qk_norm=True).eval()
    _randomise_norms(attn)
    return attn


def diffsynth_cross(wan_dit, ours: CrossAttention):
    """DiffSynth's ``CrossAttention(has_image_input=True)`` with ``ours``'s weights (zero where ours has no bias)."""
    theirs = wan_dit.CrossAttention(D, H, eps=1e-6, has_image_input=True).eval()
    pairs = {
        "q": "to_q", "k": "to_k", "v": "to_v", "o": "to_out", "k_img": "add_k_proj", "v_img": "add_v_proj",
        "norm_q": "norm_q", "norm_k": "norm_k", "norm_k_img": "norm_added_k",
    }  # fmt: skip
    with torch.no_grad():
        for their_name, our_name in pairs.items():
            mine, other = getattr(ours, our_name), getattr(theirs, their_name)
            other.weight.copy_(mine.weight)
            if getattr(other, "bias", None) is not None:
                other.bias.copy_(mine.bias if mine.bias is not None else torch.zeros_like(other.bias))
    return theirs


def diffusers_cross(ours: CrossAttention):
    """diffusers' ``WanAttention`` (I2V: ``added_kv_proj_dim``) and ``WanAttnProcessor`` with ``ours``'s weights."""
    pytest.importorskip("diffusers")
    from diffusers.models.transformers.transformer_wan import WanAttention, WanAttnProcessor

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = WanAttention(
            dim=D, heads=H, dim_head=D // H, eps=1e-6, added_kv_proj_dim=D, cross_attention_dim_head=D // H,
            processor=WanAttnProcessor(),
        ).eval()  # fmt: skip
    pairs = {
        "to_q": "to_q", "to_k": "to_k", "to_v": "to_v", "add_k_proj": "add_k_proj", "add_v_proj": "add_v_proj",
        "norm_q": "norm_q", "norm_k": "norm_k", "norm_added_k": "norm_added_k",
    }  # fmt: skip
    with torch.no_grad():
        for their_name, our_name in [*pairs.items(), ("to_out", "to_out")]:
            mine = getattr(ours, our_name)
            other = theirs.to_out[0] if their_name == "to_out" else getattr(theirs, their_name)
            other.weight.copy_(mine.weight)
            if getattr(other, "bias", None) is not None:
                other.bias.copy_(mine.bias if mine.bias is not None else torch.zeros_like(other.bias))
    return theirs


def _tokens(n_image: int, n_text: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 10, D, generator=g)  # (B, N, D) video tokens, the queries
    image, text = torch.randn(1, n_image, D, generator=g), torch.randn(1, n_text, D, generator=g)
    return x, image, text


def test_tiny_block_is_diffsynth_block(wan_dit):
    """The whole block: adaLN, gated self-attention with qk-norm, cross-attention (text + image), gated MLP."""
    torch.manual_seed(0)
    ours = DiTBlock(D, H, mlp_ratio=2, image_dim=D).eval()
    _randomise_norms(ours)
    theirs = wan_dit.DiTBlock(True, D, H, 2 * D, 1e-6).eval()
    with torch.no_grad():
        for lin, w, b in zip(
            (theirs.self_attn.q, theirs.self_attn.k, theirs.self_attn.v),
            ours.attn1.to_qkv.weight.chunk(3),
            ours.attn1.to_qkv.bias.chunk(3),
            strict=True,
        ):
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        theirs.self_attn.o.load_state_dict(ours.attn1.to_out.state_dict())
        theirs.self_attn.norm_q.weight.copy_(ours.attn1.norm_q.weight)
        theirs.self_attn.norm_k.weight.copy_(ours.attn1.norm_k.weight)
        theirs.cross_attn.load_state_dict(diffsynth_cross(wan_dit, ours.attn2).state_dict())
        theirs.norm3.load_state_dict(ours.norm2.state_dict())  # Wan's affine pre-cross-attention norm is its norm3
        theirs.ffn.load_state_dict(ours.ffn.state_dict())
        theirs.modulation.copy_(ours.scale_shift_table)
    x, image, text = _tokens(257, 12)
    t_mod = torch.randn(1, 6, D, generator=torch.Generator().manual_seed(2))
    no_rope = torch.ones(x.shape[1], 1, (D // H) // 2, dtype=torch.complex128)  # rotation by angle 0
    with torch.no_grad():
        mine = ours(x, text, t_mod, image_tokens=image)
        wan = theirs(x, torch.cat([image, text], dim=1), t_mod, no_rope)
    assert torch.allclose(mine, wan, atol=1e-5), (mine - wan).abs().max()


def test_cross_attention_is_wan_attention(wan_dit):
    """Ours, DiffSynth's and diffusers' cross-attention agree on Wan 2.1 I2V's context: 257 CLIP + 512 text tokens."""
    ours = _tiny_cross()
    x, image, text = _tokens(257, 512)
    context = torch.cat([image, text], dim=1)  # image rows first, as both libraries concatenate
    with torch.no_grad():
        mine = ours(x, text, image_tokens=image)
        synth = diffsynth_cross(wan_dit, ours)(x, context)
        users = diffusers_cross(ours)(x, context)
        plain = CrossAttention(D, D, heads=H, image_dim=D)  # the same weights without qk-norm
        plain.load_state_dict(
            {k: v for k, v in ours.state_dict().items() if k.split(".")[0] not in ("norm_q", "norm_k")}
        )
        without_norm = plain(x, text, image_tokens=image)
    assert torch.allclose(mine, synth, atol=1e-5) and torch.allclose(mine, users, atol=1e-5)
    assert not torch.allclose(without_norm, synth, atol=1e-3)  # Wan's qk-norm matters


@pytest.mark.parametrize(("n_image", "n_text"), [(257, 512), (514, 512), (257, 7), (257, 256)])
def test_diffsynth_splits_off_the_first_257_rows(wan_dit, n_image, n_text):
    """``CrossAttention.forward``: ``img = y[:, :257]``, ``ctx = y[:, 257:]``, whatever the two lengths."""
    ours = _tiny_cross()
    x, image, text = _tokens(n_image, n_text)
    context = torch.cat([image, text], dim=1)
    with torch.no_grad():
        synth = diffsynth_cross(wan_dit, ours)(x, context)
        split_at_257 = ours(x, context[:, 257:], image_tokens=context[:, :257])
    assert torch.allclose(synth, split_at_257, atol=1e-5)


@pytest.mark.parametrize(("n_image", "n_text"), [(257, 512), (514, 512), (257, 7), (257, 256)])
def test_diffusers_splits_off_all_but_the_last_512_rows(wan_dit, n_image, n_text):
    """``WanAttnProcessor``: ``image_context_length = shape[1] - 512``, so the text is always the last 512 rows."""
    ours = _tiny_cross()
    x, image, text = _tokens(n_image, n_text)
    context = torch.cat([image, text], dim=1)
    cut = context.shape[1] - 512  # negative when the context is shorter than 769: slices count from the end
    with torch.no_grad():
        users = diffusers_cross(ours)(x, context)
        split_at_512 = ours(x, context[:, cut:], image_tokens=context[:, :cut])
    assert torch.allclose(users, split_at_512, atol=1e-5)
    if n_text != 512 or n_image != 257:  # then the two libraries compute different attentions
        with torch.no_grad():
            synth = diffsynth_cross(wan_dit, ours)(x, context)
        assert not torch.allclose(users, synth, atol=1e-3)


def test_flf2v_sends_2x257_clip_tokens_and_diffsynth_reads_257_as_image(wan_dit):
    """Wan 2.1 FLF2V (``has_image_pos_emb``): ``img_emb`` takes 514 rows; each block's cross-attention gets 1026."""
    torch.manual_seed(0)
    model = wan_dit.WanModel(
        dim=D, in_dim=36, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=H, num_layers=1, has_image_input=True, has_image_pos_emb=True,
    ).eval()  # fmt: skip
    assert tuple(model.img_emb.emb_pos.shape) == (1, 514, 1280)  # first and last frame, 257 CLIP tokens each
    seen = {}
    model.blocks[0].cross_attn.register_forward_hook(lambda m, args, out: seen.update(context=args[1].shape[1]))
    x, clip, y = torch.randn(1, 16, 2, 4, 4), torch.randn(1, 514, 1280), torch.randn(1, 20, 2, 4, 4)
    with torch.no_grad():  # the pipeline's model function (WanModel.forward does not run in 2.1.12)
        wan_video().model_fn_wan_video(
            dit=model, latents=x, timestep=torch.tensor([500.0]), context=torch.randn(1, 512, 32),
            clip_feature=clip, y=y,
        )  # fmt: skip
    assert seen["context"] == 514 + 512  # 257 of them go to the image branch, 769 to the text branch


def test_padded_prompt_rows_are_zeroed_then_attended_to(wan_dit):
    """After ``prompt_emb[:, v:] = 0`` and ``text_embedding``, the 505 pad rows are one non-zero key, not masked."""
    torch.manual_seed(0)
    model = wan_dit.WanModel(
        dim=D, in_dim=16, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=H, num_layers=1, has_image_input=False,
    ).eval()  # fmt: skip
    prompt = torch.zeros(1, 512, 32)
    prompt[:, :7] = torch.randn(1, 7, 32)  # 7 real tokens, the rest zeroed as WanVideoUnit_PromptEmbedder does
    attn = model.blocks[0].cross_attn
    x = torch.randn(1, 10, D)
    with torch.no_grad():
        context = model.text_embedding(prompt)  # (1, 512, D)
        pads = context[0, 7:]
        full, real_only = attn(x, context), attn(x, context[:, :7])
    assert torch.allclose(pads, pads[:1].expand_as(pads)) and pads.abs().max() > 0
    assert not torch.allclose(full, real_only, atol=1e-3)  # the pads take part in the softmax


def _flops(module, *args, **kwargs) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    return counter.get_total_flops()


@pytest.mark.parametrize(("dim", "heads"), [(5120, 40), (1536, 12)])  # Wan 2.1 14B and 1.3B
def test_attention_flops_at_full_size_are_wan_s(wan_dit, dim, heads):
    """FLOPs of one block's attentions at 480x832x81 (N = 21 * 30 * 52 tokens), ours and DiffSynth's, on meta."""
    f, h, w = 21, 30, 52
    N, L = f * h * w, 257 + 512
    with torch.device("meta"):
        x, context = torch.empty(1, N, dim), torch.empty(1, L, dim)
        ours_self, ours_cross = SelfAttention(dim, heads), CrossAttention(dim, dim, heads, image_dim=dim, qk_norm=True)
        their_self = wan_dit.SelfAttention(dim, heads)
        their_cross = wan_dit.CrossAttention(dim, heads, has_image_input=True)
        freqs = torch.empty(N, 1, dim // heads // 2, dtype=torch.complex128)
    mine = (_flops(ours_self, x), _flops(ours_cross, x, context[:, 257:], image_tokens=context[:, :257]))
    wan = (_flops(their_self, x, freqs), _flops(their_cross, x, context))
    assert mine == wan
    projections = 2 * N * 4 * dim * dim  # q, k, v, o over the video tokens
    assert wan[0] == projections + 4 * N * N * dim  # plus Q K^T and P V
    # cross: q and o over the video tokens, k and v over the 769 context tokens, then Q K^T and P V against them
    assert wan[1] == 4 * N * dim * dim + 4 * L * dim * dim + 4 * N * L * dim
