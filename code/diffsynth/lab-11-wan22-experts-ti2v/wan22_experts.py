"""Lab 11 · Wan 2.2 Experts and TI2V. Run: python wan22_experts.py

Wan 2.2 ships two ways to make a video. A14B runs two denoisers of the same
14B shape over one flow-matching loop: a high-noise expert until the loop's
timestep falls below a boundary, then a low-noise expert. TI2V-5B runs one
smaller denoiser on a 48-channel latent whose first frame is the input image,
held clean by per-token timesteps and written back after every step.
"""

import math

import torch

from infralens.diffusion import (
    expert_switch_step,
    flow_sample,
    flow_sigmas,
    latent_shape,
    pixel_multiple,
)
from infralens.families import get_model
from infralens.memory import plan_offload, wan22_a14b_components
from infralens.nets import GaussianVelocity, TinyVideoDiT
from infralens.video import first_frame_timesteps, fused_first_frame_sample

# [1] Setup / contract
# released settings per task: boundary, shift, steps, guidance per expert
settings = {
    task: get_model(f"wan2.2-{task}-a14b")["inference"]
    for task in ("t2v", "i2v")
}
experts = {  # high-noise expert first; same shape, different weights
    name: TinyVideoDiT(latent_channels=16, text_dim=48, seed=seed).eval()
    for name, seed in (("dit", 0), ("dit2", 1))
}
g = torch.Generator().manual_seed(0)
noise = torch.randn(1, 16, 3, 4, 6, generator=g)  # (B, C, F', h, w)
text = torch.randn(1, 7, 48, generator=g)  # (B, L, D_text)

# [2] Main transition
ran = []  # (timestep, expert) in call order


def two_experts(latents, timesteps, text, *, boundary):
    """DiffSynth's rule: dit2 from the first t < boundary * 1000 on."""
    t = timesteps.max().item()
    name = "dit" if t >= boundary * 1000 else "dit2"
    ran.append((t, name))
    return experts[name](latents, timesteps, text)  # (B, C, F', h, w)


t2v = settings["t2v"]
steps, shift = t2v["sample_steps"], t2v["sample_shift"]
video = flow_sample(
    lambda x, t, c: two_experts(x, t, c, boundary=t2v["boundary"]),
    noise,
    flow_sigmas("Wan", steps, shift=shift),
    text,
)  # one expert per step, one call per step (no guidance here)
switch = {
    task: expert_switch_step(
        s["sample_steps"], s["boundary"], shift=s["sample_shift"]
    )
    for task, s in settings.items()
}
assert [name for _, name in ran].count("dit") == switch["t2v"]
# offload replays the call order: whole models moved in when first needed
parts = wan22_a14b_components("t2v")  # text_encoder, dit, dit2, vae
schedule = ["text_encoder", *(name for _, name in ran), "vae"]
plans = {
    how: plan_offload(parts, schedule, strategy=how)
    for how in ("resident", "model")
}
# TI2V-5B: 48 latent channels, 16x in space, 2x2 patches -> 32 px steps
ti2v = get_model("wan2.2-ti2v-5b")
z_shape = latent_shape(ti2v.family, height=704, width=1280, frames=121)
tokens = first_frame_timesteps(999.0, torch.empty(z_shape))  # (N,)
field = GaussianVelocity(mean=0.5, std=0.0)  # exact: data is the point 0.5
image = torch.full((1, 48, 1, 4, 6), -1.0)  # (B, C, 1, h, w) image latent
seen = []  # (min t, max t) of every call: frame 0 against the rest


def tiny_ti2v(latents, timesteps, text):
    seen.append((timesteps.min().item(), timesteps.max().item()))
    return field(latents, timesteps.max().reshape(1))  # (B, C, F', h, w)


small = torch.randn(1, 48, 3, 4, 6, generator=g)  # (B, C, F', h, w)
out = fused_first_frame_sample(tiny_ti2v, small, image, flow_sigmas("Wan", 5))

# [3] Interview hook
one = parts[1].total_bytes  # one expert's bf16 weights
both = one + parts[2].total_bytes  # what the two checkpoints hold
peak = {how: plan.peak_bytes for how, plan in plans.items()}
at_switch = plans["model"].stages[1 + switch["t2v"]]  # dit2 comes in
# [end]

if __name__ == "__main__":
    print("Wan 2.2 A14B: two experts, one switch at t < boundary * 1000")
    head = ("task", "steps", "shift", "boundary", "high", "low", "guidance")
    print("  {:<5}{:>6}{:>7}{:>10}{:>6}{:>5}  {}".format(*head))
    for task, s in settings.items():
        k, n = switch[task], s["sample_steps"]
        low, high = s["sample_guide_scale"]  # released as (low, high)
        row = (task, n, s["sample_shift"], s["boundary"], k, n - k)
        print("  {:<5}{:>6}{:>7}{:>10}{:>6}{:>5}".format(*row), end="")
        print(f"  high {high}, low {low}")
    k = switch["t2v"]
    print(f"\nt2v on two tiny experts: {steps} steps, switch at step {k}")
    for i in (k - 1, k):
        print(f"  step {i}: t = {ran[i][0]:7.2f} -> {ran[i][1]}")
    print(f"  output {tuple(video.shape)}")
    gib = 2**30
    print("\nExpert weights, bf16")
    print(f"  one expert                {one / gib:6.1f} GiB")
    print(f"  both experts              {both / gib:6.1f} GiB")
    print(f"  peak, all resident        {peak['resident'] / gib:6.1f} GiB")
    print(f"  peak, model offload       {peak['model'] / gib:6.1f} GiB")
    moved = at_switch.moved_bytes / gib
    print(f"  moved at the switch       {moved:6.1f} GiB (dit2, once)")
    print("\nTI2V-5B")
    step = pixel_multiple(ti2v.family)
    print(f"  704x1280, 121 frames -> {z_shape}; sizes step by {step} px")
    n0 = math.prod(z_shape[3:]) // 4
    print(f"  {tokens.numel():,} tokens: {n0:,} of frame 0 at t = 0")
    print(f"  calls (min t, max t): {[(round(a), round(b)) for a, b in seen]}")
    kept = torch.equal(out[:, :, :1], image)
    landed = torch.allclose(out[:, :, 1:], torch.full_like(out[:, :, 1:], 0.5))
    print(f"  frame 0 is the image: {kept}; the rest reached 0.5: {landed}")
