"""Lab 05 · Conditioning Flow. Run: python conditioning_flow.py

Wan 2.1-style image-to-video: the prompt, the timestep and the first image
reach the denoiser on separate paths, each with its own shape. Text tokens
are read by cross-attention, the timestep modulates every token (adaLN),
and the image enters twice: as 257 CLIP-like tokens read by their own branch
of the cross-attention (decoupled from the text: own keys, values, key norm
and softmax), and as a VAE latent concatenated to the noisy latent on the
channel axis. Last, what each attention costs at full size, in FLOPs.
"""

import math

import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.diffusion import (
    flow_sample,
    flow_sigmas,
    latent_shape,
    normalize_latents,
)
from infralens.families import get_model
from infralens.nets import (
    CrossAttention,
    SelfAttention,
    TinyCausalVideoVAE,
    TinyVideoDiT,
)
from infralens.video import first_frame_mask

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
clip = torch.randn(1, 257, 24, generator=g)  # (B, L_img, D_img) CLIP tokens

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
    def hook(module, args, kwargs, out):
        if name == "cross_attn":  # (query, text, image) of the first block
            inputs = (args[0], args[1], kwargs["image_tokens"])
            seen[name] = tuple(tuple(x.shape) for x in inputs)
        else:  # (input, output)
            seen[name] = (tuple(args[0].shape), tuple(out.shape))

    return hook


paths = ("patch_embedding", "text_embedding", "image_embedding")
for name in (*paths, "time_projection"):
    getattr(dit, name).register_forward_hook(record(name), with_kwargs=True)
cross = dit.blocks[0].attn2  # the first block's cross-attention
cross.register_forward_hook(record("cross_attn"), with_kwargs=True)
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
# where a path enters sets its cost: one Wan 2.1 14B block at 480x832x81
N = math.prod(latent_shape("wan2.1", height=480, width=832, frames=81)[2:])
N //= 4  # video tokens after (1, 2, 2) patches
wan14b, umt5 = get_model("wan2.1-t2v-14b"), get_model("umt5-xxl")
D, heads = wan14b["dim"], wan14b["num_heads"]  # 5120 wide, 40 heads
L = umt5["text_len"]  # Wan pads every prompt to 512 tokens
with torch.device("meta"):  # shapes only: nothing allocated or computed
    video = torch.empty(1, N, D)  # (B, N, D) the queries
    words = torch.empty(1, L, D)  # (B, L, D) the padded prompt
    pixels = torch.empty(1, 257, D)  # (B, L_img, D): 257 CLIP tokens
    modules = {
        "self-attention": SelfAttention(D, heads),
        "cross, text only": CrossAttention(D, D, heads, qk_norm=True),
        "cross, text + image": CrossAttention(
            D, D, heads, image_dim=D, qk_norm=True
        ),
    }
inputs = {
    "self-attention": ((video,), {}),
    "cross, text only": ((video, words), {}),
    "cross, text + image": ((video, words), {"image_tokens": pixels}),
}
flops = {}
for name, module in modules.items():
    args, kwargs = inputs[name]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    flops[name] = counter.get_total_flops()  # matrix products, 2 per MAC
# [end]

if __name__ == "__main__":
    q, kv, kv_img = seen["cross_attn"]
    rows = [
        ("text", "prompt embeddings", text, "projected to D"),
        ("", "after text_embedding", kv, "cross-attn K, V"),
        ("image (1)", "CLIP-like tokens", clip, "projected to D"),
        ("", "after image_embedding", kv_img, "own K_img, V_img"),
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
    print(f"One Wan 2.1 14B block, 480x832, 81 frames: N = {N:,} video tokens")
    for name, f in flops.items():
        ratio = flops["self-attention"] / f
        print(
            f"  {name:<20} {f / 1e12:6.2f} TFLOP  (self / this = {ratio:.1f})"
        )
    extra = flops["cross, text + image"] - flops["cross, text only"]
    share = extra / flops["cross, text + image"]
    print(f"  the image branch adds {extra / 1e12:.2f} TFLOP, {share:.0%}")
