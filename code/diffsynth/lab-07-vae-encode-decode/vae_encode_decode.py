"""Lab 07 · VAE Encode Decode. Run: python vae_encode_decode.py

The VAE is the bridge around the denoising loop: encode pixels to a
latent, normalise it with the family's constants, (loop), undo the
normalisation, decode. A causal video VAE encodes frame 0 alone and then
groups of 4 frames with a small cache per convolution. DiffSynth-Studio's
pipeline also decodes in overlapping spatial tiles by default: less memory,
more FLOPs, and not the one-pass result.
"""

import torch

from infralens.diffusion import (
    LATENT_SCALING,
    denormalize_latents,
    normalize_latents,
    step_cost,
)
from infralens.families import LatentScaling
from infralens.memory import (
    diffsynth_tile_coverage,
    diffsynth_tiled_decode,
    diffsynth_tiles,
)
from infralens.nets import TinyCausalVideoVAE

# [1] Setup / contract
torch.manual_seed(0)
vae = TinyCausalVideoVAE(latent_channels=16)  # s=8, t_f=4, random weights
video = torch.rand(1, 3, 9, 64, 96) * 2 - 1  # (B, 3, F, H, W) in [-1, 1]
wan = LATENT_SCALING["wan2.1"]  # 16 means, 16 stds: one pair per channel
per_channel = (1, 16, 1, 1, 1)  # broadcasts over B, F', H', W'
mean = torch.tensor(wan.latents_mean).view(per_channel)  # (1, C, 1, 1, 1)
std = torch.tensor(wan.latents_std).view(per_channel)  # (1, C, 1, 1, 1)

# [2] Main transition
# frame 0 alone, then groups of 4: (0, 1), (1, 5), (5, 9)
F = video.shape[2]
bounds = [(0, 1)] + [(s, s + 4) for s in range(1, F, 4)]
z = vae.encode(video)  # (B, C, F', H/8, W/8), chunk by chunk with a cache
z_whole = vae.encode(video, chunked=False)  # one pass: this tiny VAE has one
latents = (z - mean) / std  # what the loop starts from (image-to-video)
# ... the denoising loop updates `latents` here, never its shape ...
z_back = latents * std + mean  # undo the normalisation before decoding
frames = vae.decode(z_back)  # (B, 3, 1 + 4 (F' - 1), H, W)
# DiffSynth's default decode: tiles of half the latent, half overlapping
size, stride = (4, 6), (2, 3)  # (30, 52), (15, 26) for a 60x104 latent
tiles = diffsynth_tiles(8, 12, tile_size=size, tile_stride=stride)  # 3x3
tiled = diffsynth_tiled_decode(
    vae.decode, z_back, tile_size=size, tile_stride=stride
)  # (B, 3, F, H, W): ramp-weighted mean of the tiles covering each pixel

# [3] Interview hook
# the constants belong to a model: measure this VAE's own statistics
fit = vae.encode(torch.rand(8, 3, 5, 32, 32) * 2 - 1)  # (8, C, 2, 4, 4)
per_ch = fit.transpose(0, 1).flatten(1)  # (C, 8 * 2 * 4 * 4)
own = LatentScaling(
    latents_mean=tuple(per_ch.mean(1).tolist()),
    latents_std=tuple(per_ch.std(1).tolist()),
)  # per-channel statistics, Wan-style
one = LatentScaling(scaling_factor=1 / fit.std().item())  # SD-style
held_out = vae.encode(torch.rand(8, 3, 5, 32, 32) * 2 - 1)  # new videos
spread = {
    name: normalize_latents(held_out, s).transpose(0, 1).flatten(1).std(1)
    for name, s in (("per-channel", own), ("one factor", one))
}  # the standard deviation of each channel after normalising
decode_cost = {
    "one pass": step_cost(lambda: vae.decode(z_back), vae),
    "tiled": step_cost(
        lambda: diffsynth_tiled_decode(
            vae.decode, z_back, tile_size=size, tile_stride=stride
        ),
        vae,
    ),
}  # more FLOPs (overlaps decoded twice), a smaller largest activation
# [end]

if __name__ == "__main__":
    print("Shapes across the bridge")
    for name, x in (("video", video), ("latent z", z), ("decoded", frames)):
        print(f"  {name:<9} {tuple(x.shape)}")
    print(f"  encoder chunks (frames): {bounds}")
    diff = (z - z_whole).abs().max().item()
    print(f"  chunked vs one pass: max |difference| = {diff:.1e}")
    back = denormalize_latents(latents, "wan2.1")
    rt = torch.allclose(back, z, atol=1e-5)
    print(f"  normalise then denormalise returns z: {rt}")

    print("\nStd of each latent channel after normalising (want all 1.0)")
    for name, s in spread.items():
        lo, hi = s.min().item(), s.max().item()
        print(f"  {name:<12} min {lo:.3f}  max {hi:.3f}")

    area = diffsynth_tile_coverage(8, 12, tile_size=size, tile_stride=stride)
    print(f"\nTiled decode: {len(tiles)} tiles of {size} cells, {area} x area")
    gap = (tiled - frames).abs()
    print(f"  tiled vs one pass: max |difference| = {gap.max():.3f}")
    for name, c in decode_cost.items():
        act = f"largest activation {c.largest_activation_bytes:>8,} B"
        print(f"  {name:<9} FLOPs {c.flops:>11,}  {act}")
