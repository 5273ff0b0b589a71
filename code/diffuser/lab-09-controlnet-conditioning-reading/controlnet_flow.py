"""Lab 09 · ControlNet / Conditioning Reading.

Run: python controlnet_flow.py

A ControlNet is a trainable copy of the denoiser's encoder that reads a
control image (edges, depth, pose). Zero-initialised 1x1 convolutions
turn its features into residuals added to the frozen denoiser's skips,
scaled by conditioning_scale. A fresh ControlNet adds exact zeros.
"""

import torch

from infralens.adapters import MultiControlNet, TinyControlNet
from infralens.nets import TinyUNet


def square_outline(lo: int, hi: int, size: int = 128) -> torch.Tensor:
    """A white square outline on black, standing in for a Canny map."""
    img = torch.zeros(1, 3, size, size)  # (B, 3, H_px, W_px)
    img[..., lo:hi, [lo, hi - 1]] = 1.0  # left and right edges
    img[..., [lo, hi - 1], lo:hi] = 1.0  # top and bottom edges
    return img


def pretend_trained(net: TinyControlNet, seed: int) -> TinyControlNet:
    """Stand-in for training: move every zero-initialised module."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in net.zero_modules():
            for p in module.parameters():
                p.normal_(std=0.1, generator=g)
    return net


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# [1] Setup / contract
unet = TinyUNet(in_channels=4, width=8, num_blocks=2)  # the denoiser
unet.requires_grad_(False)  # frozen
controlnet = TinyControlNet.from_denoiser(unet)  # copies unet's encoder
g = torch.Generator().manual_seed(0)
latents = torch.randn(1, 4, 16, 16, generator=g)  # (B, C, H, W)
t = torch.tensor([500])  # (B,)
image = square_outline(32, 96)  # (B, 3, 8H, 8W): pixels, not latent
plain = unet(latents, t)  # (B, 4, 16, 16) without any control
down, mid = controlnet(latents, t, image)  # fresh: every residual is zero
fresh_equal = torch.equal(unet(latents, t, down, mid), plain)

# [2] Main transition
pretend_trained(controlnet, seed=1)
cond = controlnet.controlnet_cond_embedding(image)  # (B, 8, 16, 16)
skips, feat_mid = controlnet.encoder(latents, t, added=cond)  # the copy
zero_convs = controlnet.controlnet_down_blocks  # 1x1 convs, one per skip
down = [z(h) for z, h in zip(zero_convs, skips, strict=True)]  # r_k
mid = controlnet.controlnet_mid_block(feat_mid)  # (B, 8, 4, 4)
d1, m1 = controlnet(latents, t, image, conditioning_scale=1.0)
assert torch.equal(m1, mid) and all(map(torch.equal, d1, down))
controlled = unet(latents, t, down, mid)  # h_k + r_k inside the unet

# [3] Interview hook
outputs = {}  # conditioning_scale multiplies every residual
for s in (0.0, 0.5, 1.0, 2.0):
    d, m = controlnet(latents, t, image, conditioning_scale=s)
    pairs = zip(d, down, strict=True)
    assert all(torch.allclose(a, s * b) for a, b in pairs)
    outputs[s] = unet(latents, t, d, m)
second = TinyControlNet.from_denoiser(unet, seed=2)  # another control
pretend_trained(second, seed=3)
image2 = square_outline(48, 80)  # the second net's control image
multi = MultiControlNet([controlnet, second])  # residuals are summed
d2, m2 = multi(latents, t, [image, image2], [1.0, 0.5])
# [end]

if __name__ == "__main__":
    print("Shapes at each boundary")
    rows = [("latents", latents, "noisy latent (B, C, H, W)")]
    rows += [("image", image, "control image, pixels (B, 3, 8H, 8W)")]
    rows += [("cond", cond, "encoded control, latent grid")]
    for k, r in enumerate(down):
        rows.append((f"down[{k}]", r, f"residual for skip {k}"))
    rows += [("mid", mid, "residual for the middle block")]
    for name, x, note in rows:
        print(f"  {name:<8} {tuple(x.shape)!s:<17} {note}")

    print(f"\nfresh ControlNet: output == plain denoiser: {fresh_equal}")
    zero = sum(n_params(m) for m in controlnet.zero_modules())
    print(f"zero-initialised parameters: {zero:,}")

    print("\nconditioning_scale  max |residual|  max |output - plain|")
    for s, out in outputs.items():
        d, _ = controlnet(latents, t, image, conditioning_scale=s)
        r_max = max(r.abs().max().item() for r in d)
        o_max = (out - plain).abs().max().item()
        print(f"  {s:>17}  {r_max:>14.6f}  {o_max:>20.6f}")

    single = [
        controlnet(latents, t, image, conditioning_scale=1.0),
        second(latents, t, image2, conditioning_scale=0.5),
    ]
    pairs = zip(d2, single[0][0], single[1][0], strict=True)
    ok = all(torch.allclose(a, b + c, atol=1e-6) for a, b, c in pairs)
    ok = ok and torch.allclose(m2, single[0][1] + single[1][1], atol=1e-6)
    print(f"\ntwo controls, scales [1.0, 0.5]: residuals summed: {ok}")

    print("\nParameters")
    print(f"  denoiser (frozen)        {n_params(unet):>6,}")
    print(f"    of which its encoder   {n_params(unet.encoder):>6,}")
    print(f"  ControlNet (trainable)   {n_params(controlnet):>6,}")
    copy_n = n_params(controlnet.encoder)
    print(f"    encoder copy           {copy_n:>6,}")
    emb = n_params(controlnet.controlnet_cond_embedding)
    print(f"    control embedding      {emb:>6,}")
    zc = n_params(zero_convs) + n_params(controlnet.controlnet_mid_block)
    print(f"    zero 1x1 convs         {zc:>6,}")
