"""When a ControlNet does not run on the denoiser's batch: guess mode with CFG (diffusers 0.42.1, tiny modules).

Without guess mode ``StableDiffusionControlNetPipeline`` runs the ControlNet on the CFG-doubled batch and adds
its residuals to both halves. With ``guess_mode=True`` it runs on the conditional half only and concatenates
zeros for the unconditional half. The control image is expected in [0, 1] (its processor does not normalise).
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from .test_multi_control_upstream import tiny_controlnet_pipeline  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


@pytest.mark.parametrize("guess_mode", [False, True])
def test_guess_mode_runs_the_controlnet_on_the_conditional_half_only(guess_mode):
    pipe, _ = tiny_controlnet_pipeline(1)
    net = pipe.controlnet.nets[0]
    with torch.no_grad():
        for p in net.controlnet_mid_block.parameters():
            p.normal_()  # "trained": a fresh ControlNet adds exact zeros
    batches, uncond_mid = [], []
    net.register_forward_hook(
        lambda module, args, kwargs, out: batches.append(kwargs["controlnet_cond"].shape[0]), with_kwargs=True
    )
    pipe.unet.register_forward_hook(
        lambda module, args, kwargs, out: uncond_mid.append(kwargs["mid_block_additional_residual"][0].abs().sum()),
        with_kwargs=True,
    )
    g = torch.Generator().manual_seed(0)
    pipe(
        prompt_embeds=torch.randn(1, 5, 12, generator=g),
        negative_prompt_embeds=torch.randn(1, 5, 12, generator=g),
        image=[torch.rand(1, 3, 16, 16, generator=g)],
        guess_mode=guess_mode,
        guidance_scale=5.0,
        num_inference_steps=2,
        height=16,
        width=16,
        output_type="latent",
    )
    if guess_mode:
        assert batches == [1, 1] and all(v == 0 for v in uncond_mid)  # zeros for the unconditional row
    else:
        assert batches == [2, 2] and all(v > 0 for v in uncond_mid)  # both halves get residuals


def test_control_images_are_not_normalised_to_minus_one_one():
    pipe, _ = tiny_controlnet_pipeline(1)
    assert pipe.control_image_processor.config.do_normalize is False
    assert pipe.image_processor.config.do_normalize is True  # the img2img/VAE path does map [0, 1] to [-1, 1]
