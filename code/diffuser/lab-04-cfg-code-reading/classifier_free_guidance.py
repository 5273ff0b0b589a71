"""Lab 04 · CFG Code Reading. Run: python classifier_free_guidance.py

Classifier-free guidance runs the denoiser with and without the prompt and
extrapolates from the second prediction towards the first. No classifier is
involved; the price is a second denoiser evaluation at every step.
"""

import torch

from infralens.diffusion import cfg_combine, step_cost
from infralens.nets import TinyDenoiser

# [1] Setup / contract
torch.manual_seed(0)
model = TinyDenoiser(latent_channels=4, text_dim=16)  # small, real, eval()
latents = torch.randn(1, 4, 8, 8)  # (B, C, H, W) the noisy latent x_t
t = torch.tensor([500])  # (B,) the current timestep
cond = torch.randn(1, 6, 16)  # (B, L, D) prompt embeddings
uncond = torch.randn(1, 6, 16)  # (B, L, D) empty or negative prompt
scale = 7.5  # guidance_scale w

# [2] Main transition
# batch doubling (diffusers' Stable Diffusion): one call on [uncond, cond]
x_in = torch.cat([latents] * 2)  # (2B, C, H, W)
t_in = t.repeat(2)  # (2B,)
text_in = torch.cat([uncond, cond])  # (2B, L, D)
with torch.no_grad():
    both = model(x_in, t_in, text_in)  # (2B, C, H, W)
pred_uncond, pred_cond = both.chunk(2)  # (B, C, H, W) each
guided = pred_uncond + scale * (pred_cond - pred_uncond)  # the CFG line
# two passes (diffusers' Wan pipeline): the prompt first, then the negative
with torch.no_grad():
    pass_cond = model(latents, t, cond)  # (B, C, H, W) first call
    pass_uncond = model(latents, t, uncond)  # (B, C, H, W) second call
two_pass = cfg_combine(pass_uncond, pass_cond, scale)  # same numbers

# [3] Interview hook
plain = step_cost(lambda: model(latents, t, cond), model)  # no guidance
doubled = step_cost(lambda: model(x_in, t_in, text_in), model)  # with CFG
# [end]

if __name__ == "__main__":
    print("Shapes")
    shapes = {"latents": latents, "cond": cond, "batched input": x_in}
    shapes |= {"batched output": both, "guided": guided}
    for name, x in shapes.items():
        print(f"  {name:<15} {tuple(x.shape)}")
    diff = (guided - two_pass).abs().max().item()
    print(f"\nbatch doubling vs two passes: max |difference| = {diff:.1e}")
    one = cfg_combine(pred_uncond, pred_cond, 1.0)
    same = torch.allclose(one, pred_cond, atol=1e-6)
    print(f"scale 1 gives the conditional prediction: {same}")
    print("\nCost of one denoising step on this module")
    head = ("", "calls", "batch", "FLOPs", "activation")
    print("  {:<16}{:>6}{:>7}{:>12}{:>14}".format(*head))
    for name, c in (("no guidance", plain), ("CFG, one batch", doubled)):
        act = c.largest_activation_bytes
        row = f"  {name:<16}{c.calls:>6}{c.batch:>7}{c.flops:>12,}"
        print(row + f"{act:>12,} B")
    ratio = doubled.flops / plain.flops
    print(f"\nCFG multiplies the step's FLOPs by {ratio:.1f}")
