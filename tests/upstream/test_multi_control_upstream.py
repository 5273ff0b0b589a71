"""Lab 09 (diffsynth) facts against the real packages: control windows, weights and the combined residual.

* diffusers: a real tiny ``StableDiffusionControlNetPipeline`` with a
  ``MultiControlNetModel`` of two nets calls *every* net at *every* step; the
  ``conditioning_scale`` each receives is ``control_schedule``'s row for that
  step (weight inside the window, 0 outside).
* DiffSynth-Studio: the FLUX.1 pipeline's ``MultiControlNet``, with stand-in
  nets, runs exactly the nets that ``diffsynth_control_active`` says are on,
  scales them by ``scale`` and sums them; ``ControlNetInput`` defaults to
  ``start=1.0, end=0.0``. The Qwen-Image blockwise version widens both ends by
  1e-4; on windows given to two decimals it selects the same steps.
* diffusers' SD ControlNet pipeline reads a PIL control image in [0, 1] and
  passes a tensor through unchanged.
* VACE, Wan's control branch: DiffSynth's ``WanVideoUnit_VACE`` builds the
  96-channel context ``vace_context`` builds, and ``model_fn_wan_video`` adds
  the hints after the blocks in ``vace_layers``, times ``vace_scale``, as
  ``inject_vace_hints`` does.
"""

from __future__ import annotations

import inspect
import warnings
from types import SimpleNamespace

import pytest
import torch

from infralens.adapters import (
    ControlWindow,
    control_schedule,
    diffsynth_control_active,
    inject_vace_hints,
    vace_context,
    vace_mask_latents,
)

from ._diffsynth_wan import diffsynth_module, wan_video
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


class _StandInControlNet(torch.nn.Module):
    """A ControlNet for DiffSynth's FLUX.1 MultiControlNet: residuals proportional to its conditioning."""

    def __init__(self, index: int, runs: list):
        super().__init__()
        self.index, self.runs = index, runs

    def forward(self, controlnet_conditioning, processor_id=None, step=None, **kwargs):
        self.runs.append((step, self.index))
        return [controlnet_conditioning.clone()], [2 * controlnet_conditioning]

    def blockwise_forward(self, image, conditioning, block_id):  # the Qwen-Image blockwise interface
        self.runs.append((None, self.index))
        return conditioning


def test_diffsynth_control_input_defaults():
    ControlNetInput = diffsynth_module("utils.controlnet.controlnet_input").ControlNetInput
    default = ControlNetInput()
    assert (default.scale, default.start, default.end) == (1.0, 1.0, 0.0)
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
    """DiffSynth's own MultiControlNet (FLUX.1 pipeline) with stand-in nets: which run, and the scaled sum."""
    MultiControlNet = diffsynth_module("pipelines.flux_image").MultiControlNet
    ControlNetInput = diffsynth_module("utils.controlnet.controlnet_input").ControlNetInput
    runs: list = []
    multi = MultiControlNet([_StandInControlNet(j, runs) for j in range(len(inputs))])
    controls = [ControlNetInput(controlnet_id=j, scale=s, start=a, end=b) for j, (s, a, b) in enumerate(inputs)]
    conditionings = [torch.full((1, 2), float(j + 1)) for j in range(len(inputs))]
    active = torch.stack([diffsynth_control_active(steps, start=a, end=b) for _, a, b in inputs], dim=1)  # (N, K)
    for i in range(steps):
        res, single = multi(conditionings, controls, i, steps, step=i)
        on = [j for j in range(len(inputs)) if active[i, j]]
        assert [j for step, j in runs if step == i] == on  # exactly the active nets ran
        if not on:
            assert res is None and single is None
        else:
            expected = sum(inputs[j][0] * conditionings[j] for j in on)
            assert torch.allclose(res[0], expected) and torch.allclose(single[0], 2 * expected)


def test_diffsynth_qwen_blockwise_tolerance_selects_the_same_steps_on_two_decimal_windows():
    Blockwise = diffsynth_module("pipelines.qwen_image").QwenImageBlockwiseMultiControlNet
    ControlNetInput = diffsynth_module("utils.controlnet.controlnet_input").ControlNetInput
    runs: list = []
    multi = Blockwise([_StandInControlNet(0, runs)])
    for steps in (4, 7, 10, 20, 30):
        for hi in range(0, 101, 5):
            for lo in range(0, hi + 1, 5):
                start, end = hi / 100, lo / 100
                control = ControlNetInput(controlnet_id=0, scale=1.0, start=start, end=end)
                expected = diffsynth_control_active(steps, start=start, end=end)
                for i in range(steps):
                    runs.clear()
                    multi.blockwise_forward(None, [torch.ones(1)], [control], i, steps, 0)
                    assert bool(runs) == bool(expected[i]), (steps, start, end, i)


def test_sd_controlnet_reads_pil_images_in_0_1_and_passes_tensors_unchanged():
    """diffusers' SD ControlNet pipeline: a PIL control image arrives in [0, 1]; a tensor in [-1, 1] passes as is."""
    PIL = pytest.importorskip("PIL.Image")
    pipe, _ = tiny_controlnet_pipeline(1)
    conds = []
    net = pipe.controlnet.nets[0]
    recording = net.forward
    net.forward = lambda *a, **kw: conds.append(kw["controlnet_cond"].clone()) or recording(*a, **kw)
    pil = PIL.fromarray((torch.arange(16 * 16 * 3) % 256).to(torch.uint8).reshape(16, 16, 3).numpy())
    signed = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for image in (pil, signed):
        conds.clear()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipe(prompt_embeds=torch.randn(1, 5, 12), negative_prompt_embeds=torch.randn(1, 5, 12), image=[image],
                 num_inference_steps=1, height=16, width=16, output_type="latent")  # fmt: skip
        cond = conds[0][:1]  # the conditional half of the guided batch
        if image is pil:
            assert cond.min() == 0 and cond.max() == 1  # [0, 1]: the VAE's [-1, 1] is not used here
        else:
            assert torch.equal(cond, signed)  # unchanged, no warning: a [-1, 1] tensor is read as it is


# --- VACE: Wan's multi-control in DiffSynth-Studio ------------------------------------------------------------


def _tiny_wan_vae():
    vae = diffsynth_module("models.wan_video_vae")
    real = vae.VideoVAE_
    vae.VideoVAE_ = lambda z_dim: real(dim=8, z_dim=z_dim)
    try:
        torch.manual_seed(0)
        return vae.WanVideoVAE()
    finally:
        vae.VideoVAE_ = real


def test_the_vace_unit_builds_inactive_reactive_and_unshuffled_mask_channels():
    """WanVideoUnit_VACE.process on a 9-frame control video and mask equals vace_context of the same pieces."""
    wv = wan_video()
    vae = _tiny_wan_vae()
    T, H, W = 9, 32, 48
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, H, W, generator=g) for _ in range(T)]
    masks = [torch.zeros(3, H, W) for _ in range(T)]
    for k, m in enumerate(masks):
        m[:, :, W // 2 :] = 1.0  # regenerate the right half
        m[:, : 8 * (k % 3), :] = 1.0  # and a band that changes with the frame

    def preprocess_video(video, min_value=-1, max_value=1):  # list of (3, H, W) in [0, 1] -> (1, 3, T, H, W)
        return torch.stack(video, dim=1).unsqueeze(0) * (max_value - min_value) + min_value

    pipe = SimpleNamespace(torch_dtype=torch.float32, device="cpu", vae=vae, preprocess_video=preprocess_video,
                           load_models_to_device=lambda names: None)  # fmt: skip
    with torch.no_grad():
        out = wv.WanVideoUnit_VACE().process(pipe, frames, masks, None, 0.7, H, W, T, False, (30, 52), (15, 26))
        video, mask = preprocess_video(frames), preprocess_video(masks, 0, 1)
        inactive = vae.encode(video * (1 - mask), device="cpu")
        reactive = vae.encode(video * mask, device="cpu")
    ours = vace_context(inactive, reactive, vace_mask_latents(mask[0, 0]))
    assert out["vace_context"].shape == ours.shape == (1, 96, 3, 4, 6)  # 16 + 16 + 64 channels
    assert torch.allclose(out["vace_context"], ours, atol=1e-6)
    assert out["vace_scale"] == 0.7  # one scale for the whole control


def _tiny_dit_and_vace(vace_layers=(0, 2)):
    dit = diffsynth_module("models.wan_video_dit")
    vace = diffsynth_module("models.wan_video_vace")
    torch.manual_seed(0)
    D, heads, ffn = 48, 2, 64  # head_dim 24: the 3-D RoPE splits it 8 + 8 + 8
    model = dit.WanModel(dim=D, in_dim=16, ffn_dim=ffn, out_dim=16, text_dim=24, freq_dim=32, eps=1e-6,
                         patch_size=(1, 2, 2), num_heads=heads, num_layers=4, has_image_input=False).eval()  # fmt: skip
    branch = vace.VaceWanModel(vace_layers=vace_layers, vace_in_dim=96, dim=D, num_heads=heads, ffn_dim=ffn).eval()
    return model, branch


def test_vace_hints_enter_after_the_listed_blocks_times_vace_scale():
    """model_fn_wan_video with a 4-block DiT and VaceWanModel(vace_layers=(0, 2)), against inject_vace_hints."""
    wv = wan_video()
    model, branch = _tiny_dit_and_vace()
    g = torch.Generator().manual_seed(1)
    latents, context = torch.randn(1, 16, 3, 4, 6, generator=g), torch.randn(1, 5, 24, generator=g)
    vace_context_ = torch.randn(1, 96, 3, 4, 6, generator=g)
    seen: dict = {}

    def keep_inputs(i):
        def hook(module, args):
            seen.setdefault("args", args) if i == 0 else None
            seen[f"in{i}"] = args[0].clone()

        return hook

    hooks = [b.register_forward_pre_hook(keep_inputs(i)) for i, b in enumerate(model.blocks)]
    hooks += [b.register_forward_hook(lambda m, a, o, i=i: seen.__setitem__(f"out{i}", o.clone()))
              for i, b in enumerate(model.blocks)]  # fmt: skip
    hooks.append(model.head.register_forward_pre_hook(lambda m, args: seen.__setitem__("head", args[0].clone())))
    runs = []
    hooks += [b.register_forward_hook(lambda m, a, o: runs.append(1)) for b in branch.vace_blocks]

    def call(scale, use_vace=True):
        seen.clear()
        with torch.no_grad():
            y = wv.model_fn_wan_video(dit=model, vace=branch if use_vace else None, latents=latents,
                                      timestep=torch.tensor([500.0]), context=context,
                                      vace_context=vace_context_ if use_vace else None, vace_scale=scale)  # fmt: skip
        jumps = [(seen[f"in{i + 1}"] - seen[f"out{i}"]).abs().max().item() for i in range(3)]
        return y, jumps, dict(seen)

    _, jumps1, s1 = call(1.0)
    assert len(runs) == 2  # one VACE block per entry of vace_layers, per call
    _, jumps_half, _ = call(0.5)
    y0, _, _ = call(0.0)
    y_none, _, _ = call(1.0, use_vace=False)
    assert jumps1[0] > 0 and jumps1[1] == 0 and jumps1[2] > 0  # hints only after blocks 0 and 2
    assert jumps_half[0] == pytest.approx(jumps1[0] / 2) and jumps_half[2] == pytest.approx(jumps1[2] / 2)
    assert torch.allclose(y0, y_none, atol=1e-6)  # vace_scale 0 is no control at all
    # the same hidden states from our loop, given DiffSynth's blocks and its branch's hints
    x, ctx, t_mod, freqs = s1["args"]
    with torch.no_grad():
        hints = branch(x, vace_context_, ctx, t_mod, freqs)
        ours = inject_vace_hints([lambda h, b=b: b(h, ctx, t_mod, freqs) for b in model.blocks], x, hints,
                                 vace_layers=branch.vace_layers, vace_scale=1.0)  # fmt: skip
    assert torch.allclose(ours, s1["head"], atol=1e-5)
    for h in hooks:
        h.remove()


def test_vace_layers_every_second_block_for_1_3b_and_every_fifth_for_14b():
    vace = diffsynth_module("models.wan_video_vace")
    assert vace.VaceWanModel().vace_layers == tuple(range(0, 30, 2))  # the default: the 1.3B model's 30 blocks
    configs = diffsynth_module("configs.model_configs")
    entries = [c for cs in vars(configs).values() if isinstance(cs, list) for c in cs
               if isinstance(c, dict) and c.get("model_name") == "wan_video_vace"]  # fmt: skip
    big = [c["extra_kwargs"] for c in entries if c.get("extra_kwargs", {}).get("dim") == 5120]
    assert big and {tuple(c["vace_layers"]) for c in big} == {tuple(range(0, 40, 5))}
    assert {c["vace_in_dim"] for c in big} == {96}


@pytest.mark.parametrize("refs", [0, 1, 2])
def test_each_vace_reference_image_adds_a_latent_frame_to_every_dit_call(refs):
    """Painted controls share one video; a reference image is one more latent frame, in the noise and the context."""
    wv = wan_video()
    vae = _tiny_wan_vae()
    T, H, W = 9, 32, 48
    g = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, H, W, generator=g) for _ in range(T)]
    masks = [torch.ones(3, H, W) for _ in range(T)]
    images = [torch.rand(3, H, W, generator=g) for _ in range(refs)] or None

    def preprocess_video(video, min_value=-1, max_value=1):  # list of (3, H, W) in [0, 1] -> (1, 3, T, H, W)
        return torch.stack(video, dim=1).unsqueeze(0) * (max_value - min_value) + min_value

    base = diffsynth_module("diffusion.base_pipeline").BasePipeline
    pipe = SimpleNamespace(torch_dtype=torch.float32, device="cpu", vae=vae, preprocess_video=preprocess_video,
                           load_models_to_device=lambda names: None)  # fmt: skip
    pipe.generate_noise = lambda shape, **kw: base.generate_noise(pipe, shape, **kw)
    with torch.no_grad():
        noise = wv.WanVideoUnit_NoiseInitializer().process(pipe, H, W, T, 0, "cpu", images, None)["noise"]
        out = wv.WanVideoUnit_VACE().process(pipe, frames, masks, images, 1.0, H, W, T, False, (30, 52), (15, 26))
    latent_frames = 1 + (T - 1) // 4
    assert noise.shape == (1, 16, latent_frames + refs, H // 8, W // 8)  # the DiT's sequence grows by refs frames
    assert out["vace_context"].shape == (1, 96, latent_frames + refs, H // 8, W // 8)


def test_wan_fun_control_video_is_concatenated_on_channels_without_weight_or_window():
    """WanVideoUnit_FunControl (the `control_video` argument): the control video's latent goes into y, which
    model_fn_wan_video concatenates to the noisy latent on channels; no scale, no start or end."""
    wv = wan_video()
    T, H, W = 9, 32, 48
    control = torch.randn(1, 16, 3, H // 8, W // 8, generator=torch.Generator().manual_seed(0))
    seen = {}

    def encode(video, device=None, tiled=None, tile_size=None, tile_stride=None):
        seen["video"] = video.shape
        return control

    pipe = SimpleNamespace(
        torch_dtype=torch.float32, device="cpu", vae=SimpleNamespace(encode=encode), dit=SimpleNamespace(in_dim=48),
        preprocess_video=lambda frames: torch.zeros(1, 3, len(frames), H, W), load_models_to_device=lambda names: None,
    )  # fmt: skip
    frames = [None] * T  # stand-ins for the PIL frames, preprocessed above
    latents = torch.zeros(1, 16, 3, H // 8, W // 8)
    out = wv.WanVideoUnit_FunControl().process(pipe, frames, T, H, W, False, None, None, None, None, latents)
    assert seen["video"] == (1, 3, T, H, W)
    y = out["y"]
    assert y.shape == (1, 48 - 16, 3, H // 8, W // 8)  # DiT input = 16 latent channels + y
    assert torch.equal(y[:, :16], control) and y[:, 16:].eq(0).all()
    params = inspect.signature(wv.WanVideoUnit_FunControl.process).parameters
    assert not {"scale", "control_scale", "start", "end"} & set(params)
