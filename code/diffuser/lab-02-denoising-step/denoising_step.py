"""Lab 02 · Denoising Step. Run: python denoising_step.py

One reverse update is a model prediction plus scheduler arithmetic. The
denoiser reads the noisy latent x_t and returns a tensor of the same shape;
the scheduler's config says whether that tensor is the noise, the velocity v
or x0 (or, for flow models, eps - x0), and the scheduler's step turns it into
the next, less noisy latent.
"""

import torch

from infralens.diffusion import (
    add_noise,
    alphas_cumprod,
    ddim_step,
    ddpm_step,
    flow_interpolate,
    flow_target,
    make_betas,
    predict_x0,
    v_target,
)

# [1] Setup / contract
torch.manual_seed(0)
alpha_bar = alphas_cumprod(make_betas("linear"))  # (T,) training schedule
t, t_prev = 500, 480  # 50 inference steps over T = 1000: 20 apart
ab_t, ab_prev = alpha_bar[t], alpha_bar[t_prev]  # () each
x0 = torch.randn(1, 4, 64, 64)  # (B, C, H, W) the latent to recover
eps = torch.randn_like(x0)  # (B, C, H, W) the noise inside x_t
x_t = add_noise(x0, eps, ab_t)  # (B, C, H, W) the denoiser's input
outputs = {  # what a perfect denoiser returns, by prediction_type
    "epsilon": eps,  # (B, C, H, W)
    "v_prediction": v_target(x0, eps, ab_t),  # (B, C, H, W)
    "sample": x0,  # (B, C, H, W)
}
z = torch.randn_like(x0)  # (B, C, H, W) fresh noise for the DDPM step

# [2] Main transition
results = {}
for kind, out in outputs.items():
    x0_hat = predict_x0(x_t, out, ab_t, kind)  # (B, C, H, W)
    ddpm = ddpm_step(x_t, out, ab_t, ab_prev, prediction_type=kind, noise=z)
    ddim = ddim_step(x_t, out, ab_t, ab_prev, prediction_type=kind)
    results[kind] = (x0_hat, ddpm.prev_sample, ddim.prev_sample)
# the DDPM step in plain torch (Ho et al. eq. 7), for epsilon
alpha_t = ab_t / ab_prev  # one step of the strided chain
beta_t = 1 - alpha_t
x0_hat = (x_t - (1 - ab_t).sqrt() * eps) / ab_t.sqrt()
c_x0 = ab_prev.sqrt() * beta_t / (1 - ab_t)
c_xt = alpha_t.sqrt() * (1 - ab_prev) / (1 - ab_t)
var = (1 - ab_prev) / (1 - ab_t) * beta_t  # posterior variance
manual = c_x0 * x0_hat + c_xt * x_t + var.sqrt() * z  # (B, C, H, W)
assert torch.allclose(manual, results["epsilon"][1], atol=1e-5)

# [3] Interview hook
# a v-prediction model run with a scheduler configured for epsilon
v = outputs["v_prediction"]  # (B, C, H, W)
wrong = predict_x0(x_t, v, ab_t, "epsilon")  # (B, C, H, W)
# a flow model (SD3, FLUX, Wan) at the same SNR: x = (1 - sigma) x0 + sigma eps
s_t, a_t = (1 - ab_t).sqrt(), ab_t.sqrt()  # () the two coefficients
sigma = s_t / (s_t + a_t)  # () the flow level with the same SNR
x_sigma = flow_interpolate(x0, eps, sigma.item())  # (B, C, H, W) x_t rescaled
u = flow_target(x0, eps)  # (B, C, H, W) its output: eps - x0
x0_flow = x_sigma - sigma * u  # (B, C, H, W) read as flow_prediction (UniPC)
wrong_flow = predict_x0(x_t, u, ab_t, "v_prediction")  # (B, C, H, W) read as v
# [end]


def rms(x: torch.Tensor) -> float:
    return x.pow(2).mean().sqrt().item()


if __name__ == "__main__":
    print("The contract: every tensor has the latent's shape")
    for name, x in (("x_t (input)", x_t), ("model output", v)):
        print(f"  {name:<15} {tuple(x.shape)}")
    print(f"  {'prev_sample':<15} {tuple(results['epsilon'][1].shape)}")

    levels = f"alpha_bar {ab_t:.4f} -> {ab_prev:.4f}"
    print(f"\nOne step t={t} -> {t_prev}: {levels}")
    print("  Perfect outputs, each read as its prediction_type; max |diff|")
    head = ("prediction_type", "x0_hat - x0", "DDPM - eps's", "DDIM - fwd")
    print(f"  {head[0]:<16}" + "".join(f"{h:>14}" for h in head[1:]))
    target = add_noise(x0, eps, ab_prev)  # the forward process at t_prev
    for kind, (x0_hat, ddpm, ddim) in results.items():
        errs = (x0_hat - x0, ddpm - results["epsilon"][1], ddim - target)
        row = "".join(f"{e.abs().max().item():>14.1e}" for e in errs)
        print(f"  {kind:<16}{row}")
    gap = rms(results["epsilon"][1] - results["epsilon"][2])
    print(f"  DDPM and DDIM from the same output differ: RMS {gap:.3f}")

    print("\nPrediction-type mismatch: RMS error of x0_hat")
    cols = {"t": 5, "alpha_bar": 11, "v read as eps": 15, "eps as v": 10}
    print("  " + "".join(f"{c:>{w}}" for c, w in cols.items()))
    for s in (20, 250, 500, 750, 980):
        ab = alpha_bar[s]
        x = add_noise(x0, eps, ab)  # (B, C, H, W)
        v_s = v_target(x0, eps, ab)
        e1 = rms(predict_x0(x, v_s, ab, "epsilon") - x0)
        e2 = rms(predict_x0(x, eps, ab, "v_prediction") - x0)
        print(f"  {s:>5}{ab.item():>11.5f}{e1:>15.3f}{e2:>10.3f}")
    print(f"  at t={t}: RMS error {rms(wrong - x0):.3f} (latent RMS 1)")

    print(f"\nA flow model at the same SNR (sigma {sigma.item():.4f}):")
    print("  its output eps - x0, and the x0 error RMS when it is read as")
    print(f"  flow_prediction: {rms(x0_flow - x0):.1e}")
    print(f"  v_prediction:    {rms(wrong_flow - x0):.3f}")
