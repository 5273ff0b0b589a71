"""Lab 09 (diffsynth) facts against the real packages: control windows, weights and the combined residual.

* diffusers: a real tiny ``StableDiffusionControlNetPipeline`` with a
  ``MultiControlNetModel`` of two nets calls *every* net at *every* step; the
  ``conditioning_scale`` each receives is ``control_schedule``'s row for that
  step (weight inside the window, 0 outside).
* DiffSynth-Studio: ``MultiControlNet.forward`` of the FLUX.1 pipeline
  (compiled alone from ``pipelines/flux_image.py``) runs exactly the nets that
  ``diffsynth_control_active`` says are on, scales them by ``scale`` and sums
  them; ``ControlNetInput`` defaults to ``start=1.0, end=0.0``. The Qwen-Image
  blockwise version widens both ends by 1e-4; on windows given to two decimals
  it selects the same steps.
"""

from __future__ import annotations

import ast
import warnings
from types import SimpleNamespace

import pytest
import torch

from infralens.adapters import ControlWindow, control_schedule, diffsynth_control_active

from ._diffsynth import package_dir
from ._tiny import tiny_sd_unet

pytestmark = pytest.mark.upstream


def tiny_controlnet_pipeline(num_nets: int):
    diffusers = pytest.importorskip("diffusers")
    from diffusers.models.controlnets.multicontrolnet import MultiControlNetModel

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        unet = tiny_sd_unet()
        vae = diffusers.AutoencoderKL(
            block_out_channels=(8, 8),
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
            latent_channels=4,
            norm_num_groups=4,
        ).eval()
        nets = [diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)).eval()]
        nets += [diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(4, 8)).eval()]
    calls = []
    for k, net in enumerate(nets[:num_nets]):
        original = net.forward

        def recording(*args, _k=k, _original=original, **kwargs):
            calls.append((_k, kwargs["conditioning_scale"]))
            return _original(*args, **kwargs)

        net.forward = recording
    pipe = diffusers.StableDiffusionControlNetPipeline(
        vae=vae,
        text_encoder=None,
        tokenizer=None,
        unet=unet,
        controlnet=MultiControlNetModel(nets[:num_nets]),
        scheduler=diffusers.DDIMScheduler(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe, calls


@pytest.mark.parametrize(
    ("steps", "windows"),
    [
        (10, [("canny", 1.0, 0.0, 0.5), ("depth", 0.6, 0.2, 1.0)]),
        (7, [("a", 0.8, 0.1, 0.6), ("b", 1.5, 0.3, 0.95)]),
        (10, [("short", 1.0, 0.0, 0.05), ("late", 0.5, 0.85, 1.0)]),  # the first never applies
    ],
)
def test_diffusers_runs_every_net_every_step_with_the_scheduled_scale(steps, windows):
    pipe, calls = tiny_controlnet_pipeline(len(windows))
    controls = [ControlWindow(*w) for w in windows]
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pipe(
            prompt_embeds=torch.randn(1, 5, 12),
            negative_prompt_embeds=torch.randn(1, 5, 12),
            image=[image] * len(controls),
            num_inference_steps=steps,
            height=16,
            width=16,
            controlnet_conditioning_scale=[c.conditioning_scale for c in controls],
            control_guidance_start=[c.control_guidance_start for c in controls],
            control_guidance_end=[c.control_guidance_end for c in controls],
            output_type="latent",
        )
    assert len(calls) == steps * len(controls)  # no net is ever skipped
    seen = torch.tensor([scale for _, scale in calls]).view(steps, len(controls))
    assert [k for k, _ in calls] == list(range(len(controls))) * steps
    assert torch.allclose(seen, control_schedule(controls, steps), atol=1e-6)


def _compile_method(relative: str, cls: str, name: str):
    """One method of one class, compiled alone with annotations dropped (they name classes we do not import)."""
    tree = ast.parse((package_dir() / relative).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    for arg in [*item.args.args, *item.args.kwonlyargs]:
                        arg.annotation = None
                    item.returns = None
                    namespace: dict = {"torch": torch}
                    exec(compile(ast.Module([item], []), relative, "exec"), namespace)
                    return namespace[name]
    raise LookupError(f"{cls}.{name} not found in diffsynth/{relative}")


def test_diffsynth_control_input_defaults():
    tree = ast.parse((package_dir() / "utils/controlnet/controlnet_input.py").read_text())
    fields = {
        node.target.id: ast.literal_eval(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.AnnAssign) and node.value is not None and isinstance(node.value, ast.Constant)
    }
    assert fields["scale"] == 1.0 and fields["start"] == 1.0 and fields["end"] == 0.0
    assert diffsynth_control_active(7).all()  # our defaults: every step


@pytest.mark.parametrize(
    ("steps", "inputs"),
    [
        (10, [(1.0, 1.0, 0.5), (0.6, 0.8, 0.0)]),
        (10, [(1.0, 1.0, 0.85), (2.0, 0.5, 0.5)]),  # a one-point window is inclusive
        (1, [(1.0, 1.0, 0.0), (1.0, 0.5, 0.0)]),  # one step: progress is 0
        (13, [(0.7, 0.9, 0.3), (1.0, 0.25, 0.0), (0.2, 1.0, 0.75)]),
    ],
)
def test_diffsynth_flux_multicontrolnet_runs_only_active_nets(steps, inputs):
    forward = _compile_method("pipelines/flux_image.py", "MultiControlNet", "forward")
    runs = []

    def process_single_controlnet(controlnet_input, conditioning, **kwargs):
        runs.append((kwargs["step"], controlnet_input.controlnet_id))
        r = conditioning * controlnet_input.scale
        return [r], [2 * r]

    stand_in = SimpleNamespace(process_single_controlnet=process_single_controlnet)
    controls = [SimpleNamespace(controlnet_id=j, scale=s, start=a, end=b) for j, (s, a, b) in enumerate(inputs)]
    conditionings = [torch.full((1, 2), float(j + 1)) for j in range(len(inputs))]
    active = torch.stack([diffsynth_control_active(steps, start=a, end=b) for _, a, b in inputs], dim=1)  # (N, K)
    for i in range(steps):
        res, single = forward(stand_in, conditionings, controls, i, steps, step=i)
        on = [j for j in range(len(inputs)) if active[i, j]]
        assert [j for step, j in runs if step == i] == on  # exactly the active nets ran
        if not on:
            assert res is None and single is None
        else:
            expected = sum(inputs[j][0] * conditionings[j] for j in on)
            assert torch.allclose(res[0], expected) and torch.allclose(single[0], 2 * expected)


def test_diffsynth_qwen_blockwise_tolerance_selects_the_same_steps_on_two_decimal_windows():
    blockwise = _compile_method("pipelines/qwen_image.py", "QwenImageBlockwiseMultiControlNet", "blockwise_forward")
    for steps in (4, 7, 10, 20, 30):
        for hi in range(0, 101, 5):
            for lo in range(0, hi + 1, 5):
                start, end = hi / 100, lo / 100
                ran = []
                model = SimpleNamespace(blockwise_forward=lambda image, cond, block_id, ran=ran: ran.append(1) or cond)
                stand_in = SimpleNamespace(models=[model])
                control = SimpleNamespace(controlnet_id=0, scale=1.0, start=start, end=end)
                for i in range(steps):
                    ran.clear()
                    blockwise(stand_in, None, [torch.ones(1)], [control], i, steps, 0)
                    assert bool(ran) == bool(diffsynth_control_active(steps, start=start, end=end)[i]), (
                        steps,
                        start,
                        end,
                        i,
                    )
