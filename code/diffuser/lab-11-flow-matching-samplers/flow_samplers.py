"""Lab 11 · Flow Matching and Modern Samplers. Run: python flow_samplers.py

A flow model predicts the velocity eps - x0 of a straight path from data to
noise; a sampler integrates it from sigma = 1 down to 0. On data N(m, d^2)
the exact velocity and the exact end point are known, so the error of each
sampler (Euler, DPM-Solver++, UniPC, stepped as diffusers steps them with
flow sigmas) is measured, not guessed. Then the shifts of SD3 and FLUX.1-dev
decide which noise levels the loop visits (FLUX.1-schnell's config has none).
"""

import torch

from infralens.calculators import latent_tokens
from infralens.diffusion import (
    dynamic_shift,
    flow_match_sigmas,
    flow_multistep_sample,
    flow_solver_sigmas,
    karras_sigmas,
    shift_sigmas,
    solver_orders,
    v_target,
)
from infralens.nets import GaussianVelocity

# [1] Setup / contract
g = torch.Generator().manual_seed(0)
field = GaussianVelocity(mean=0.5, std=0.6)  # exact velocity, N(0.5, 0.6^2)
x1 = torch.randn(1, 4, 16, 16, generator=g)  # (B, C, H, W) noise, sigma 1
x0 = field.exact_sample(torch.randn(1, 4, 16, 16, generator=g))  # one x0
eps = torch.randn(1, 4, 16, 16, generator=g)  # (B, C, H, W) its noise
STEPS = (2, 4, 6, 8, 12, 16, 32)
RUNS = {  # row: (solver, solver_order, the scheduler whose sigmas it visits)
    "Euler": ("euler", None, "euler"),
    "Euler, DPM grid": ("euler", None, "dpmsolver++"),
    "DPM++ 2M": ("dpmsolver++", 2, "dpmsolver++"),
    "DPM++ 3M": ("dpmsolver++", 3, "dpmsolver++"),
    "UniPC-2": ("unipc", 2, "unipc"),
    "UniPC-3": ("unipc", 3, "unipc"),
}

# [2] Main transition
sigma = 0.75
x_sigma = (1 - sigma) * x0 + sigma * eps  # (B, C, H, W) x0 -> eps
u = eps - x0  # (B, C, H, W) the flow target, the same at every sigma
snr = ((1 - sigma) / sigma) ** 2  # the VP level with the same SNR:
alpha_bar = snr / (1 + snr)  # alpha_bar / (1 - alpha_bar) = snr
v = v_target(x0, eps, torch.tensor(alpha_bar))  # Salimans-Ho v: not u
landed = x_sigma + (0.0 - sigma) * u  # Euler to 0 with the pair's velocity
t1 = torch.tensor([1000.0])  # sigma = 1
one_step = x1 + (0.0 - 1.0) * field(x1, t1)  # the best velocity, one step


def rms_error(solver, order, grid, steps, shift=1.0):
    sigmas = flow_solver_sigmas(steps, solver=grid, shift=shift)  # (N,)
    out = flow_multistep_sample(
        field, x1, sigmas, solver=solver, solver_order=order
    )  # (B, C, H, W)
    exact = field.exact_flow(x1, sigmas[0].item())  # ODE, same start
    return (out - exact).pow(2).mean().sqrt().item()


errors = {k: [rms_error(*run, n) for n in STEPS] for k, run in RUNS.items()}
shifted = {
    k: [rms_error(*RUNS[k], n, shift=3.0) for n in STEPS]
    for k in ("Euler", "UniPC-2")
}

# [3] Interview hook
bend = field.std**2 / (1 + field.std**2)  # where the paths bend most
near_bend = {
    s: int((flow_solver_sigmas(16, solver="unipc", shift=s) < 0.4).sum())
    for s in (1.0, 3.0)
}
tokens = {
    r: latent_tokens("flux", height=r, width=r).tokens for r in (512, 1024)
}  # packed 2x2 patches of the 8x latent
flux_shift = {r: dynamic_shift(n) for r, n in tokens.items()}  # exp(mu)
grid = torch.linspace(1.0, 1 / 28, 28, dtype=torch.float64)  # FluxPipeline
visits = {
    "SD3, shift 3.0": flow_match_sigmas(28, shift=3.0)[:-1],
    **{
        f"FLUX.1-dev {r}x{r}": shift_sigmas(grid, s)
        for r, s in flux_shift.items()
    },
}
# [end]


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


def table(rows: dict[str, list[float]]) -> None:
    print(f"  {'steps':<16}" + "".join(f"{n:>8}" for n in STEPS))
    for name, row in rows.items():
        print(f"  {name:<16}" + "".join(f"{e:>8.4f}" for e in row))


if __name__ == "__main__":
    print(f"Flow target vs v at sigma = {sigma} (alpha_bar {alpha_bar:.3f})")
    print(
        f"  RMS of u = eps - x0: {rms(u):.3f}; of v: {rms(v):.3f};"
        f" of u - v: {rms(u - v):.3f}"
    )
    err = (landed - x0).abs().max()
    print(f"  Euler step with the pair's velocity lands on x0: {err:.1e}")
    print("  one Euler step from noise with the best velocity:")
    spread = (one_step - field.mean).abs().max()
    print(f"    max |x - m| {spread:.1e}: every sample at the mean")

    print("\nRMS error against the exact ODE, data N(0.5, 0.6^2), shift 1")
    table(errors)
    print("  orders used at 8 steps:")
    for name, (solver, p, _) in list(RUNS.items())[2:]:
        used = solver_orders(8, solver=solver, solver_order=p)
        print(f"    {name:<9} {used}")

    print(
        f"\nPaths bend most at sigma = {bend:.3f}; "
        f"sigmas below 0.4 out of 16, by shift: {near_bend}"
    )
    print("RMS error with shift 3.0 (SD3's), the same problem")
    table(shifted)

    print("\nWhich noise levels 28 steps visit")
    for r, n in tokens.items():
        mu = torch.tensor(flux_shift[r]).log().item()
        print(
            f"  FLUX.1-dev {r}x{r}: {n:,} packed tokens -> mu {mu:.4f},"
            f" shift {flux_shift[r]:.4f}"
        )
    print(f"  {'':<22}{'sigma at step 14':>18}{'steps above 0.5':>17}")
    for name, s in visits.items():
        print(f"  {name:<22}{s[14].item():>18.4f}{int((s > 0.5).sum()):>17}")

    edm = karras_sigmas(10, 0.002, 80.0)
    print("\nKarras (EDM) sigmas, 10 steps from 80 to 0.002, rho = 7:")
    print("  " + " ".join(f"{s:.4g}" for s in edm.tolist()))
    step7 = torch.diff(edm ** (1 / 7))  # even steps in sigma^(1/7)
    print(
        f"  steps of sigma^(1/7): {step7.mean():.4f},"
        f" all equal: {torch.allclose(step7, step7[0].expand(9))}"
    )
