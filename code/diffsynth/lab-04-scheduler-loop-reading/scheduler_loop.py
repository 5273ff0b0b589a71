"""Lab 04 · Scheduler Loop Reading. Run: python scheduler_loop.py

The flow-matching loop as DiffSynth-Studio runs it for Wan: the scheduler
builds N sigmas (evenly spaced, then shifted towards noise), and each step
calls the denoiser once (twice with classifier-free guidance) and takes one
Euler step. The latent is the only state carried from step to step.
"""

import torch

from infralens.diffusion import flow_sample, flow_sigmas, step_cost
from infralens.nets import GaussianVelocity, TinyVideoDiT

# [1] Setup / contract
N, shift = 10, 5.0  # num_inference_steps, sigma_shift (__call__: 50, 5)
sigmas = flow_sigmas("Wan", N, shift=shift)  # (N,) from 1 down, 0 excluded
grid = torch.linspace(1, 0, N + 1)[:-1]  # the even grid before the shift
assert torch.allclose(sigmas, shift * grid / (1 + (shift - 1) * grid))
timesteps = sigmas * 1000  # float32; DiffSynth's DiT gets torch_dtype
g = torch.Generator().manual_seed(0)
noise = torch.randn(2, 16, 3, 4, 6, generator=g)  # (B, C, F', H', W')
point = GaussianVelocity(mean=0.5, std=0.0)  # exact v when all data is 0.5

# [2] Main transition
latents = noise.clone()  # sigma_0 = 1: pure noise
calls = 0
for i, sigma in enumerate(sigmas.tolist()):
    sigma_next = sigmas[i + 1].item() if i + 1 < N else 0.0
    t = torch.full((2,), 1000 * sigma)  # (B,) timestep for this step
    v = point(latents, t)  # one denoiser call: predicted velocity
    calls += 1
    latents = latents + (sigma_next - sigma) * v  # the Euler step
# Gaussian data N(0.5, 0.5^2): the paths bend, so Euler needs steps
curved = GaussianVelocity(mean=0.5, std=0.5)
exact = curved.exact_sample(noise)  # where the exact ODE lands
errors = {
    n: (flow_sample(curved, noise, flow_sigmas("Wan", n)) - exact).abs()
    for n in (1, 2, 5, 10, 50)
}  # |error| against the exact answer, by number of steps

# [3] Interview hook
dit = TinyVideoDiT(latent_channels=16, text_dim=32)  # a real small DiT
text = torch.randn(2, 7, 32, generator=g)  # (B, L, D_text) prompt
empty = torch.zeros(2, 7, 32)  # (B, L, D_text) empty negative prompt


def run(n, w):  # a whole sampling run: n steps, guidance scale w
    sigmas_n = flow_sigmas("Wan", n)
    return flow_sample(
        dit, noise, sigmas_n, text, negative_text=empty, guidance_scale=w
    )


cost = {
    (n, w): step_cost(lambda n=n, w=w: run(n, w), dit)
    for n in (10, 20)
    for w in (1.0, 5.0)
}  # calls and FLOPs of a whole sampling run
# [end]

if __name__ == "__main__":
    print(f"Wan template, N = {N}, shift = {shift}")
    print(f"  {'i':>2} {'grid':>6} {'sigma':>7} {'timestep':>9}")
    for i in range(N):
        s, t = sigmas[i].item(), timesteps[i].item()
        print(f"  {i:>2} {grid[i].item():>6.3f} {s:>7.4f} {t:>9.2f}")
    print("  (the last step goes from sigma_9 to 0)")

    err = (latents - 0.5).abs().max().item()
    print(f"\nPoint-mass data: {calls} calls, max |x - 0.5| = {err:.1e}")
    print("Gaussian data N(0.5, 0.5^2), Euler error against the exact ODE:")
    for n, e in errors.items():
        print(f"  {n:>3} steps  max |error| = {e.max().item():.4f}")

    print("\nCost of a sampling run on TinyVideoDiT")
    print(f"  {'steps':>5} {'cfg':>4} {'calls':>6} {'FLOPs':>14}")
    for (n, w), c in cost.items():
        print(f"  {n:>5} {w:>4} {c.calls:>6} {c.flops:>14,}")
