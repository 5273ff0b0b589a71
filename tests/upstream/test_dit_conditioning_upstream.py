"""Lab 07 facts against diffusers: the conditioning pieces compute what diffusers' modules compute.

Weights are copied from a tiny diffusers module into the InfraLens one (or the
reverse) and both run on the same random tensors:

* ``timestep_features`` is ``get_timestep_embedding(t, d, flip_sin_to_cos=True, downscale_freq_shift=0)``;
* ``AdaLNZero`` gives ``AdaLayerNormZero``'s six vectors in its order, and
  ``modulate`` its modulated tokens;
* ``CrossAttention`` is ``Attention(query_dim, cross_attention_dim=...)``;
* ``patchify`` followed by the flattened conv weight is ``PatchEmbed`` without
  positional embedding;
* run on tiny random models: the UNet adds the projected timestep to every
  ``ResnetBlock2D`` and reads the text in ``attn2``; SDXL's ``time_ids`` move the
  prediction; SD3 attends jointly over image and text tokens; FLUX multiplies
  its timestep by 1000; Wan modulates per token for a per-token timestep;
  PixArt projects the timestep once; zero modulation is the identity only
  for a block without (ungated) cross-attention.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.nets import AdaLNZero, CrossAttention, modulate, patchify, timestep_features  # noqa: E402

pytestmark = pytest.mark.upstream


def test_timestep_features():
    from diffusers.models.embeddings import get_timestep_embedding

    t = torch.tensor([0.0, 1.0, 250.0, 999.0])
    theirs = get_timestep_embedding(t, 32, flip_sin_to_cos=True, downscale_freq_shift=0)
    assert torch.allclose(timestep_features(t, 32), theirs, atol=1e-5)


def test_adaln_zero_order_and_modulation():
    from diffusers.models.normalization import AdaLayerNormZero

    theirs = AdaLayerNormZero(16, num_embeddings=None)
    ours = AdaLNZero(16, zero_init=False)
    ours.linear.load_state_dict(theirs.linear.state_dict())
    x, emb = torch.randn(2, 5, 16), torch.randn(2, 16)
    x_mod, gate_msa, shift_mlp, scale_mlp, gate_mlp = theirs(x, emb=emb)
    shift_msa, scale_msa, g1, s2, c2, g2 = ours(emb).unbind(1)  # (B, 6, D): six vectors
    assert torch.allclose(x_mod, modulate(theirs.norm(x), shift_msa, scale_msa), atol=1e-6)
    for a, b in ((gate_msa, g1), (shift_mlp, s2), (scale_mlp, c2), (gate_mlp, g2)):
        assert torch.equal(a, b)
    assert not theirs.norm.elementwise_affine and theirs.norm.eps == 1e-6


def test_cross_attention_matches_attention():
    from diffusers.models.attention_processor import Attention

    theirs = Attention(query_dim=16, cross_attention_dim=24, heads=2, dim_head=8)
    ours = CrossAttention(16, 24, heads=2)
    for name in ("to_q", "to_k", "to_v"):
        getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())
    ours.to_out.load_state_dict(theirs.to_out[0].state_dict())
    x, text = torch.randn(2, 10, 16), torch.randn(2, 7, 24)
    with torch.no_grad():
        assert torch.allclose(theirs(x, encoder_hidden_states=text), ours(x, text), atol=1e-5)


def test_patchify_matches_patch_embed():
    from diffusers.models.embeddings import PatchEmbed

    embed = PatchEmbed(height=16, width=16, patch_size=2, in_channels=4, embed_dim=24, pos_embed_type=None)
    z = torch.randn(2, 4, 16, 16)
    manual = patchify(z, 2) @ embed.proj.weight.reshape(24, -1).T + embed.proj.bias
    with torch.no_grad():
        assert torch.allclose(embed(z), manual, atol=1e-5)


def tiny_unet(**extra):
    return diffusers.UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16), layers_per_block=1,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=12, attention_head_dim=4, norm_num_groups=4, **extra,
    ).eval()  # fmt: skip


def test_the_unet_adds_the_timestep_to_every_resnet_block_and_reads_text_in_attn2():
    torch.manual_seed(0)
    unet = tiny_unet()
    temb_calls, text_keys = [], []
    resnets = [m for m in unet.modules() if isinstance(m, diffusers.models.resnet.ResnetBlock2D)]
    for r in resnets:
        r.time_emb_proj.register_forward_hook(lambda m, a, o: temb_calls.append(tuple(o.shape)))
    for name, m in unet.named_modules():
        if name.endswith("attn2"):
            m.to_k.register_forward_hook(lambda m, a, o: text_keys.append(a[0].shape[1]))
    with torch.no_grad():
        unet(torch.randn(1, 4, 8, 8), 500, torch.randn(1, 5, 12))
    assert len(resnets) == len(temb_calls) > 0  # once per ResnetBlock2D, per call
    assert text_keys and set(text_keys) == {5}  # attn2's keys come from the 5 text tokens


def test_sdxl_micro_conditioning_changes_the_prediction():
    """SDXL adds pooled text and size ids (``time_ids``) to the timestep embedding: the size alone moves the output."""
    torch.manual_seed(0)
    unet = tiny_unet(addition_embed_type="text_time", addition_time_embed_dim=8,
                     projection_class_embeddings_input_dim=6 * 8 + 8)  # fmt: skip
    sample, text, pooled = torch.randn(1, 4, 8, 8), torch.randn(1, 5, 12), torch.randn(1, 8)
    ids = torch.tensor([[64.0, 64, 0, 0, 64, 64]])  # original size, crop top-left, target size
    with torch.no_grad():
        a = unet(sample, 500, text, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids}).sample
        b = unet(sample, 500, text, added_cond_kwargs={"text_embeds": pooled, "time_ids": ids * 2}).sample
    assert not torch.allclose(a, b)
    with pytest.raises((TypeError, ValueError, KeyError)):
        unet(sample, 500, text)  # an SD-style call into an SDXL UNet


def test_sd3_attends_jointly_over_image_and_text_tokens():
    torch.manual_seed(0)
    sd3 = diffusers.SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, caption_projection_dim=16, pooled_projection_dim=8, out_channels=4,
        pos_embed_max_size=16,
    ).eval()  # fmt: skip
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(q, k, v, *args, **kwargs):
        seen.append((q.shape[-2], k.shape[-2]))
        return original(q, k, v, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        sd3(torch.randn(1, 4, 8, 8), encoder_hidden_states=torch.randn(1, 7, 12),
            pooled_projections=torch.randn(1, 8), timestep=torch.tensor([500]))  # fmt: skip
    assert seen == [(16 + 7, 16 + 7)]  # (8/2)^2 image tokens and 7 text tokens, one softmax
    assert not [n for n, m in sd3.named_modules() if getattr(m, "is_cross_attention", False)]


def test_flux_attends_jointly_and_its_adaln_reads_the_pooled_text():
    torch.manual_seed(0)
    flux = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4),
    ).eval()  # fmt: skip
    seen = []
    original = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):  # diffusers' dispatcher passes query=, key=, value=
        q, k = (args[0], args[1]) if len(args) > 1 else (kwargs["query"], kwargs["key"])
        seen.append((q.shape[-2], k.shape[-2]))
        return original(*args, **kwargs)

    kw = dict(encoder_hidden_states=torch.randn(1, 5, 12), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3),
              timestep=torch.tensor([0.5]))  # fmt: skip
    z = torch.randn(1, 16, 16)  # (B, N, C): 16 packed image tokens
    with pytest.MonkeyPatch.context() as mp, torch.no_grad():
        mp.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
        a = flux(z, pooled_projections=torch.randn(1, 8), **kw).sample
        b = flux(z, pooled_projections=torch.randn(1, 8), **kw).sample
    assert set(seen) == {(16 + 5, 16 + 5)}  # double- and single-stream blocks: one sequence of image + text
    assert not [n for n, m in flux.named_modules() if getattr(m, "is_cross_attention", False)]
    assert not torch.allclose(a, b)  # the pooled text vector enters through the timestep embedding


def test_flux_transformer_multiplies_the_timestep_by_1000():
    torch.manual_seed(0)
    flux = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4),
    ).eval()  # fmt: skip
    seen = []
    flux.time_text_embed.time_proj.register_forward_pre_hook(lambda m, a: seen.append(float(a[0][0])))
    kw = dict(encoder_hidden_states=torch.randn(1, 5, 12), pooled_projections=torch.randn(1, 8),
              img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3))  # fmt: skip
    z = torch.randn(1, 16, 16)
    with torch.no_grad():
        a = flux(z, timestep=torch.tensor([0.75]), **kw).sample  # what FluxPipeline passes: t / 1000
        b = flux(z, timestep=torch.tensor([750.0]), **kw).sample  # an SD3-style timestep
    assert seen == [750.0, 750000.0]
    assert not torch.allclose(a, b)  # no error, a different prediction


def test_wan_modulation_is_per_token_for_a_per_token_timestep():
    """Wan 2.2 TI2V (``expand_timesteps``): a ``(B, N)`` timestep gives each token its own shift, scale and gate."""
    torch.manual_seed(0)
    wan = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
        text_dim=12, freq_dim=16, ffn_dim=32, num_layers=1, rope_max_seq_len=32,
    ).eval()  # fmt: skip
    got = []
    wan.blocks[0].register_forward_pre_hook(lambda m, a: got.append(tuple(a[2].shape)))
    x, text = torch.randn(1, 4, 3, 8, 8), torch.randn(1, 5, 12)  # (B, C, F, H, W): N = 3 * 4 * 4
    per_token = torch.full((1, 48), 700)
    per_token[:, :16] = 0  # the first latent frame kept clean, as TI2V does for the image
    with torch.no_grad():
        same = wan(x, torch.tensor([700]), text).sample
        mixed = wan(x, per_token, text).sample
    assert got == [(1, 6, 16), (1, 48, 6, 16)]  # (B, 6, D) per sample, (B, N, 6, D) per token
    assert not torch.allclose(same[:, :, 0], mixed[:, :, 0])


def test_pixart_computes_the_modulation_once_and_blocks_add_a_table():
    pix = diffusers.PixArtTransformer2DModel(
        num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8, num_layers=2, sample_size=8,
        patch_size=2, cross_attention_dim=16, caption_channels=12, norm_num_groups=1,
    )  # fmt: skip
    D = 16
    assert tuple(pix.adaln_single.linear.weight.shape) == (6 * D, D)  # model level, once per call
    for block in pix.transformer_blocks:
        assert tuple(block.scale_shift_table.shape) == (6, D)
        assert not [m for m in block.modules() if isinstance(m, torch.nn.Linear) and m.out_features == 6 * D]


def test_zero_modulation_is_the_identity_only_without_cross_attention():
    """adaLN-Zero: gates at zero make a DiT block the identity; an ungated cross-attention (PixArt, TinyDiT) is not."""
    from diffusers.models.attention import BasicTransformerBlock

    from infralens.nets import DiTBlock

    torch.manual_seed(0)
    h, ctx = torch.randn(1, 10, 16), torch.randn(1, 5, 12)
    dit = BasicTransformerBlock(16, 2, 8, norm_type="ada_norm_zero", num_embeds_ada_norm=1000).eval()
    with torch.no_grad():
        dit.norm1.linear.weight.zero_()
        dit.norm1.linear.bias.zero_()
        out = dit(h, timestep=torch.tensor([500]), class_labels=torch.tensor([0]))
    assert torch.allclose(out, h)  # DiT: no cross-attention, the block starts as the identity
    pixart = BasicTransformerBlock(16, 2, 8, cross_attention_dim=12, norm_type="ada_norm_single").eval()
    with torch.no_grad():
        pixart.scale_shift_table.zero_()
        out = pixart(h, encoder_hidden_states=ctx, timestep=torch.zeros(1, 6 * 16))
    assert not torch.allclose(out, h, atol=1e-3)  # attn2 is added ungated
    ours = DiTBlock(16, 2)
    text = torch.randn(1, 5, 16)
    with torch.no_grad():
        zero = -ours.scale_shift_table.expand(1, 6, 16)  # table + t_mod = 0
        out = ours(h, text, zero)
        assert not torch.allclose(out, h, atol=1e-3)
        assert torch.allclose(out - ours.attn2(ours.norm2(h), text), h, atol=1e-5)  # all of it is attn2
