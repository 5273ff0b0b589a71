"""Lab 01 · Forward Noise Process. Run: python forward_noise.py

The forward process mixes a clean latent x0 with sampled noise eps, using a
fixed schedule alpha_bar_t. It builds the denoiser's training inputs; it is
not the generator and nothing in it is learned.
"""

import torch

from infralens.diffusion import (
    add_noise,
    alphas_cumprod,
    make_betas,
    predict_x0_from_eps,
    snr,
    v_target,
)


def show(name: str, x: torch.Tensor, note: str) -> None:
    shape, dtype = str(tuple(x.shape)), str(x.dtype)
    print(f"  {name:<8} {shape:<18} {dtype:<14} {note}")


# [1] Setup / contract
torch.manual_seed(0)
B, C, H, W = 4, 4, 64, 64  # four SD latents of 512x512 images
betas = make_betas("linear")  # (T,) beta_t, fixed before training
alpha_bar = alphas_cumprod(betas)  # (T,) signal variance kept at t
x0 = torch.randn(B, C, H, W)  # (B, C, H, W) stand-in for VAE latents
t = torch.tensor([0, 250, 500, 999])  # (B,) one timestep per sample
noise = torch.randn_like(x0)  # (B, C, H, W) eps ~ N(0, I), not learned

# [2] Main transition
ab_t = alpha_bar[t]  # (B,) gathered per sample
x_t = add_noise(x0, noise, ab_t)  # (B, C, H, W) the denoiser's input
# the same line in plain torch: (B,) -> (B, 1, 1, 1) broadcasts
ab4 = ab_t.view(B, 1, 1, 1)
manual = ab4.sqrt() * x0 + (1 - ab4).sqrt() * noise
assert torch.allclose(x_t, manual, atol=1e-6)

# [3] Interview hook
targets = {  # every target has the latent's shape (B, C, H, W)
    "epsilon": noise,  # what an epsilon-prediction model outputs
    "v": v_target(x0, noise, ab_t),  # sqrt(ab) * eps - sqrt(1-ab) * x0
    "sample": x0,  # x0-prediction: the clean latent itself
}
# a perfect epsilon prediction gives x0 back
x0_back = predict_x0_from_eps(x_t, targets["epsilon"], ab_t)
# [end]


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].item()


if __name__ == "__main__":
    print("Shapes at each boundary")
    show("betas", betas, "beta_t, linear 1e-4 -> 0.02")
    show("x0", x0, "clean latents (B, C, H, W)")
    show("t", t, "one timestep per sample")
    show("ab_t", ab_t, "alpha_bar gathered at t")
    show("noise", noise, "eps ~ N(0, I)")
    show("x_t", x_t, "the denoiser's training input")
    for name, target in targets.items():
        show(name, target, f"{name}-prediction target")

    print("\nCoefficients per sample (x_t = a * x0 + b * eps)")
    head = ("t", "alpha_bar", "a=sqrt(ab)", "b=sqrt(1-ab)", "SNR", "corr")
    print("  " + " ".join(f"{h:>12}" for h in head))
    for i in range(B):
        ab = ab_t[i]
        row = (t[i].item(), f"{ab.item():.6f}", f"{ab.sqrt().item():.6f}")
        row += (f"{(1 - ab).sqrt().item():.6f}", f"{snr(ab).item():.4g}")
        row += (f"{corr(x_t[i], x0[i]):.4f}",)
        print("  " + " ".join(f"{v:>12}" for v in row))

    print("\nThe same x0 at many noise levels, in one batch")
    same = add_noise(x0[:1].expand(B, -1, -1, -1), noise, ab_t)
    print(f"  {tuple(same.shape)}: sample i is x0[0] at t={t.tolist()}[i]")

    err = (x0_back - x0).abs().max().item()
    print(f"\nx0 recovered from the true eps: max |error| = {err:.2e}")

    print("\nSignal-to-noise ratio by schedule (T = 1000)")
    schedules = {
        "linear": make_betas("linear"),
        "scaled_linear": make_betas(
            "scaled_linear", beta_start=0.00085, beta_end=0.012
        ),
        "squaredcos_cap_v2": make_betas("squaredcos_cap_v2"),
    }
    steps = [0, 100, 250, 500, 750, 999]
    print(f"  {'schedule':<18}" + "".join(f"{f't={s}':>10}" for s in steps))
    for name, b in schedules.items():
        row = snr(alphas_cumprod(b)[steps]).tolist()
        print(f"  {name:<18}" + "".join(f"{v:>10.4g}" for v in row))
