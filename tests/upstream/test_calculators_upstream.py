"""infralens.calculators against diffusers and DiffSynth-Studio: the facts the Calculators page relies on.

* token counts: the DiTs' patch sizes (constructor defaults), FLUX's 2x2 packing,
  Wan 2.2 TI2V-5B's patch (DiffSynth-Studio's config for it), and the UNets'
  first self-attention, measured with hooks on tiny UNets;
* the attention sizes and pipeline defaults the page's tables use;
* the CFG rule, ``do_classifier_free_guidance``, evaluated on stand-ins;
* the int4 group size default and a real grouped-int4 layer's bytes.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from types import SimpleNamespace

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from diffusers import (  # noqa: E402
    CogVideoXTransformer3DModel,
    FluxPipeline,
    FluxTransformer2DModel,
    HunyuanVideoPipeline,
    HunyuanVideoTransformer3DModel,
    LTXVideoTransformer3DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
    WanPipeline,
    WanTransformer3DModel,
)

from infralens.calculators import DEFAULT_INT4_GROUP, PATCH, cfg_cost, latent_tokens, weight_memory  # noqa: E402
from infralens.diffusion import latent_shape  # noqa: E402

from ._diffsynth import package_dir  # noqa: E402
from ._tiny import tiny_sd_pipeline  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def defaults(fn) -> dict:
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()}


def as_patch(size, size_t) -> tuple[int, int, int]:
    return (size_t or 1, size, size)


def test_dit_patch_sizes_are_the_constructor_defaults():
    assert PATCH["wan2.1"] == tuple(defaults(WanTransformer3DModel)["patch_size"])
    d = defaults(HunyuanVideoTransformer3DModel)
    assert PATCH["hunyuanvideo"] == as_patch(d["patch_size"], d["patch_size_t"])
    d = defaults(CogVideoXTransformer3DModel)  # patch_size_t None: CogVideoX 1.0 does not patch time
    assert PATCH["cogvideox"] == as_patch(d["patch_size"], d["patch_size_t"])
    d = defaults(LTXVideoTransformer3DModel)
    assert PATCH["ltxvideo"] == as_patch(d["patch_size"], d["patch_size_t"])
    assert PATCH["sd3"] == as_patch(defaults(SD3Transformer2DModel)["patch_size"], None)


@pytest.mark.parametrize(("height", "width"), [(1024, 1024), (768, 1360)])
def test_flux_tokens_are_what_the_pipeline_packs(height, width):
    z = torch.zeros(latent_shape("flux", height=height, width=width))  # (B, C, H', W')
    B, C, H, W = z.shape
    packed = FluxPipeline._pack_latents(z, B, C, H, W)  # (B, N, 4C)
    assert packed.shape[1] == latent_tokens("flux", height=height, width=width).tokens
    assert defaults(FluxTransformer2DModel)["patch_size"] == 1  # the 2x2 happens in the pipeline


def test_wan22_ti2v_5b_patch_from_diffsynth():
    """DiffSynth-Studio's model registry lists the TI2V-5B DiT (the one on the 16x VAE) with patch (1, 2, 2)."""
    lines = (package_dir() / "configs" / "model_configs.py").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "Wan2.2-TI2V-5B" in line and "diffusion_pytorch_model" in line)
    kwargs_line = next(line for line in lines[start:] if '"extra_kwargs"' in line)
    kwargs = ast.literal_eval(kwargs_line.split(":", 1)[1].strip().rstrip(","))
    assert kwargs["in_dim"] == kwargs["out_dim"] == latent_shape("wan2.2", height=704, width=1280, frames=121)[1]
    assert tuple(kwargs["patch_size"]) == PATCH["wan2.2"]


def self_attention_lengths(down_block_types: tuple[str, ...], latent: tuple[int, ...]) -> list[int]:
    """Run a tiny UNet with these down blocks on a latent; return the sequence length of every self-attention."""
    up = tuple(t.replace("Down", "Up") for t in reversed(down_block_types))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=latent[-1],
        in_channels=latent[1],
        out_channels=latent[1],
        block_out_channels=(8,) * len(down_block_types),
        layers_per_block=1,
        down_block_types=down_block_types,
        up_block_types=up,
        cross_attention_dim=12,
        attention_head_dim=4,
        norm_num_groups=4,
    ).eval()
    lengths: list[int] = []
    for name, module in unet.named_modules():
        if name.endswith("attn1"):  # self-attention of a transformer block: (B, N, C) in
            module.register_forward_pre_hook(lambda mod, args: lengths.append(args[0].shape[1]))
    with torch.no_grad():
        unet(torch.randn(latent), 10, encoder_hidden_states=torch.randn(latent[0], 3, 12))
    return lengths


def released_sdxl_down_blocks() -> tuple[str, ...]:
    """SDXL's UNet down blocks, as DiffSynth-Studio hard-codes them for the released checkpoint."""
    tree = ast.parse((package_dir() / "models" / "stable_diffusion_xl_unet.py").read_text())
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "SDXLUNet2DConditionModel")
    init = next(n for n in cls.body if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    names = [a.arg for a in init.args.args][-len(init.args.defaults) :]
    return ast.literal_eval(init.args.defaults[names.index("down_block_types")])


@pytest.mark.parametrize("family", ["sd", "sdxl"])
def test_unet_tokens_are_the_largest_self_attention(family):
    blocks = (
        defaults(UNet2DConditionModel)["down_block_types"]  # diffusers' defaults are SD 1.x's
        if family == "sd"
        else released_sdxl_down_blocks()
    )
    height = width = 8 * 2 ** len(blocks)  # a latent every down block can halve
    t = latent_tokens(family, height=height, width=width)
    lengths = self_attention_lengths(tuple(blocks), t.latent)
    assert lengths and max(lengths) == t.tokens


def test_attention_sizes_used_on_the_page():
    for cls, heads, head_dim in [
        (WanTransformer3DModel, 40, 128),
        (HunyuanVideoTransformer3DModel, 24, 128),
        (FluxTransformer2DModel, 24, 128),
    ]:
        d = defaults(cls)
        assert (d["num_attention_heads"], d["attention_head_dim"]) == (heads, head_dim), cls.__name__
    assert defaults(FluxPipeline.__call__)["max_sequence_length"] == 512


@pytest.mark.parametrize("w", [None, 0.0, 1.0, 1.0001, 3.5, 7.5])
def test_cfg_rule_is_do_classifier_free_guidance(w):
    scale = 1.0 if w is None else w  # no guidance: the pipelines' scale at or below 1
    wan = WanPipeline.do_classifier_free_guidance.fget(SimpleNamespace(_guidance_scale=scale))
    sd = StableDiffusionPipeline.do_classifier_free_guidance.fget(
        SimpleNamespace(_guidance_scale=scale, unet=SimpleNamespace(config=SimpleNamespace(time_cond_proj_dim=None)))
    )
    sd3 = StableDiffusion3Pipeline.do_classifier_free_guidance.fget(SimpleNamespace(_guidance_scale=scale))
    assert bool(wan) == bool(sd) == bool(sd3) == cfg_cost(steps=1, guidance_scale=w).guided


def test_cfg_doubles_the_unet_samples_in_a_real_pipeline():

    pipe = tiny_sd_pipeline()
    samples: list[int] = []
    pipe.unet.register_forward_hook(lambda mod, args, out: samples.append(args[0].shape[0]))
    for w in (1.0, 7.5):
        samples.clear()
        pipe(
            prompt_embeds=torch.randn(1, 5, 12),
            negative_prompt_embeds=torch.randn(1, 5, 12),
            guidance_scale=w,
            num_inference_steps=3,
            height=16,
            width=16,
            output_type="latent",
        )
        assert sum(samples) == cfg_cost(steps=3, guidance_scale=w).calls


def test_pipeline_defaults_in_the_cfg_table():
    expected = {  # pipeline: (num_inference_steps, the scale that switches CFG on)
        StableDiffusionPipeline: (50, "guidance_scale", 7.5),
        StableDiffusionXLPipeline: (50, "guidance_scale", 5.0),
        StableDiffusion3Pipeline: (28, "guidance_scale", 7.0),
        WanPipeline: (50, "guidance_scale", 5.0),
        FluxPipeline: (28, "true_cfg_scale", 1.0),
        HunyuanVideoPipeline: (50, "true_cfg_scale", 1.0),
    }
    for cls, (steps, name, scale) in expected.items():
        d = defaults(cls.__call__)
        assert (d["num_inference_steps"], d[name]) == (steps, scale), cls.__name__
    # FLUX and HunyuanVideo feed guidance_scale to the transformer instead (guidance-distilled)
    assert defaults(FluxPipeline.__call__)["guidance_scale"] == 3.5
    assert defaults(HunyuanVideoPipeline.__call__)["guidance_scale"] == 6.0


def test_int4_group_default_is_autoround_s():
    from diffusers.quantizers.quantization_config import AutoRoundConfig

    assert defaults(AutoRoundConfig.__init__)["group_size"] == DEFAULT_INT4_GROUP


def test_grouped_int4_layer_bytes():
    """diffusers' Nunchaku AWQ W4A16 layer: packed int4 weights, one 16-bit scale and zero point per 64 weights.

    Its module imports a kernel package from the Hub, so the class is compiled on its own from the source.
    """
    path = Path(diffusers.__file__).parent / "quantizers" / "nunchaku" / "utils.py"
    tree = ast.parse(path.read_text())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AWQW4A16Linear")
    namespace = {"torch": torch, "nn": torch.nn}
    exec(compile(ast.Module([cls], []), str(path), "exec"), namespace)
    in_features, out_features = 512, 64
    with torch.device("meta"):
        layer = namespace["AWQW4A16Linear"](in_features, out_features, bias=False, group_size=64)
    stored = sum(p.numel() * p.element_size() for p in layer.parameters())
    ours = weight_memory(params=in_features * out_features, dtype="int4", group_size=64, zero_points=True)
    assert stored == ours.total_bytes
