"""Lab 05 facts against the real packages: Wan's image condition and the widths of its condition paths.

* ``image_condition`` builds the same ``y`` (4 mask channels, then the
  normalised latent of "image + zero frames") as diffusers'
  ``WanImageToVideoPipeline.prepare_latents`` (run on a stand-in ``self`` with a
  tiny ``AutoencoderKLWan``) and as DiffSynth-Studio's
  ``WanVideoUnit_ImageEmbedderVAE.process`` (run on a stand-in pipeline).
* DiffSynth-Studio's registered Wan DiTs, built from their ``extra_kwargs`` on the
  meta device: which read ``y`` on channels (``in_dim``) and which have the image
  branch; ``model_fn_wan_video`` concatenating ``y`` and prepending the projected
  CLIP tokens; Wan 2.2 TI2V's per-token timestep; Fun-Control's ``y``.
* The real ``WanVideoPipeline.__call__`` on a tiny I2V DiT: both guided calls get
  the same ``y`` and CLIP tokens, only the text differs.
* The CLIP tower gives 257 tokens of width 1280; the tokenizer pads to 512.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import pytest
import torch

from infralens.diffusion import LATENT_SCALING
from infralens.video import first_frame_mask, image_condition

from . import _wan_pipeline as wp

pytestmark = pytest.mark.upstream


def _tiny_wan_vae():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return diffusers.AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()


class _Adapter(torch.nn.Module):
    """The tiny diffusers VAE behind the interface ``image_condition`` expects (posterior mode, like argmax)."""

    spatial_factor, temporal_factor = 8, 4

    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def encode(self, video):
        with torch.no_grad():
            return self.vae.encode(video).latent_dist.mode()


def test_matches_diffusers_prepare_latents():
    from diffusers.pipelines.wan.pipeline_wan_i2v import WanImageToVideoPipeline

    vae = _tiny_wan_vae()
    me = SimpleNamespace(vae=vae, vae_scale_factor_temporal=4, vae_scale_factor_spatial=8)
    me.config = SimpleNamespace(expand_timesteps=False)
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(1)) * 2 - 1
    with torch.no_grad():
        _, theirs = WanImageToVideoPipeline.prepare_latents(
            me, image, 1, 16, 16, 24, 9, torch.float32, torch.device("cpu"), None
        )
    ours = image_condition(_Adapter(vae), image, 9)
    assert theirs.shape == ours.shape == (1, 20, 3, 2, 3)
    assert torch.equal(theirs[:, :4], ours[:, :4])  # the mask
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_matches_diffsynth_image_embedder():
    process = wp.wan_video().WanVideoUnit_ImageEmbedderVAE.process
    adapter = _Adapter(_tiny_wan_vae())
    stats = LATENT_SCALING["wan2.1"]
    mean = torch.tensor(stats.latents_mean).view(16, 1, 1, 1)
    std = torch.tensor(stats.latents_std).view(16, 1, 1, 1)
    image = torch.rand(1, 3, 16, 24, generator=torch.Generator().manual_seed(2)) * 2 - 1

    class FakeImage:  # stands in for the PIL image the pipeline resizes
        def resize(self, size):
            assert size == (24, 16)
            return self

    class FakeVAE:  # DiffSynth's WanVideoVAE.encode: a list of videos in, normalised latents out
        @staticmethod
        def encode(videos, device=None, **kwargs):
            return [(adapter.encode(v[None])[0] - mean) * (1.0 / std) for v in videos]

    pipe = SimpleNamespace(
        dit=SimpleNamespace(require_vae_embedding=True),
        load_models_to_device=lambda names: None,
        preprocess_image=lambda img: image.clone(),
        device="cpu",
        torch_dtype=torch.float32,
        vae=FakeVAE(),
    )
    unit = SimpleNamespace(onload_model_names=("vae",))
    theirs = process(unit, pipe, FakeImage(), None, 9, 16, 24, False, None, None)["y"]
    ours = image_condition(adapter, image, 9)
    assert torch.equal(theirs[:, :4], first_frame_mask(9, 2, 3))
    assert torch.allclose(theirs, ours, atol=1e-5)


# Registered Wan DiTs, by the hash DiffSynth-Studio files them under (the model each entry's comment names).
WAN_DITS = {
    "Wan2.1-T2V-1.3B": "9269f8db9040a9d860eaca435be61814",
    "Wan2.1-T2V-14B": "aafcfd9672c3a2456dc46e1cb6e52c70",
    "Wan2.1-FLF2V-14B-720P": "3ef3b1f8e1dab83d5b71fd7b617f859f",
    "Wan2.1-Fun-1.3B-InP": "6d6ccde6845b95ad9114ab993d917893",
    "Wan2.1-Fun-14B-InP": "6bfcfb3b342cb286ce886889d519a77e",
    "Wan2.1-Fun-1.3B-Control": "349723183fc063b2bfc10bb2835cf677",
    "Wan2.2-I2V-A14B": "5b013604280dd715f8457c6ed6d6a626",
    "Wan2.2-TI2V-5B": "1f5ab7703c6fc803fdded85ff040c316",
}


def _registered_dit(name: str):
    """DiffSynth's ``WanModel(**extra_kwargs)`` of a registered checkpoint, built on the meta device."""
    entry = next(e for e in wp.module("models.model_loader").MODEL_CONFIGS if e["model_hash"] == WAN_DITS[name])
    assert entry["model_class"] == "diffsynth.models.wan_video_dit.WanModel"
    with torch.device("meta"):
        return wp.module("models.wan_video_dit").WanModel(**entry["extra_kwargs"])


@pytest.mark.parametrize(
    ("name", "in_channels", "image_branch"),
    [
        ("Wan2.1-T2V-1.3B", 16, False),
        ("Wan2.1-T2V-14B", 16, False),
        ("Wan2.1-FLF2V-14B-720P", 16 + 4 + 16, True),  # latents, mask, image latent
        ("Wan2.1-Fun-1.3B-InP", 16 + 4 + 16, True),
        ("Wan2.1-Fun-14B-InP", 16 + 4 + 16, True),
        ("Wan2.1-Fun-1.3B-Control", 16 + 16 + 16, True),  # latents, control latent, image latent (no mask)
        ("Wan2.2-I2V-A14B", 16 + 4 + 16, False),  # channel concatenation only: no k_img, no img_emb
        ("Wan2.2-TI2V-5B", 48, False),  # the 48 channels of the Wan 2.2 VAE, no y at all
    ],
)
def test_which_wan_dits_read_y_and_clip(name, in_channels, image_branch):
    dit = _registered_dit(name)
    assert dit.patch_embedding.in_channels == in_channels
    assert hasattr(dit, "img_emb") == image_branch == hasattr(dit.blocks[0].cross_attn, "k_img")
    assert dit.text_embedding[0].in_features == 4096  # umT5-XXL's width
    if image_branch:
        assert dit.img_emb.proj[0].normalized_shape == (1280,)  # CLIP ViT-H/14 features


def test_model_fn_concatenates_y_on_channels_and_prepends_projected_clip():
    torch.manual_seed(0)
    WanModel = wp.module("models.wan_video_dit").WanModel
    kw = dict(dim=24, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2), num_heads=2)
    i2v = WanModel(in_dim=36, num_layers=1, has_image_input=True, **kw).eval()
    seen = {}
    i2v.patch_embedding.register_forward_hook(lambda m, a, o: seen.update(x=a[0].shape))
    i2v.blocks[0].cross_attn.register_forward_hook(lambda m, a, o: seen.update(context=a[1].shape))
    latents, y, clip = torch.randn(1, 16, 3, 4, 6), torch.randn(1, 20, 3, 4, 6), torch.randn(1, 257, 1280)
    with torch.no_grad():
        out = wp.wan_video().model_fn_wan_video(
            dit=i2v, latents=latents, timestep=torch.tensor([500.0]), context=torch.randn(1, 512, 32),
            clip_feature=clip, y=y,
        )  # fmt: skip
    assert tuple(seen["x"]) == (1, 36, 3, 4, 6) and tuple(seen["context"]) == (1, 257 + 512, 24)
    assert out.shape == latents.shape
    t2v = WanModel(in_dim=16, num_layers=1, has_image_input=False, **kw).eval()
    t2v.require_vae_embedding = True  # hand a text-to-video DiT the image condition anyway
    with torch.no_grad(), pytest.raises(RuntimeError, match="channels"):
        wp.wan_video().model_fn_wan_video(
            dit=t2v, latents=latents, timestep=torch.tensor([500.0]), context=torch.randn(1, 512, 32), y=y
        )


def test_ti2v_gives_the_first_latent_frame_timestep_zero(monkeypatch):
    """Wan 2.2 TI2V-5B: a timestep per token, 0 on frame 0's tokens; every block reads ``t_mod`` (B, N, 6, D)."""
    wan_video = wp.wan_video()
    torch.manual_seed(0)
    dit = wp.module("models.wan_video_dit").WanModel(
        dim=24, in_dim=16, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=2, num_layers=1, has_image_input=False, seperated_timestep=True, require_vae_embedding=False,
        require_clip_embedding=False, fuse_vae_embedding_in_latents=True,
    ).eval()  # fmt: skip
    seen = {}
    embed = wan_video.sinusoidal_embedding_1d

    def spy(dim, position):  # records the timesteps model_fn_wan_video embeds
        seen["t"] = position.detach().clone()
        return embed(dim, position)

    monkeypatch.setattr(wan_video, "sinusoidal_embedding_1d", spy)
    dit.blocks[0].register_forward_hook(lambda m, a, o: seen.update(t_mod=tuple(a[2].shape)))
    with torch.no_grad():
        wan_video.model_fn_wan_video(
            dit=dit, latents=torch.randn(1, 16, 3, 4, 6), timestep=torch.tensor([700.0]),
            context=torch.randn(1, 9, 32), fuse_vae_embedding_in_latents=True,
        )  # fmt: skip
    per_frame = seen["t"].view(3, 2 * 3)  # 3 latent frames of 2 x 3 tokens
    assert per_frame[0].eq(0).all() and per_frame[1:].eq(700).all()
    assert seen["t_mod"] == (1, 3 * 2 * 3, 6, 24)  # (B, N, 6, D), not (B, 6, D)


def test_fun_control_y_is_control_latent_then_image_latent_without_mask():
    process = wp.wan_video().WanVideoUnit_FunControl.process
    control = torch.randn(1, 16, 3, 4, 6)
    pipe = SimpleNamespace(
        dit=SimpleNamespace(in_dim=48), load_models_to_device=lambda names: None, preprocess_video=lambda v: v,
        device="cpu", torch_dtype=torch.float32, vae=SimpleNamespace(encode=lambda v, **kw: control.clone()),
    )  # fmt: skip
    unit = SimpleNamespace(onload_model_names=("vae",))
    y_i2v = torch.cat([torch.ones(1, 4, 3, 4, 6), torch.randn(1, 16, 3, 4, 6)], dim=1)  # mask, image latent
    latents = torch.randn(1, 16, 3, 4, 6)
    out = process(unit, pipe, "video", 9, 32, 48, False, None, None, torch.randn(1, 257, 1280), y_i2v, latents)
    assert tuple(out["y"].shape) == (1, 32, 3, 4, 6)
    assert torch.equal(out["y"][:, :16], control) and torch.equal(out["y"][:, 16:], y_i2v[:, 4:])  # mask dropped


@pytest.fixture
def i2v_pipe(tmp_path):
    """The real pipeline with a tiny I2V DiT (in_dim 36, image branch), stand-in encoders and VAE."""
    kw = dict(in_dim=36, has_image_input=True)
    path = wp.save_tiny_dit(tmp_path / "i2v.safetensors", **kw)
    with wp.registered(path, **kw):
        pipe = wp.from_pretrained(wp.model_config(path=path), torch_dtype=torch.float32)
    wp.attach_standins(pipe)
    pipe.image_encoder = wp.ImageEncoder()
    return pipe


def test_guidance_swaps_only_the_text(i2v_pipe):
    from PIL import Image

    rec = wp.Recorder(i2v_pipe)
    wp.call(
        i2v_pipe, negative_prompt="blurry", input_image=Image.new("RGB", (48, 32), (200, 30, 30)), height=32,
        width=48, num_frames=9, num_inference_steps=1, cfg_scale=5.0, seed=0,
    )  # fmt: skip
    positive, negative = rec.calls
    assert positive["y"] is negative["y"] and positive["clip_feature"] is negative["clip_feature"]  # shared
    assert tuple(positive["y"].shape) == (1, 20, 3, 4, 6) and tuple(positive["clip_feature"].shape) == (1, 257, 1280)
    assert not torch.equal(positive["context_tensor"], negative["context_tensor"])  # prompt vs negative prompt


def test_clip_image_encoder_gives_257_tokens_of_width_1280():
    """``WanImageEncoder.encode_image`` runs the ViT-H/14 tower at 224 px (``use_31_block``): 1 + 16 x 16 tokens."""
    clip = wp.module("models.wan_video_image_encoder")
    model = clip.clip_xlm_roberta_vit_h_14(
        pretrained=False, return_transforms=False, dtype=torch.float32, device="meta"
    )
    assert (model.image_size, model.patch_size) == (224, 14)
    with torch.no_grad():
        tokens = model.visual(torch.empty(1, 3, 224, 224, device="meta"), use_31_block=True)
    assert tuple(tokens.shape) == (1, 1 + (224 // 14) ** 2, 1280) == (1, 257, 1280)


def test_the_pipeline_tokenizer_pads_and_cuts_to_512(tmp_path, monkeypatch):
    """``from_pretrained`` builds ``HuggingfaceTokenizer(seq_len=512)``: every prompt becomes 512 ids and a mask."""
    tokenizers = pytest.importorskip("tokenizers")
    from transformers import PreTrainedTokenizerFast

    words = ["<pad>", "<unk>", "a", "cat", "on", "the", "moon"]
    core = tokenizers.Tokenizer(tokenizers.models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", unk_token="<unk>").save_pretrained(tmp_path)
    encoder = wp.module("models.wan_video_text_encoder")
    monkeypatch.setattr(encoder.ftfy, "fix_text", lambda text: text, raising=False)  # ftfy is not installed here
    pipe = wp.from_pretrained(tokenizer_config=wp.model_config(path=str(tmp_path)))
    ids, mask = pipe.tokenizer("a cat on the moon", return_mask=True, add_special_tokens=True)
    assert tuple(ids.shape) == tuple(mask.shape) == (1, 512) and int(mask.sum()) == 5
    ids, mask = pipe.tokenizer("a cat " * 400, return_mask=True, add_special_tokens=True)  # 800 words: cut
    assert tuple(ids.shape) == (1, 512) and int(mask.sum()) == 512
