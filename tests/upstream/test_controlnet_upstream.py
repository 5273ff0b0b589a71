"""Lab 09 (diffuser) facts against diffusers: zero-initialised ControlNet, conditioning_scale, MultiControlNet sums.

A tiny random ``UNet2DConditionModel`` and ``ControlNetModel.from_unet``:

* the zero-initialised modules are the control embedding's ``conv_out``, every
  ``controlnet_down_blocks`` conv and ``controlnet_mid_block`` (what
  ``TinyControlNet.zero_modules`` lists), so a fresh ControlNet returns exact
  zeros and the UNet's output is unchanged bit for bit;
* ``conditioning_scale`` multiplies every residual;
* ``MultiControlNetModel`` adds the nets' scaled residuals;
* the UNet adds the residuals to its skips and mid block (a hand-built residual
  on one skip changes the output, zeros do not).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from infralens.adapters import TinyControlNet
from infralens.nets import TinyUNet

from ._tiny import tiny_sd_unet

pytestmark = pytest.mark.upstream


def tiny_unet_and_controlnet():
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = tiny_sd_unet()
        controlnet = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)).eval()
    return diffusers, unet, controlnet


def inputs():
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, 4, 8, 8, generator=g)
    text = torch.randn(2, 5, 12, generator=g)
    image = torch.rand(2, 3, 16, 16, generator=g)  # 2x the latent: the embedding has one stride-2 step here
    return sample, torch.tensor([900, 100]), text, image


def perturb(controlnet, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in controlnet.named_parameters():
            if name.startswith(
                ("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")
            ):
                p.normal_(std=0.1, generator=g)


def test_the_zero_initialised_modules_are_the_ones_tiny_controlnet_lists():
    _, _, controlnet = tiny_unet_and_controlnet()
    layers = (torch.nn.Conv2d, torch.nn.Linear)  # norms start at weight 1, bias 0 by default: not "zero modules"
    zero = {n for n, m in controlnet.named_modules() if isinstance(m, layers) and torch.count_nonzero(m.weight) == 0}
    expected = {f"controlnet_down_blocks.{k}" for k in range(len(controlnet.controlnet_down_blocks))}
    expected |= {"controlnet_mid_block", "controlnet_cond_embedding.conv_out"}
    assert zero == expected
    for name in expected:
        assert all(torch.count_nonzero(p) == 0 for p in controlnet.get_submodule(name).parameters())
    ours = TinyControlNet.from_denoiser(TinyUNet())
    assert [type(m).__name__ for m in ours.zero_modules()] == ["Conv2d"] * len(ours.zero_modules())
    assert ours.zero_modules()[0] is ours.controlnet_cond_embedding.conv_out


def test_fresh_controlnet_leaves_the_unet_output_bit_for_bit():
    _, unet, controlnet = tiny_unet_and_controlnet()
    sample, t, text, image = inputs()
    with torch.no_grad():
        down, mid = controlnet(sample, t, text, controlnet_cond=image, conditioning_scale=1.0, return_dict=False)
        assert all(torch.count_nonzero(r) == 0 for r in [*down, mid])
        plain = unet(sample, t, text).sample
        with_control = unet(
            sample, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
        ).sample
    assert torch.equal(plain, with_control)


def test_conditioning_scale_multiplies_every_residual():
    _, _, controlnet = tiny_unet_and_controlnet()
    perturb(controlnet, seed=2)
    sample, t, text, image = inputs()
    with torch.no_grad():
        d1, m1 = controlnet(sample, t, text, controlnet_cond=image, conditioning_scale=1.0, return_dict=False)
        d5, m5 = controlnet(sample, t, text, controlnet_cond=image, conditioning_scale=0.5, return_dict=False)
    assert all(torch.count_nonzero(r) > 0 for r in [*d1, m1])
    assert all(torch.allclose(a, 0.5 * b, atol=1e-6) for a, b in zip(d5, d1, strict=True))
    assert torch.allclose(m5, 0.5 * m1, atol=1e-6)


def test_multicontrolnet_sums_the_scaled_residuals():
    diffusers, _, first = tiny_unet_and_controlnet()
    _, _, second = tiny_unet_and_controlnet()
    perturb(first, seed=3)
    perturb(second, seed=4)
    multi = diffusers.models.controlnets.multicontrolnet.MultiControlNetModel([first, second])
    sample, t, text, image = inputs()
    images, scales = [image, image.flip(-1)], [1.0, 0.3]
    with torch.no_grad():
        down, mid = multi(sample, t, text, controlnet_cond=images, conditioning_scale=scales, return_dict=False)
        singles = [
            net(sample, t, text, controlnet_cond=im, conditioning_scale=s, return_dict=False)
            for net, im, s in zip((first, second), images, scales, strict=True)
        ]
    for k, r in enumerate(down):
        assert torch.allclose(r, singles[0][0][k] + singles[1][0][k], atol=1e-6)
    assert torch.allclose(mid, singles[0][1] + singles[1][1], atol=1e-6)


def test_unet_adds_a_residual_to_its_skip():
    _, unet, controlnet = tiny_unet_and_controlnet()
    sample, t, text, image = inputs()
    with torch.no_grad():
        down, mid = controlnet(sample, t, text, controlnet_cond=image, return_dict=False)
        bumped = [r.clone() for r in down]
        bumped[0] += 1.0  # a residual on the first skip only
        plain = unet(sample, t, text).sample
        out = unet(sample, t, text, down_block_additional_residuals=bumped, mid_block_additional_residual=mid).sample
    assert not torch.allclose(out, plain, atol=1e-4)


def test_guess_mode_scales_the_residuals_geometrically():
    """``guess_mode=True``: residual k of n + 1 is scaled by ``10 ** (-1 + k / n)`` times ``conditioning_scale``."""
    _, _, controlnet = tiny_unet_and_controlnet()
    perturb(controlnet, seed=5)
    sample, t, text, image = inputs()
    with torch.no_grad():
        plain = controlnet(sample, t, text, controlnet_cond=image, conditioning_scale=0.8, return_dict=False)
        guess = controlnet(
            sample, t, text, controlnet_cond=image, conditioning_scale=0.8, guess_mode=True, return_dict=False
        )
    residuals = [*plain[0], plain[1]]
    guessed = [*guess[0], guess[1]]
    n = len(residuals) - 1
    ratios = [float((g.norm() / r.norm()).item()) for g, r in zip(guessed, residuals, strict=True)]
    assert ratios == pytest.approx([10 ** (-1 + k / n) for k in range(n + 1)], rel=1e-5)  # 0.1 ... 1, mid last


def test_control_image_is_preprocessed_to_unit_range_and_a_signed_tensor_passes_unchanged():
    from PIL import Image

    from .test_multi_control_upstream import tiny_controlnet_pipeline

    pipe, _ = tiny_controlnet_pipeline(1)
    seen = []
    pipe.controlnet.nets[0].register_forward_hook(
        lambda module, args, kwargs, out: seen.append(kwargs["controlnet_cond"].clone()), with_kwargs=True
    )
    g = torch.Generator().manual_seed(0)
    pil = Image.fromarray((torch.rand(16, 16, 3, generator=g) * 255).to(torch.uint8).numpy())
    signed = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1  # what a VAE-style processor would give
    for image in (pil, signed):
        pipe(
            prompt_embeds=torch.randn(1, 5, 12, generator=g),
            image=[image],
            guidance_scale=1.0,
            num_inference_steps=1,
            height=16,
            width=16,
            output_type="latent",
        )
    from_pil, from_tensor = seen
    assert 0 <= from_pil.min() and from_pil.max() <= 1  # PIL 0..255 -> [0, 1], not [-1, 1]
    assert torch.allclose(from_tensor, signed)  # no check, no rescale: the negative half arrives as it is


@pytest.mark.parametrize(("repeat", "expected"), [(False, [0, 0, 1, 1]), (True, [0, 1, 0, 1])])
def test_flux_adds_controlnet_residuals_by_interval_or_by_cycle(repeat, expected):
    """Two residuals for four double-stream blocks: InstantX-style nets stretch them, XLabs-style ones cycle."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    flux = diffusers.FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=4, num_single_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=12, pooled_projection_dim=8, axes_dims_rope=(2, 2, 4), guidance_embeds=False,
    ).eval()  # fmt: skip
    outputs, inputs_ = [], []
    for block in flux.transformer_blocks:
        block.register_forward_hook(lambda m, a, kw, out: outputs.append(out[1]), with_kwargs=True)
        block.register_forward_pre_hook(lambda m, a, kw: inputs_.append(kw["hidden_states"]), with_kwargs=True)
    flux.single_transformer_blocks[0].register_forward_pre_hook(
        lambda m, a, kw: inputs_.append(kw["hidden_states"]), with_kwargs=True
    )
    samples = [torch.full((1, 16, 16), 10.0 * (k + 1)) for k in range(2)]  # residual k adds 10 (k + 1)
    with torch.no_grad():
        flux(
            torch.randn(1, 16, 16), encoder_hidden_states=torch.randn(1, 5, 12), pooled_projections=torch.randn(1, 8),
            timestep=torch.tensor([0.5]), img_ids=torch.zeros(16, 3), txt_ids=torch.zeros(5, 3),
            controlnet_block_samples=samples, controlnet_blocks_repeat=repeat,
        )  # fmt: skip
    added = [(nxt - out).mean().item() / 10 - 1 for out, nxt in zip(outputs, inputs_[1:], strict=True)]
    assert [round(a) for a in added] == expected


def test_the_default_control_embedding_downsamples_by_8_with_three_stride_2_convs():
    """``ControlNetModel()``'s defaults (SD 1.5 sizes, built on the meta device): pixels to the latent grid."""
    diffusers = pytest.importorskip("diffusers")
    with torch.device("meta"):
        embedding = diffusers.ControlNetModel().controlnet_cond_embedding
    strides = [m.stride[0] for m in embedding.modules() if isinstance(m, torch.nn.Conv2d)]
    assert strides.count(2) == 3 and set(strides) == {1, 2}  # 2 ** 3 = 8, the VAE's factor
    assert embedding(torch.empty(1, 3, 512, 512, device="meta")).shape[-2:] == (64, 64)


def flux_controlnet_pipeline(**controlnet_config):
    """``FluxControlNetPipeline`` of the tiny FLUX pipeline and a one-block ControlNet; the shapes its VAE encodes."""
    diffusers = pytest.importorskip("diffusers")
    from ._tiny import tiny_flux_pipeline

    base = tiny_flux_pipeline()
    controlnet = diffusers.FluxControlNetModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16, num_attention_heads=2,
        joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True, axes_dims_rope=(4, 4, 8),
        **controlnet_config,
    ).eval()  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe = diffusers.FluxControlNetPipeline(controlnet=controlnet, **base.components)
    pipe.set_progress_bar_config(disable=True)
    encoded = []
    encode = pipe.vae.encode
    pipe.vae.encode = lambda x, *args, **kwargs: encoded.append(tuple(x.shape)) or encode(x, *args, **kwargs)
    return pipe, encoded


@pytest.mark.filterwarnings("ignore::FutureWarning")  # FluxControlNetModel imports a deprecated FluxPosEmbed
def test_flux_controlnet_pipeline_vae_encodes_the_control_image_for_instantx_nets():
    """A FLUX ControlNet without ``input_hint_block`` (InstantX-style) receives the VAE's packed latent of the image."""
    pipe, encoded = flux_controlnet_pipeline()
    controlnet = pipe.controlnet
    assert controlnet.input_hint_block is None
    received = []
    controlnet.register_forward_hook(
        lambda m, args, kwargs, out: received.append(tuple(kwargs["controlnet_cond"].shape)), with_kwargs=True
    )
    with torch.no_grad():
        pipe(
            prompt_embeds=torch.randn(1, 5, 32), pooled_prompt_embeds=torch.randn(1, 32),
            control_image=torch.rand(1, 3, 16, 16), num_inference_steps=1, height=16, width=16, output_type="latent",
        )  # fmt: skip
    assert encoded == [(1, 3, 16, 16)]  # the control image, through the VAE
    assert received == [(1, 16, 16)]  # (B, tokens, 4 channels x 2x2): packed like the latent, not pixels


class _StopHereError(Exception):
    pass


@pytest.mark.filterwarnings("ignore::FutureWarning")  # FluxControlNetModel imports a deprecated FluxPosEmbed
def test_flux_controlnet_pipeline_hands_pixels_to_an_xlabs_net():
    """A FLUX ControlNet with ``input_hint_block`` (XLabs-style): no VAE for the control image, pixels in."""
    pipe, encoded = flux_controlnet_pipeline(conditioning_embedding_channels=16)
    controlnet = pipe.controlnet
    assert controlnet.input_hint_block is not None  # its own strided convolutions, pixels to the latent grid
    received = []

    def first_call(module, args, kwargs):  # what the pipeline hands over, then stop (the tiny sizes do not fit)
        received.append(tuple(kwargs["controlnet_cond"].shape))
        raise _StopHereError

    controlnet.register_forward_pre_hook(first_call, with_kwargs=True)
    with torch.no_grad(), pytest.raises(_StopHereError):
        pipe(
            prompt_embeds=torch.randn(1, 5, 32), pooled_prompt_embeds=torch.randn(1, 32),
            control_image=torch.rand(1, 3, 16, 16), num_inference_steps=1, height=16, width=16, output_type="latent",
        )  # fmt: skip
    assert encoded == []  # the VAE never sees the control image
    assert received == [(1, 3, 16, 16)]  # pixels, for the net's input_hint_block
