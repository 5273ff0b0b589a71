"""infralens.calculators against diffusers and DiffSynth-Studio: the facts the Calculators page relies on.

* token counts: the DiTs' patch sizes (constructor defaults), FLUX's 2x2 packing,
  Wan 2.2 TI2V-5B's patch (DiffSynth-Studio's config for it), and the UNets'
  first self-attention, measured with hooks on tiny UNets;
* the attention sizes and pipeline defaults the page's tables use;
* the FLOPs of one DiT call, against torch's FLOP counter on diffusers' own
  ``WanTransformer3DModel`` (meta device: no weights, no memory);
* the CFG rule, ``do_classifier_free_guidance``, evaluated on stand-ins, and
  the denoiser calls of real tiny pipelines with their default scales;
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
    HunyuanVideoTransformer3DModel,
    LTXVideoTransformer3DModel,
    SD3Transformer2DModel,
    StableDiffusion3Pipeline,
    StableDiffusionPipeline,
    UNet2DConditionModel,
    WanPipeline,
    WanTransformer3DModel,
)

from infralens.calculators import (  # noqa: E402
    DEFAULT_INT4_GROUP,
    DIFFUSERS_CFG_DEFAULTS,
    DIFFUSERS_TEXT_TOKENS,
    PATCH,
    attention_cost,
    cfg_cost,
    dit_flops,
    latent_tokens,
    pipeline_cfg_cost,
    weight_memory,
)
from infralens.diffusion import latent_shape  # noqa: E402
from infralens.families import get_model  # noqa: E402

from . import _tiny_pipelines as tiny  # noqa: E402
from ._diffsynth import import_submodule, load_module  # noqa: E402
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
    registry = load_module("configs/model_configs.py").wan_series  # the registry DiffSynth's loader reads
    channels = latent_shape("wan2.2", height=704, width=1280, frames=121)[1]
    (ti2v,) = [
        entry["extra_kwargs"]
        for entry in registry
        if entry["model_name"] == "wan_video_dit"
        and entry.get("extra_kwargs", {}).get("in_dim") == entry.get("extra_kwargs", {}).get("out_dim") == channels
    ]  # fmt: skip
    assert tuple(ti2v["patch_size"]) == PATCH["wan2.2"]


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
    """SDXL's UNet down blocks: those of DiffSynth-Studio's SDXL UNet, built (on the meta device) as it loads one."""
    module = import_submodule("models.stable_diffusion_xl_unet")
    with torch.device("meta"):
        unet = module.SDXLUNet2DConditionModel()
    return tuple(type(block).__name__ for block in unet.down_blocks)


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
    for name, tokens in DIFFUSERS_TEXT_TOKENS.items():  # FLUX 512, HunyuanVideo 256 (both joint), ...
        assert defaults(getattr(diffusers, name).__call__)["max_sequence_length"] == tokens, name


@pytest.mark.parametrize(("model", "request_"), [("wan2.1-t2v-14b", (64, 64, 5)), ("wan2.1-t2v-1.3b", (480, 832, 81))])
def test_dit_flops_match_the_flop_counter_on_wan(model, request_):
    """Every matrix product of diffusers' WanTransformer3DModel, counted by torch on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    height, width, frames = request_
    cfg = get_model(model).config
    kwargs = {"num_attention_heads": cfg["num_heads"], "attention_head_dim": cfg["head_dim"],
              "ffn_dim": cfg["ffn_dim"], "num_layers": cfg["num_layers"]}  # fmt: skip
    if model == "wan2.1-t2v-14b":
        kwargs = {}  # the constructor's defaults are the 14B model
    latent = latent_tokens("wan2.1", height=height, width=width, frames=frames).latent
    with torch.device("meta"):
        dit = WanTransformer3DModel(**kwargs).to(torch.bfloat16)
        x = torch.empty(latent, dtype=torch.bfloat16)  # (B, C, F', H', W')
        text = torch.empty(1, DIFFUSERS_TEXT_TOKENS["WanPipeline"], 4096, dtype=torch.bfloat16)  # (B, L, D_text)
        t = torch.tensor([500])  # (B,)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        dit(x, t, text)
    ours = dit_flops(model, height=height, width=width, frames=frames)
    assert counter.get_total_flops() == ours.total
    attention = counter.get_flop_counts()["Global"][torch.ops.aten.bmm]  # on meta, SDPA runs as two bmm
    assert attention == ours.attention


def test_the_flop_counter_counts_nothing_in_cpu_sdpa():
    """Checking a fused model's FLOPs with the counter on CPU gives 0 for attention: count on meta, or by formula."""
    from torch.utils.flop_counter import FlopCounterMode

    q, k, v = torch.randn(3, 2, 4, 96, 16).unbind(0)  # (B, h, N, d)
    with FlopCounterMode(display=False) as fused:
        torch.nn.functional.scaled_dot_product_attention(q, k, v)
    with FlopCounterMode(display=False) as explicit:
        (q @ k.transpose(-2, -1) / 4).softmax(-1) @ v
    assert fused.get_total_flops() == 0
    assert explicit.get_total_flops() == attention_cost(tokens=96, heads=4, head_dim=16, batch=2).flops


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


@pytest.mark.parametrize("name", list(DIFFUSERS_CFG_DEFAULTS))
def test_pipeline_defaults_in_the_cfg_table(name):
    d = defaults(getattr(diffusers, name).__call__)
    ours = DIFFUSERS_CFG_DEFAULTS[name]
    assert (d["num_inference_steps"], d["guidance_scale"]) == (ours["steps"], ours["guidance_scale"])
    assert d.get("true_cfg_scale") == ours["true_cfg_scale"]  # None: no such argument, guidance_scale switches CFG


@pytest.mark.parametrize(
    ("name", "call", "encoder_calls", "batches"),
    [
        ("FluxPipeline", {}, 2, [1, 1, 1]),  # guidance_scale=3.5 by default: embedded, one pass per step
        ("FluxPipeline", {"true_cfg_scale": 4.0}, 2, [1, 1, 1]),  # no negative prompt: still no CFG
        ("FluxPipeline", {"true_cfg_scale": 4.0, "negative_prompt": "blue car"}, 4, [1] * 6),
        ("WanPipeline", {}, 2, [1] * 6),  # guidance_scale=5.0: two passes of batch 1
        ("StableDiffusionPipeline", {}, 2, [2, 2, 2]),  # guidance_scale=7.5: one doubled batch
    ],
)
def test_denoiser_samples_with_default_scales(name, call, encoder_calls, batches):
    """Real tiny pipelines called with their default scales: the samples through the denoiser per generation."""
    encoders, seen = tiny.count_work(tiny.BUILD[name](), **call)
    assert (encoders, seen) == (encoder_calls, batches)
    overrides = {k: v for k, v in call.items() if k == "true_cfg_scale" and "negative_prompt" in call}
    assert sum(seen) == pipeline_cfg_cost(name, steps=3, **overrides).calls


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


@pytest.mark.parametrize(("scheduler", "calls"), [("EulerDiscreteScheduler", 4), ("HeunDiscreteScheduler", 7)])
def test_second_order_schedulers_call_the_denoiser_2n_minus_1_times(scheduler, calls):
    """Heun evaluates the denoiser twice per step except the last: 2N - 1 calls for N steps, each a CFG batch."""
    pipe = tiny_sd_pipeline()
    pipe.scheduler = getattr(diffusers, scheduler).from_config(pipe.scheduler.config)
    seen: list[int] = []
    pipe.unet.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    pipe(
        prompt_embeds=torch.randn(1, 5, 12), negative_prompt_embeds=torch.randn(1, 5, 12), guidance_scale=7.5,
        num_inference_steps=4, height=16, width=16, output_type="latent",
    )  # fmt: skip
    assert seen == [2] * calls


@pytest.mark.parametrize(("patch_size_t", "tokens"), [(None, 4 * 2 * 3), (2, 2 * 2 * 3)])
def test_cogvideox_patchifies_time_only_when_patch_size_t_is_set(patch_size_t, tokens):
    """The default (CogVideoX 1.0) is one token per 2x2 cell of each latent frame; patch_size_t=2 halves the frames."""
    from diffusers.models.embeddings import CogVideoXPatchEmbed

    embed = CogVideoXPatchEmbed(
        patch_size=2, patch_size_t=patch_size_t, in_channels=4, embed_dim=8, text_embed_dim=8,
        use_positional_embeddings=False, use_learned_positional_embeddings=False,
    )  # fmt: skip
    text, video = torch.zeros(1, 5, 8), torch.zeros(1, 4, 4, 4, 6)  # (B, L, D) and (B, F', C, H', W')
    assert embed(text, video).shape == (1, 5 + tokens, 8)
