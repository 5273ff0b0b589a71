"""Lab 07 facts against diffusers: the conditioning pieces compute what diffusers' modules compute.

Weights are copied from a tiny diffusers module into the InfraLens one (or the
reverse) and both run on the same random tensors:

* ``timestep_features`` is ``get_timestep_embedding(t, d, flip_sin_to_cos=True, downscale_freq_shift=0)``;
* ``AdaLNZero`` gives ``AdaLayerNormZero``'s six vectors in its order, and
  ``modulate`` its modulated tokens;
* ``CrossAttention`` is ``Attention(query_dim, cross_attention_dim=...)``;
* ``patchify`` followed by the flattened conv weight is ``PatchEmbed`` without
  positional embedding;
* ``ResnetBlock2D`` adds the projected timestep embedding to its features,
  ``BasicTransformerBlock.attn2`` is a cross-attention, and the SD, PixArt and
  SD3 pipelines call ``encode_prompt`` before their loop (read from source).
"""

from __future__ import annotations

import inspect
import warnings

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.diffusion import (  # noqa: E402
    AdaLNZero,
    CrossAttention,
    modulate,
    patchify,
    timestep_features,
)

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
    shift_msa, scale_msa, g1, s2, c2, g2 = ours(emb)
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


def test_where_conditions_enter_in_source():
    from diffusers.models import attention, resnet

    forward = inspect.getsource(resnet.ResnetBlock2D.forward)
    assert "temb = self.time_emb_proj(temb)[:, :, None, None]" in forward
    assert "hidden_states = hidden_states + temb" in forward
    block = inspect.getsource(attention.BasicTransformerBlock.forward)
    assert "attn_output = self.attn2(" in block and "encoder_hidden_states=encoder_hidden_states" in block
    from diffusers.models.transformers import transformer_sd3

    sd3 = inspect.getsource(transformer_sd3.SD3Transformer2DModel.forward)
    assert "temb = self.time_text_embed(timestep, pooled_projections)" in sd3


@pytest.mark.parametrize(
    ("pipeline", "call"),
    [
        ("StableDiffusionPipeline", "self.unet("),
        ("PixArtAlphaPipeline", "self.transformer("),
        ("StableDiffusion3Pipeline", "self.transformer("),
    ],
)
def test_prompt_is_encoded_once_before_the_loop(pipeline, call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        source = inspect.getsource(getattr(diffusers, pipeline).__call__)
    encode, loop = source.index("self.encode_prompt("), source.index("for i, t in enumerate(timesteps)")
    assert encode < loop
    assert source.count("self.encode_prompt(") == 1
    assert "encode_prompt" not in source[loop:]
    assert call in source[loop:]
