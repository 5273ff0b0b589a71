"""Lab 05 · Conditioning Flow. Run: python conditioning_flow.py

Wan-style image-to-video: the prompt, the timestep and the first image
reach the denoiser on separate paths, each with its own shape. Text tokens
are read by cross-attention, the timestep modulates every token (adaLN),
and the image enters twice: as CLIP-like tokens next to the text, and as a
VAE latent concatenated to the noisy latent on the channel axis.
"""

import math

import torch

from infralens.diffusion import (
    flow_sample,
    flow_sigmas,
    latent_shape,
    normalize_latents,
)
from infralens.video import (
    TinyCausalVideoVAE,
    TinyVideoDiT,
    first_frame_mask,
)

# [1] Setup / contract
g = torch.Generator().manual_seed(0)
F, H, W = 9, 32, 48  # frames and pixels of the request
vae = TinyCausalVideoVAE(latent_channels=16)  # s = 8, t_f = 4
dit = TinyVideoDiT(
    latent_channels=16,  # C of the noisy latent
    condition_channels=4 + 16,  # C_y: 4 mask + 16 latent channels
    text_dim=48,  # umT5 gives 4096 in Wan
    image_token_dim=24,  # CLIP gives 1280 in Wan 2.1 I2V
)
latents = torch.randn(1, 16, 3, 4, 6, generator=g)  # (B, C, F', h, w)
timesteps = torch.tensor([999.0])  # (B,)
text = torch.randn(1, 7, 48, generator=g)  # (B, L, D_text) text encoder
image = torch.rand(1, 3, H, W, generator=g) * 2 - 1  # (B, 3, H, W) frame 0
clip = torch.randn(1, 5, 24, generator=g)  # (B, L_img, D_img) image tokens

# [2] Main transition
# image path: the image, then F - 1 zero frames, through the VAE
video = torch.cat([image[:, :, None], torch.zeros(1, 3, F - 1, H, W)], 2)
z_image = vae.encode(video)  # (B, 16, F', h, w)
z_image = normalize_latents(z_image, "wan2.1")  # Wan's 16 means and stds
mask = first_frame_mask(F, H // 8, W // 8)  # (B, 4, F', h, w): frame 0 set
y = torch.cat([mask, z_image], dim=1)  # (B, 20, F', h, w)
x_in = torch.cat([latents, y], dim=1)  # (B, 36, F', h, w): what DiT reads
# every path meets inside the DiT; hooks record the shape at each boundary
seen = {}


def record(name):
    def hook(module, args, out):
        if name == "cross_attn":  # (query, key) of the first block
            seen[name] = (tuple(args[0].shape), tuple(args[1].shape))
        else:  # (input, output)
            seen[name] = (tuple(args[0].shape), tuple(out.shape))

    return hook


for name in ("patch_embedding", "text_embedding", "image_embedding"):
    getattr(dit, name).register_forward_hook(record(name))
dit.time_projection.register_forward_hook(record("time_projection"))
dit.blocks[0].cross_attn.register_forward_hook(record("cross_attn"))
with torch.no_grad():
    pred = dit(latents, timesteps, text, condition=y, image_tokens=clip)
assert seen["patch_embedding"][0] == tuple(x_in.shape)  # concat inside

# [3] Interview hook
# the loop: text changes between the two CFG calls, y and clip do not
shared = {"condition": y, "image_tokens": clip}
negative = torch.zeros_like(text)  # (B, L, D_text) the empty prompt
calls = []
dit.register_forward_hook(lambda m, args, out: calls.append(len(args)))
final = flow_sample(
    dit,
    latents,
    flow_sigmas("Wan", 4),
    text,
    negative_text=negative,
    guidance_scale=5.0,
    shared=shared,
)  # 4 steps, 2 calls each
# where a path enters sets its cost: scores per head and block for Wan 2.1
N = math.prod(latent_shape("wan2.1", height=480, width=832, frames=81)[2:])
N //= 4  # video tokens after (1, 2, 2) patches
L = 512  # text tokens: Wan's tokenizer pads every prompt to 512
# [end]

if __name__ == "__main__":
    q, kv = seen["cross_attn"]
    rows = [
        ("text", "prompt embeddings", text, "projected to D"),
        ("", "after text_embedding", seen["text_embedding"][1], ""),
        ("image (1)", "CLIP-like tokens", clip, "projected to D"),
        ("", "context = [image, text]", kv, "cross-attn K, V"),
        ("image (2)", "y = [mask, z_image]", y, "concat on channels"),
        ("", "latents + y", x_in, "patch embedding"),
        ("", "video tokens", q, "cross-attn queries"),
        ("timestep", "t", timesteps, "sinusoid + MLP"),
        ("", "modulation, 6 x D", seen["time_projection"][1], "per block"),
        ("output", "prediction", pred, "the latent's shape"),
    ]
    print(f"  {'path':<10}{'tensor':<24}{'shape':<19}enters")
    for path, what, x, where in rows:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else x
        print(f"  {path:<10}{what:<24}{shape!s:<19}{where}")
    n = len(calls)
    print(f"\nAfter 4 guided steps ({n} DiT calls): {tuple(final.shape)}")
    print(f"Wan 2.1, 480x832, 81 frames: N = {N:,} video tokens, L = {L}")
    print(f"  self-attention scores  N x N = {N * N:>13,}")
    less = f"({N / L:.0f}x less)"
    print(f"  cross-attention scores N x L = {N * L:>13,} {less}")
