"""What diffusers' memory switches do, run on tiny random pipelines (diffuser Lab 10, with Lab 06's offload order).

* ``vae.enable_tiling()`` tiles only latents larger than ``config.sample_size``
  allows, and a decode reads ``tile_latent_min_size``, not ``tile_sample_min_size``;
  ``vae.enable_slicing()`` splits only a batch of more than one;
* the three offload methods install three kinds of hooks, on different units;
  model offload calls the components in ``model_cpu_offload_seq`` order;
* moving an offloaded pipeline with ``.to()`` raises (sequential) or warns and
  undoes the saving (model offload);
* the SDXL pipelines read the VAE's ``force_upcast``; ``StableDiffusionPipeline`` does not.
"""

from __future__ import annotations

import logging
from itertools import groupby

import pytest

diffusers = pytest.importorskip("diffusers")
accelerate = pytest.importorskip("accelerate")
torch = pytest.importorskip("torch")

from . import _tiny_pipelines as tiny  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def decoder_calls(vae, z) -> tuple[list[tuple[int, int]], torch.Tensor]:
    calls: list[tuple[int, int]] = []
    hook = vae.decoder.register_forward_hook(lambda m, args, out: calls.append(tuple(args[0].shape[-2:])))
    with torch.no_grad():
        image = vae.decode(z).sample
    hook.remove()
    return calls, image


@pytest.mark.parametrize(("side", "tiles"), [(16, 1), (20, 4)])
def test_vae_tiling_acts_only_above_sample_size(side, tiles):
    """A VAE with sample_size 32 pixels (16 latent cells) tiles a 20x20 latent, and leaves a 16x16 one whole."""
    torch.manual_seed(0)
    vae = tiny.tiny_kl_vae(sample_size=32)
    assert vae.tile_latent_min_size == 16  # sample_size / 2 (one downsampling)
    z = torch.randn(1, 4, side, side)  # (B, C, h, w)
    _, whole = decoder_calls(vae, z)
    vae.enable_tiling()
    calls, tiled = decoder_calls(vae, z)
    assert len(calls) == tiles
    assert torch.equal(tiled, whole) == (tiles == 1)  # tiled output differs from the whole decode


def test_the_decode_threshold_is_tile_latent_min_size_not_tile_sample_min_size():
    """To tile a decode at or below sample_size, lower tile_latent_min_size; tile_sample_min_size alone does nothing."""
    torch.manual_seed(0)
    vae = tiny.tiny_kl_vae(sample_size=32)  # 16 latent cells, vae_scale_factor 2
    vae.enable_tiling()
    z = torch.randn(1, 4, 16, 16)  # (B, C, h, w): the size the VAE was built for
    vae.tile_sample_min_size = 16  # the pixel threshold: read by encode, not by decode's condition
    assert len(decoder_calls(vae, z)[0]) == 1
    vae.tile_latent_min_size = 8  # the latent threshold decode checks (with the pixel size kept at 2x it)
    assert len(decoder_calls(vae, z)[0]) > 1


def test_vae_slicing_splits_only_a_batch():
    torch.manual_seed(0)
    vae = tiny.tiny_kl_vae()
    vae.enable_slicing()
    assert [len(decoder_calls(vae, torch.randn(b, 4, 8, 8))[0]) for b in (1, 3)] == [1, 3]


def offload_hooks(pipe) -> dict[str, tuple[set[str], set[str]]]:
    """Per component: the accelerate hook types (``_hf_hook``) and diffusers hook types (``_diffusers_hook``)."""
    found = {}
    for name in ("unet", "vae"):
        modules = list(getattr(pipe, name).modules())
        accel = {type(m._hf_hook).__name__ for m in modules if hasattr(m, "_hf_hook")}
        ours = {
            type(h).__name__ for m in modules if hasattr(m, "_diffusers_hook") for h in m._diffusers_hook.hooks.values()
        }
        found[name] = (accel, ours)
    return found


@pytest.mark.parametrize(
    ("method", "accel", "ours"),
    [
        ("enable_model_cpu_offload", {"CpuOffload"}, set()),
        ("enable_sequential_cpu_offload", {"AlignDevicesHook"}, set()),
        ("enable_group_offload", set(), {"GroupOffloadingHook"}),
    ],
)
def test_offload_methods_install_different_hooks(method, accel, ours):
    pipe = tiny.sd_pipeline(vae=tiny.tiny_kl_vae())
    if method == "enable_group_offload":
        pipe.enable_group_offload(onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1)
    else:
        getattr(pipe, method)(device="cpu")  # "cpu" stands in for the accelerator
    assert offload_hooks(pipe) == {"unet": (accel, ours), "vae": (accel, ours)}


def test_sequential_offload_moves_every_module_with_its_own_parameters():
    """The unit sequential offload streams is a leaf with weights (a Linear, a Conv2d), not a block."""
    pipe = tiny.sd_pipeline()
    pipe.enable_sequential_cpu_offload(device="cpu")
    with_weights = {n for n, m in pipe.unet.named_modules() if any(True for _ in m.parameters(recurse=False))}
    streamed = {n for n, m in pipe.unet.named_modules() if getattr(getattr(m, "_hf_hook", None), "offload", False)}
    assert streamed == with_weights
    assert all(not any(True for _ in m.parameters(recurse=False)) for m in pipe.unet.down_blocks)


@pytest.mark.parametrize(
    ("name", "order"),
    [
        ("StableDiffusionPipeline", ["CLIPTextModel x2", "UNet2DConditionModel x3"]),
        ("WanPipeline", ["UMT5EncoderModel x2", "WanTransformer3DModel x6"]),
    ],
)
def test_model_offload_calls_components_in_model_cpu_offload_seq_order(name, order):
    pipe = tiny.BUILD[name]()
    seq = type(pipe).model_cpu_offload_seq
    assert seq == {"StableDiffusionPipeline": "text_encoder->image_encoder->unet->vae",
                   "WanPipeline": "text_encoder->transformer->transformer_2->vae"}[name]  # fmt: skip
    seen: list[str] = []
    original = accelerate.hooks.CpuOffload.pre_forward

    def spy(self, module, *args, **kwargs):
        seen.append(type(module).__name__)
        return original(self, module, *args, **kwargs)

    pipe.enable_model_cpu_offload(device="cpu")
    accelerate.hooks.CpuOffload.pre_forward = spy
    try:
        tiny.count_work(pipe, guidance_scale=5.0)  # 3 steps with CFG; the text encoder runs for both prompts
    finally:
        accelerate.hooks.CpuOffload.pre_forward = original
    assert [f"{k} x{len(list(g))}" for k, g in groupby(seen)] == order


def test_moving_an_offloaded_pipeline_to_the_gpu():
    """``.to("cuda")`` after sequential offload raises; after model offload it warns, then moves everything.

    The checks run before any copy, so they are seen on a machine without a GPU (where the move itself then fails).
    """
    sequential = tiny.sd_pipeline()
    sequential.enable_sequential_cpu_offload(device="cpu")
    with pytest.raises(ValueError, match="sequential model offloading"):
        sequential.to("cuda")
    model = tiny.sd_pipeline()
    model.enable_model_cpu_offload(device="cpu")
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = diffusers.utils.logging.get_logger("diffusers.pipelines.pipeline_utils")
    logger.addHandler(handler)
    try:
        model.to("cuda")  # on a GPU machine: succeeds, every component now resident
    except (AssertionError, RuntimeError):
        assert not torch.cuda.is_available()  # "Torch not compiled with CUDA enabled", after the warning
    finally:
        logger.removeHandler(handler)
    assert any("memory gains from offloading are likely to be lost" in r for r in records)


def hot_fp16_vae(force_upcast: bool):
    """A tiny fp16 VAE whose decoder activations overflow float16 (as SDXL's VAE does at real sizes)."""
    torch.manual_seed(0)
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8,), down_block_types=("DownEncoderBlock2D",), up_block_types=("UpDecoderBlock2D",),
        latent_channels=4, norm_num_groups=4, force_upcast=force_upcast,
    ).eval()  # fmt: skip
    with torch.no_grad():
        vae.decoder.conv_in.weight.mul_(3e4)  # activations near 1e5 > 65504, the float16 maximum
    return vae.to(torch.float16)


@pytest.mark.parametrize(
    ("name", "force_upcast", "finite"),
    [
        ("StableDiffusionXLPipeline", True, True),
        ("StableDiffusionXLPipeline", False, False),
        ("StableDiffusionPipeline", True, False),  # the flag is not read: still overflows
    ],
)
def test_sdxl_reads_force_upcast_and_sd_does_not(name, force_upcast, finite):
    pipe = tiny.BUILD[name]()
    pipe.vae = hot_fp16_vae(force_upcast)
    pipe.register_modules(vae=pipe.vae)
    pipe.vae_scale_factor = 1
    pipe.image_processor = diffusers.image_processor.VaeImageProcessor(vae_scale_factor=1)
    pipe.to(torch.float16)
    with torch.no_grad():
        image = pipe(
            prompt="a red fox", num_inference_steps=2, guidance_scale=1.0, output_type="pt", height=8, width=8,
            generator=torch.Generator().manual_seed(0),
        ).images  # fmt: skip
    assert bool(torch.isfinite(image).all()) is finite
    assert pipe.vae.dtype == torch.float16  # SDXL upcasts for the decode and casts back
