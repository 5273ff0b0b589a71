"""Lab 06 · Video Latent / Frame Dimension. Run: python video_latents.py

A video latent has a frame axis that is neither batch nor channels. Image
layers see it folded into the batch; the transformer sees it as part of the
token sequence, whose length decides what attention costs.
"""

import torch

from infralens.calculators import attention_cost, latent_tokens
from infralens.video import batch_to_frames, frames_to_batch

# [1] Setup / contract
torch.manual_seed(0)
z = torch.randn(1, 16, 21, 60, 104)  # (B, C, F', H', W') Wan 2.1, 81 frames
B, C, F, H, W = z.shape

# [2] Main transition
per_frame = frames_to_batch(z)  # (B*F', C, H', W') for 2-D layers
back = batch_to_frames(per_frame, batch=B)  # (B, C, F', H', W') again
assert torch.equal(back, z)
wrong = z.reshape(B * F, C, H, W)  # same shape, frames mixed with channels
tokens = F * (H // 2) * (W // 2)  # patch (1, 2, 2): the DiT's sequence

# [3] Interview hook
requests = [(480, 832, 81), (720, 1280, 81), (480, 832, 161)]
costs = {}
for h, w, f in requests:
    n = latent_tokens("wan2.1", height=h, width=w, frames=f).tokens
    costs[(h, w, f)] = attention_cost(tokens=n, heads=40, head_dim=128)
# [end]

if __name__ == "__main__":
    print(f"latent            {tuple(z.shape)}  (B, C, F', H', W')")
    print(f"per-frame view    {tuple(per_frame.shape)}  (B*F', C, H', W')")
    right = torch.equal(per_frame[5], z[0, :, 5])
    mixed = torch.equal(wrong[5], z[0, :, 5])
    print(f"row 5 is frame 5: with permute {right}, without {mixed}")
    print(f"round trip exact: {torch.equal(back, z)}")
    print(f"tokens            {F} x {H // 2} x {W // 2} = {tokens:,}")
    print("\nAttention per layer, 40 heads of 128, bf16 scores")
    print(f"  {'request':<16}{'tokens':>9}{'scores GiB':>12}{'TFLOP':>8}")
    for (h, w, f), c in costs.items():
        gib, tflop = c.score_bytes / 2**30, c.flops / 1e12
        print(
            f"  {f'{h}x{w} {f}f':<16}{c.tokens:>9,}{gib:>12.1f}{tflop:>8.1f}"
        )
