"""Lab 03 · Scheduler Reading. Run: python scheduler_notes.py

A scheduler is not a loop counter. set_timesteps picks which of the T
training timesteps the N inference steps visit, an Euler-type scheduler
rescales the model input, and a flow-matching scheduler works in sigmas.
Every table below is printed from the library's real tensors.
"""

import torch

from infralens.diffusion import (
    alphas_cumprod,
    dynamic_shift,
    euler_sigmas,
    flow_match_sigmas,
    inference_timesteps,
    make_betas,
    rescale_zero_terminal_snr,
    scale_model_input,
    shift_sigmas,
)

# [1] Setup / contract
T, N = 1000, 50  # training timesteps, inference steps
alpha_bar = alphas_cumprod(make_betas("linear"))  # (T,) training schedule
zero_snr = alphas_cumprod(rescale_zero_terminal_snr(make_betas("linear")))
configs = {  # name: (timestep_spacing, steps_offset)
    "leading": ("leading", 0),  # DDPM/DDIMScheduler default
    "leading+1": ("leading", 1),
    "trailing": ("trailing", 0),
    "linspace": ("linspace", 0),
}

# [2] Main transition
grids = {  # (N,) the training timesteps each config visits
    name: inference_timesteps(N, timestep_spacing=s, steps_offset=o)
    for name, (s, o) in configs.items()
}
# Euler discrete: default spacing linspace, timesteps not rounded
t_euler = inference_timesteps(  # (N,) float32
    N, timestep_spacing="linspace", discrete=False
)
sigmas = euler_sigmas(alpha_bar, t_euler)  # (N + 1,) sqrt((1-ab)/ab), 0
torch.manual_seed(0)
latents = torch.randn(1, 4, 64, 64) * sigmas[0]  # (B, C, H, W) x = s * eps
model_in = scale_model_input(latents, sigmas[0])  # (B, C, H, W)
# flow matching: sigma in [0, 1] and timesteps T * sigma
flow = {s: flow_match_sigmas(N, shift=s) for s in (1.0, 3.0, 5.0)}
# FLUX.1 passes its own sigmas and a shift from the packed token count
flux = {  # (N,) per image side in pixels: (side / 16) ** 2 tokens
    px: shift_sigmas(torch.linspace(1, 1 / N, N), dynamic_shift(px**2 // 256))
    for px in (512, 1024)
}

# [3] Interview hook
# DDIMScheduler.step takes prev = t - T // N whatever the spacing
lin = grids["linspace"].tolist()
listed = [*lin[1:], -1]  # the next timestep the loop will visit
by_rule = [t - T // N if t - T // N >= 0 else -1 for t in lin]
off = [(t, a, b) for t, a, b in zip(lin, listed, by_rule, strict=True)]
off = [x for x in off if x[1] != x[2]]
# [end]

if __name__ == "__main__":
    print(f"Inference timesteps: N = {N} of T = {T} training timesteps")
    head = ("config", "first", "2nd", "last", "stride", "999?", "0?")
    print("  {:<10}{:>6}{:>6}{:>6}{:>8}{:>6}{:>5}".format(*head), end="")
    print(f"{'ab[first]':>10}{'zero-SNR':>10}")
    for name, ts in grids.items():
        first, second, last = ts[0].item(), ts[1].item(), ts[-1].item()
        stride = (first - last) / (N - 1)
        yes = {True: "yes", False: "no"}
        row = f"  {name:<10}{first:>6}{second:>6}{last:>6}{stride:>8.2f}"
        row += f"{yes[999 in ts]:>6}{yes[0 in ts]:>5}"
        ab, ab0 = alpha_bar[first].item(), zero_snr[first].item()
        print(row + f"{ab:>10.2e}{ab0:>10.2e}")

    print("\nEuler discrete: the loop carries x = x0 + sigma * eps")
    print(f"  {'step':>4}{'t':>9}{'sigma':>10}{'1/sqrt(s^2+1)':>15}")
    for i in (0, 1, 25, N - 1):
        t, s = t_euler[i].item(), sigmas[i].item()
        print(f"  {i:>4}{t:>9.2f}{s:>10.4f}{(s * s + 1) ** -0.5:>15.6f}")
    ends = [(s * s + 1) ** -0.5 for s in (sigmas[0], sigmas[N - 1])]
    same = torch.allclose(torch.stack(ends), alpha_bar[[999, 0]].sqrt())
    print(f"  1/sqrt(sigma^2+1) = sqrt(alpha_bar) at t = 999 and 0: {same}")
    print(f"  init_noise_sigma = {sigmas.max().item():.2f}: latents start")
    print(f"  with std {latents.std().item():.1f}; after scale_model_input")
    print(f"  the model sees std {model_in.std().item():.3f}")

    print(f"\nFlow matching sigmas (N = {N}); timesteps are {T} * sigma")
    cols = ("shift", "sigma[0]", "sigma[1]", "sigma[25]", "sigma[49]")
    cols += ("t[0]",)
    print("  {:>5}{:>10}{:>10}{:>11}{:>11}{:>8}".format(*cols))
    for shift, s in flow.items():
        row = f"  {shift:>5.1f}{s[0]:>10.4f}{s[1]:>10.4f}{s[25]:>11.4f}"
        print(row + f"{s[49]:>11.4f}{T * s[0].item():>8.1f}")
    for px, s in flux.items():
        row = f"  FLUX {px}x{px}: sigma[25] {s[25]:.4f}, last {s[-1]:.4f}"
        print(row + f" (shift e^mu = {dynamic_shift((px // 16) ** 2):.3f})")

    print("\nDDIMScheduler.step's previous timestep t - T // N on the")
    print("  linspace grid:", end="")
    print(f" {len(off)} of {N} steps jump to another timestep than")
    print("  the next one in the list, e.g. (t, next in list, t - 20):")
    print("  " + ", ".join(str(x) for x in off[:3]))
