"""Lab 05 facts against the real packages: Wan's image condition and the widths of its condition paths.

* ``image_condition`` builds the same ``y`` (4 mask channels, then the
  normalised latent of "image + zero frames") as diffusers'
  ``WanImageToVideoPipeline.prepare_latents`` (run on a stand-in ``self`` with a
  tiny ``AutoencoderKLWan``) and as DiffSynth-Studio's
  ``WanVideoUnit_ImageEmbedderVAE.process`` (compiled alone, run on a stand-in
  pipeline).
* DiffSynth-Studio's model registry gives Wan's DiTs ``in_dim = 16`` for text
  to video and ``16 + 4 + 16 = 36`` for image-conditioned models, a text width
  of 4096 and patches of (1, 2, 2); its Wan tokenizer pads to 512 tokens and
  its CLIP projection reads 1280-wide features.
"""

from __future__ import annotations

import ast
import warnings
from types import SimpleNamespace

import pytest
import torch

from infralens.diffusion import LATENT_SCALING
from infralens.video import first_frame_mask, image_condition

from ._diffsynth import package_dir

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


def _method(relative: str, cls: str, name: str, **globals_):
    tree = ast.parse((package_dir() / relative).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    namespace = {"torch": torch, **globals_}
                    exec(compile(ast.Module([item], []), relative, "exec"), namespace)
                    return namespace[name]
    raise LookupError(f"{cls}.{name} not in diffsynth/{relative}")


def test_matches_diffsynth_image_embedder():
    process = _method("pipelines/wan_video.py", "WanVideoUnit_ImageEmbedderVAE", "process", WanVideoPipeline=object)
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


def _wan_registry() -> list[dict]:
    tree = ast.parse((package_dir() / "configs/model_configs.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "wan_series":
            return ast.literal_eval(node.value)
    raise LookupError("wan_series not found")


def _comments_by_hash() -> dict[str, str]:
    """The '# Example: ModelConfig(model_id=...)' comment above each registry entry, by model hash."""
    lines = (package_dir() / "configs/model_configs.py").read_text().splitlines()
    found, last = {}, ""
    for line in lines:
        if "# Example:" in line:
            last = line
        elif '"model_hash"' in line:
            found[line.split('"')[3]] = last
    return found


def test_wan_dit_channel_and_text_widths():
    comments = _comments_by_hash()
    dits = [
        (comments[e["model_hash"]], e["extra_kwargs"])
        for e in _wan_registry()
        if e["model_name"] == "wan_video_dit" and e.get("extra_kwargs", {}).get("in_dim")
    ]
    by_model = {c.split('model_id="')[1].split('"')[0]: kw for c, kw in dits if 'model_id="' in c}
    assert by_model["Wan-AI/Wan2.1-T2V-14B"]["in_dim"] == 16
    assert by_model["Wan-AI/Wan2.1-T2V-1.3B"]["in_dim"] == 16
    assert by_model["Wan-AI/Wan2.1-FLF2V-14B-720P"]["in_dim"] == 16 + 4 + 16
    assert by_model["Wan-AI/Wan2.1-FLF2V-14B-720P"]["has_image_input"] is True  # CLIP tokens too
    i2v22 = by_model["Wan-AI/Wan2.2-I2V-A14B"]
    assert i2v22["in_dim"] == 36 and i2v22["require_clip_embedding"] is False  # channel concat only
    for _, kw in dits:
        assert kw["text_dim"] == 4096
        assert list(kw["patch_size"]) == [1, 2, 2]


def test_tokenizer_length_and_clip_width():
    wan = ast.parse((package_dir() / "pipelines/wan_video.py").read_text())
    seq_lens = {
        kw.value.value
        for node in ast.walk(wan)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "HuggingfaceTokenizer"
        for kw in node.keywords
        if kw.arg == "seq_len"
    }
    assert seq_lens == {512}
    dit = ast.parse((package_dir() / "models/wan_video_dit.py").read_text())
    widths = {
        node.args[0].value
        for node in ast.walk(dit)
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "MLP" and node.args
    }
    assert widths == {1280}
