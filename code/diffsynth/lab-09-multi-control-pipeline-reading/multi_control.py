"""Lab 09 · Multi-Control Pipeline Reading.

Run: python multi_control.py

Two controls (an edge map and a depth map) steer one sampling loop.
Each has a weight and a window over the steps; at every step the
denoiser receives the sum of weight * residual over the controls that
are on.
"""

import torch

from infralens.adapters import (
    ControlWindow,
    MultiControlNet,
    TinyControlNet,
    combine_control_residuals,
    control_schedule,
    diffsynth_control_active,
    format_control_schedule,
)
from infralens.diffusion import flow_euler_step, flow_sigmas
from infralens.nets import TinyUNet


def control_net(unet: TinyUNet, seed: int) -> TinyControlNet:
    """A ControlNet for unet whose zero modules have been 'trained'."""
    net = TinyControlNet.from_denoiser(unet, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.zero_modules():
            for p in module.parameters():
                p.normal_(std=0.1, generator=g)
    return net


# [1] Setup / contract
N = 10  # denoising steps
sigmas = flow_sigmas("FLUX.1", N)  # (N,) DiffSynth's FLUX.1 template
timesteps = 1000 * sigmas  # (N,) what the denoiser is told
controls = [  # diffusers' terms: weight, start and end as step fractions
    ControlWindow("canny", 1.0, 0.0, 0.5),  # layout: first half only
    ControlWindow("depth", 0.6, 0.2, 1.0),  # geometry: 20% to the end
]
unet = TinyUNet(in_channels=4, width=8, num_blocks=2)  # the denoiser
unet.requires_grad_(False)  # frozen
nets = [control_net(unet, seed=1), control_net(unet, seed=2)]
g = torch.Generator().manual_seed(0)
images = [torch.rand(1, 3, 128, 128, generator=g) for _ in nets]  # pixels
noise = torch.randn(1, 4, 16, 16, generator=g)  # (B, C, H, W) at sigma=1

# [2] Main transition
schedule = control_schedule(controls, N)  # (N, K): weight * keep(i)
canny = controls[0]
s, e = canny.control_guidance_start, canny.control_guidance_end
keep = [1.0 - float(i / N < s or (i + 1) / N > e) for i in range(N)]
assert torch.equal(schedule[:, 0], torch.tensor(keep))  # canny's column
multi = MultiControlNet(nets)
x_all, x_active = noise, noise  # two loops: run every net / only those on
calls = {"every net, every step": 0, "only nets that are on": 0}
for i, t in enumerate(timesteps):
    scales = schedule[i].tolist()  # [lambda_j * kappa_j(i)] this step
    sigma_next = sigmas[i + 1].item() if i + 1 < N else 0.0
    # diffusers: every ControlNet runs; a net that is off gets scale 0
    down, mid = multi(x_all, t.view(1), images, scales)
    v = unet(x_all, t.view(1), down, mid)  # (B, C, H, W) velocity
    x_all = flow_euler_step(x_all, v, sigmas[i].item(), sigma_next)
    calls["every net, every step"] += len(nets)
    # DiffSynth: a net that is off is skipped; the sum is the same
    res = [None] * len(nets)
    for j, net in enumerate(nets):
        if scales[j] != 0:
            d, m = net(x_active, t.view(1), images[j])  # at weight 1
            res[j] = [*d, m]
            calls["only nets that are on"] += 1
    *down, mid = combine_control_residuals(res, scales)  # sum_j w_j r_j
    v = unet(x_active, t.view(1), down, mid)
    x_active = flow_euler_step(x_active, v, sigmas[i].item(), sigma_next)

# [3] Interview hook
same_result = torch.allclose(x_all, x_active, atol=1e-5)
# DiffSynth spells the same windows as progress from 1 (first) to 0 (last)
diffsynth = {
    "canny": diffsynth_control_active(N, start=1.0, end=0.5),
    "depth": diffsynth_control_active(N, start=0.8, end=0.0),
}
agree = all(
    torch.equal(diffsynth[c.name], schedule[:, j] != 0)
    for j, c in enumerate(controls)
)
# a window narrower than one step: diffusers never applies it
short = control_schedule([ControlWindow("pose", 1.0, 0.0, 0.05)], N)
short_ds = diffsynth_control_active(N, start=1.0, end=0.95)
# [end]

if __name__ == "__main__":
    print(f"{N} steps, FLUX.1 template; weight per control, '-' = off\n")
    print(format_control_schedule(controls, N, timesteps))

    print("\nControlNet forward passes over the loop")
    for how, n in calls.items():
        print(f"  {how:<24} {n:>3}")
    print(f"same final latent either way: {same_result}")

    print("\nDiffSynth: (start=1.0, end=0.5) and (start=0.8, end=0.0)")
    for name, active in diffsynth.items():
        steps = [i for i, on in enumerate(active.tolist()) if on]
        print(f"  {name:<6} active at steps {steps}")
    print(f"  same steps as the diffusers windows: {agree}")

    print("\nA window shorter than one step, (0.0, 0.05) / (1.0, 0.95):")
    n_diffusers = int((short != 0).sum())
    n_diffsynth = int(short_ds.sum())
    print(f"  diffusers applies it at {n_diffusers} steps")
    print(f"  DiffSynth applies it at {n_diffsynth} step (step 0)")
