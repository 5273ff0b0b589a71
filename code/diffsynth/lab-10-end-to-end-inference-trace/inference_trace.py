"""Lab 10 · End-to-End Inference Trace. Run: python inference_trace.py

The Lab 01 config run end to end: load, encode the prompt, denoise
with guidance on Wan's flow-matching sigmas, decode. A tracer records
the shape, dtype and device of every tensor that crosses a boundary;
the trace is then checked against what the config predicts.
"""

from pathlib import Path

import torch

from infralens.diffusion import (
    cfg_combine,
    denormalize_latents,
    flow_euler_step,
    shift_sigmas,
)
from infralens.pipelines import (
    Tracer,
    load_components,
    load_config,
    run_text_to_video,
)

# [1] Setup / contract
HERE = Path(__file__).resolve().parent
LAB01 = HERE.parent / "lab-01-pipeline-config-reading"
config = load_config(LAB01 / "pipeline_config.yaml")
rt, specs = config.runtime, config.components
modules = load_components(config)
te, dit, vae = modules["text_encoder"], modules["dit"], modules["vae"]
prompt, negative_prompt = "a red fox running through snow", ""

# [2] Main transition
tracer = Tracer()
video = run_text_to_video(
    config, prompt, negative_prompt, modules=modules, tracer=tracer
)
# the same run in plain torch: every line is a boundary in the trace
with torch.no_grad():
    ctx = te.encode(prompt).to(specs["dit"].dtype)  # (1, L, D)
    neg = te.encode(negative_prompt).to(specs["dit"].dtype)  # (1, L, D)
    g = torch.Generator().manual_seed(rt.seed)
    shape = config.latent_shape  # (B, C, F', H', W')
    x = torch.randn(shape, generator=g)  # float32 noise on the CPU
    x = x.to(rt.dtype)
    N = rt.num_inference_steps
    sigmas = shift_sigmas(torch.linspace(1, 0, N + 1)[:-1], rt.shift)
    sigmas = torch.cat([sigmas, torch.zeros(1)])  # sigma_N = 0
    for i in range(N):
        t = torch.full((1,), 1000 * sigmas[i].item(), dtype=rt.dtype)
        v_neg, v_pos = dit(x, t, neg), dit(x, t, ctx)  # two DiT calls
        v = cfg_combine(v_neg, v_pos, rt.guidance_scale)
        s, s_next = sigmas[i].item(), sigmas[i + 1].item()
        x = flow_euler_step(x, v, s, s_next)  # x + (s_next - s) v
    z = denormalize_latents(x, config.family)  # (1, C, F', H', W')
    by_hand = vae.decode(z.to(specs["vae"].dtype))  # (1, 3, F, H, W)
assert torch.allclose(by_hand, video, atol=1e-5)

# [3] Interview hook
# the trace, checked against what the config predicts
shapes = {(r.stage, r.boundary): r.shape for r in tracer.rows}
loop_latents = shapes["denoising loop", "dit in: latents"]
assert loop_latents == config.latent_shape  # (B, C, F', H', W')
pixels = (1, 3, rt.num_frames, rt.height, rt.width)  # (B, 3, F, H, W)
assert shapes["decoding", "vae out: video"] == pixels
dit_calls = sum(r.boundary == "dit out" for r in tracer.rows)
assert dit_calls == config.denoiser_calls
# floating-point values not in the runtime dtype: each one is a choice
off_dtype = {
    (r.stage, r.boundary): r.dtype
    for r in tracer.rows
    if r.dtype.is_floating_point and r.dtype != rt.dtype
}
# [end]

if __name__ == "__main__":
    print(f"Prompt: {prompt!r}")
    size = f"{rt.num_frames} frames of {rt.height}x{rt.width}"
    steps = f"{rt.num_inference_steps} steps"
    print(f"Config: {config.family}, {size}, {steps}, ", end="")
    print(f"guidance {rt.guidance_scale}\n")
    print(tracer.table())
    print("\nChecks against the config")
    print(f"  loop latent {loop_latents} == config.latent_shape")
    print(f"  video {tuple(video.shape)} == (1, 3, F, H, W)")
    print(f"  DiT calls {dit_calls} == config.denoiser_calls")
    err = (by_hand - video).abs().max().item()
    print(f"  plain torch == run_text_to_video (max |diff| {err:.1e})")
    print(f"\nFloat values not in the runtime dtype ({rt.dtype})")
    for (stage, boundary), dtype in off_dtype.items():
        print(f"  {stage:<15} {boundary:<22} {dtype}")
    lo, hi = video.min().item(), video.max().item()
    print(f"\nVideo values in [{lo:.2f}, {hi:.2f}] (random weights:")
    print("  the shapes are the lesson, the pixels are noise)")
