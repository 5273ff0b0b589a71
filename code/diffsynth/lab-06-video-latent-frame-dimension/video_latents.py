"""Lab 06 · Video Latent / Frame Dimension. Run: python video_latents.py

A video latent has a frame axis that is neither batch nor channels. Image
layers (the VAE's 2-D convolutions) see it folded into the batch; the
transformer sees it as part of the token sequence, whose length decides
what attention costs in FLOPs.
"""

import torch

from infralens.calculators import cfg_cost, dit_flops
from infralens.pipelines import DIFFSYNTH_WAN_DEFAULTS
from infralens.video import batch_to_frames, frames_to_batch

# [1] Setup / contract
torch.manual_seed(0)
z = torch.randn(1, 16, 21, 60, 104)  # (B, C, F', H', W') Wan 2.1, 81 frames
B, C, Fl, Hl, Wl = z.shape  # latent frames F', latent height H', width W'

# [2] Main transition
per_frame = frames_to_batch(z)  # (B*F', C, H', W'): permute F' next to B
back = batch_to_frames(per_frame, batch=B)  # (B, C, F', H', W') again
assert torch.equal(back, z)
wrong = z.reshape(B * Fl, C, Hl, Wl)  # same shape, channels cut into "frames"
tokens = Fl * (Hl // 2) * (Wl // 2)  # patch (1, 2, 2): the DiT's sequence N

# [3] Interview hook
requests = [(480, 832, 81), (720, 1280, 81), (480, 832, 161)]  # (H, W, F)
costs = {
    (h, w, f): dit_flops("wan2.1-t2v-14b", height=h, width=w, frames=f)
    for h, w, f in requests
}  # FLOPs of one DiT call, split by where they are spent
wan = DIFFSYNTH_WAN_DEFAULTS  # a bare pipe(prompt): 50 steps, cfg_scale 5
calls = cfg_cost(
    steps=wan["num_inference_steps"], guidance_scale=wan["cfg_scale"]
).calls  # DiT calls per generation: two per step with guidance
# [end]

if __name__ == "__main__":
    print(f"latent            {tuple(z.shape)}  (B, C, F', H', W')")
    print(f"per-frame view    {tuple(per_frame.shape)}  (B*F', C, H', W')")
    right = torch.equal(per_frame[5], z[0, :, 5])
    mixed = torch.equal(wrong[5], z[0, :, 5])
    print(f"row 5 is frame 5: with permute {right}, without {mixed}")
    print(f"round trip exact: {torch.equal(back, z)}")
    print(f"tokens            {Fl} x {Hl // 2} x {Wl // 2} = {tokens:,}")
    print("\nWan 2.1 14B: one DiT call (40 blocks), and a default")
    print(f"generation ({calls} calls); PFLOP = 1e15 FLOPs")
    head = f"{'tokens':>9}{'PFLOP/call':>12}{'attention':>11}{'PFLOP/gen':>11}"
    print(f"  {'request':<16}{head}")
    for (h, w, f), c in costs.items():
        call, gen = c.total / 1e15, calls * c.total / 1e15
        row = f"{c.tokens:>9,}{call:>12.2f}{c.attention_share:>11.1%}"
        print(f"  {f'{h}x{w} {f}f':<16}{row}{gen:>11.0f}")
