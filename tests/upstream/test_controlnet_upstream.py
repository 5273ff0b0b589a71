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

from infralens.adapters import TinyControlNet, TinyUNet

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
