"""Lab 07 · UNet / DiT Conditioning. Run: python conditioning_flow.py

A condition is prepared once and read at every step. The prompt goes
through the text encoder one time; at each step the denoiser reads the same
embeddings by cross-attention (latent tokens ask, text tokens answer) while
the timestep modulates every token (adaLN). The prediction keeps the
latent's shape, which is what lets the scheduler use it.
"""

from itertools import pairwise

import torch

from infralens.diffusion import flow_euler_step, flow_match_sigmas
from infralens.nets import TinyDiT, TinyTextEncoder, patch_token_count

calls = {"text_encoder": 0, "dit": 0}


def count_calls(module: torch.nn.Module, name: str) -> None:
    def hook(mod, args, out):
        calls[name] += 1

    module.register_forward_hook(hook)


# [1] Setup / contract
torch.manual_seed(0)
torch.set_grad_enabled(False)  # inference, as in a pipeline's __call__
text_encoder = TinyTextEncoder(dim=48, max_length=24)  # (B, L, 48)
dit = TinyDiT(latent_channels=4, text_dim=48, dim=64, patch_size=2)
count_calls(text_encoder, "text_encoder")
count_calls(dit, "dit")
latents = torch.randn(1, 4, 16, 16)  # (B, C, H/8, W/8): a 128x128 image
sigmas = flow_match_sigmas(4, shift=3.0)  # (N + 1,) shifted, 1 -> 0

# [2] Main transition
context = text_encoder.encode(["a red fox in snow"])  # (B, L, D_text)
for sigma, sigma_next in pairwise(sigmas):  # 4 steps, 1 -> 0
    v = dit(latents, sigma * 1000, context)  # same context every step
    assert v.shape == latents.shape  # (B, C, H', W'): the contract
    latents = flow_euler_step(latents, v, sigma, sigma_next)

# [3] Interview hook
block = dit.blocks[0]
tokens = dit.tokens(latents)  # (B, N, D), N = (16 / 2) * (16 / 2)
text = dit.text_embedding(context)  # (B, L, D): the text at the model's width
q = block.attn2.to_q(tokens)  # (B, N, D): from the latent
k = block.attn2.to_k(text)  # (B, L, D): from the text
probs = block.attn2.attention_probs(tokens, text)  # (B, h, N, L)
emb = dit.embed_timesteps(torch.tensor([500.0]))  # (B, D): from t
t_mod = dit.time_projection(emb)  # (B, 6, D): one projection for all blocks
shift, scale, gate = block.modulation(t_mod)[:3]  # (B, D) each, for all tokens
# [end]


def show(name: str, x: torch.Tensor, note: str) -> None:
    print(f"  {name:<8} {tuple(x.shape)!s:<16} {note}")


if __name__ == "__main__":
    print("Calls over one generation (4 steps, no guidance)")
    for name, n in calls.items():
        print(f"  {name:<13} {n}")

    print("\nWhere each condition enters (first block)")
    show("context", context, "text encoder output, computed once")
    show("tokens", tokens, "latent patches: 8 x 8 tokens of 2x2")
    show("q", q, "queries from latent tokens")
    show("k", k, "keys (and values) from text tokens")
    show("probs", probs, "each latent token's weights on the text")
    show("emb", emb, "timestep vector")
    show("shift", shift, "adaLN shift (scale, gate: same shape)")
    show("v", v, "prediction: the latent's shape")
    rows = probs.sum(dim=-1)
    ok = torch.allclose(rows, torch.ones_like(rows), atol=1e-6)
    print(f"  every latent token's weights sum to 1: {ok}")

    print("\nDiT tokens per image (s = 8, p = 2)")
    for size in (512, 1024):
        n = patch_token_count(size, size)
        print(f"  {size}x{size}: ({size}/16) x ({size}/16) = {n:,} tokens")

    other = text_encoder.encode(["a blue car at night"])
    z = torch.randn(1, 4, 16, 16)
    same = torch.equal(dit(z, 500.0, context), dit(z, 500.0, context))
    moved = not torch.allclose(dit(z, 500.0, context), dit(z, 500.0, other))
    print("\nThe prompt acts only through the keys and values")
    print(f"  same prompt, same prediction: {same}")
    print(f"  other prompt, other prediction: {moved}")
