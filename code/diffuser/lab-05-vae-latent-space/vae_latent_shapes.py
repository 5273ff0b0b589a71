"""Lab 05 · VAE Latent Space. Run: python vae_latent_shapes.py

A VAE encoder turns pixels into a Gaussian over a grid 8 times smaller with
learned channels. The pipeline scales a latent drawn from it with the
family's constants before the denoiser sees it, and undoes the scaling
before the decoder turns it back into pixels.
"""

import torch

from infralens.diffusion import (
    VAE_CONSTANTS,
    compression_ratio,
    latent_shape,
    step_cost,
)
from infralens.nets import TinyAutoencoderKL

# [1] Setup / contract
torch.manual_seed(0)
vae = TinyAutoencoderKL(latent_channels=4)  # 4 blocks: s = 2 ** 3 = 8
image = torch.rand(1, 3, 128, 128) * 2 - 1  # (B, 3, H, W) in [-1, 1]
sd = VAE_CONSTANTS["sd"].scaling  # Stable Diffusion's released VAE
scaling = sd.scaling_factor  # 0.18215
shift = sd.shift_factor or 0.0  # SD has none (SD3, FLUX.1 do)

# [2] Main transition
posterior = vae.encode(image)  # a Gaussian per latent element
gen = torch.Generator().manual_seed(0)
z = posterior.sample(gen)  # (B, C, H/8, W/8) = mean + std * eps
latents = (z - shift) * scaling  # what the denoiser is trained on
# ... the denoising loop updates `latents` here, never its shape ...
z_back = latents / scaling + shift  # undo the constants before decode
decoded = vae.decode(z_back)  # (B, 3, H, W): pixels again

# [3] Interview hook
ratios = {  # pixel values per latent value: 3 * s**2 / C
    f: compression_ratio(f, height=1024, width=1024)
    for f in ("sd", "sdxl", "sd3", "flux")
}
decode = step_cost(lambda: vae.decode(z_back), vae)  # measured
latent_bytes = z_back.numel() * z_back.element_size()
# the decoder's largest activation dwarfs the latent it decodes
# [end]


def show(name: str, x: torch.Tensor, note: str) -> None:
    print(f"  {name:<10} {tuple(x.shape)!s:<18} {note}")


def constants_row(family: str) -> str:
    c = VAE_CONSTANTS[family]
    s = c.scaling
    if s.per_channel:
        values = f"{len(s.latents_mean)} means, {len(s.latents_std)} stds"
    else:
        values = f"scaling {s.scaling_factor}, shift {s.shift_factor}"
    where = c.diffusers_source or "released config only"
    return f"  {family:<7} {values:<32} {c.in_wheel_as:<10} {where}"


if __name__ == "__main__":
    print("Shapes across the VAE (tiny, random weights, s = 8)")
    show("image", image, "pixels in [-1, 1]")
    show("mean", posterior.mean, "posterior mean (mode)")
    show("std", posterior.std, "posterior std")
    show("z", z, "one draw: mean + std * eps")
    show("latents", latents, "(z - shift) * scaling")
    show("decoded", decoded, "decode(latents / scaling + shift)")
    ref = latent_shape("sd", height=128, width=128)
    print(f"  latent_shape('sd', 128, 128) = {ref}")
    back = torch.allclose(z_back, z, atol=1e-6)
    print(f"  undoing the constants returns z: {back}")

    print("\nScaling constants and where the diffusers wheel holds them")
    print("  (default: a class default; docstring: an example only;")
    print("   absent: in no file, only in the released vae/config.json)")
    for family in VAE_CONSTANTS:
        print(constants_row(family))

    print("\nCompression ratio at 1024x1024 (pixel values per latent)")
    for family, r in ratios.items():
        shape = latent_shape(family, height=1024, width=1024)
        print(f"  {family:<7} {shape!s:<20} {r:g}")

    print("\nMemory: decoding is the expensive side")
    big = decode.largest_activation_bytes
    print(f"  latent decoded          {latent_bytes:>9,} B")
    print(f"  largest decoder tensor  {big:>9,} B ({big // latent_bytes}x)")
