"""Lab 06 · Diffusers Pipeline Components. Run: python pipeline_components.py

A pipeline is not "the model": it is a graph of components, each reading
one thing and producing another. This starter builds a miniature
text-to-image pipeline of five tiny real components, runs the graph by
hand, checks that the pipeline call computes exactly that, and prints the
component table generated from the objects.
"""

import torch

from infralens.pipelines import (
    DIFFUSERS_COMPONENTS,
    TinyTextToImagePipeline,
    component_table,
    format_component_table,
)

DENOISERS = ("unet", "transformer", "transformer_2")

# [1] Setup / contract
torch.set_grad_enabled(False)  # inference, as in a pipeline's __call__
pipe = TinyTextToImagePipeline.from_seed(0)  # five components, random
prompt = ["a red fox in snow"]
s = pipe.vae_scale_factor  # 2 ** (len(block_out_channels) - 1) = 8
k = pipe.scaling_factor  # measured on this VAE, as in Lab 05

# [2] Main transition
ids, mask = pipe.tokenizer(prompt)  # (B, L) each
context = pipe.text_encoder(ids, mask)  # (B, L, D_text), once
pipe.scheduler.set_timesteps(4)  # timesteps (N,), noisiest first
g = torch.Generator().manual_seed(0)
latents = torch.randn(1, 4, 64 // s, 64 // s, generator=g)  # (B, C, h, w)
for t in pipe.scheduler.timesteps:
    eps = pipe.transformer(latents, t.expand(1), context)  # (B, C, h, w)
    latents = pipe.scheduler.step(eps, t, latents)  # (B, C, h, w)
image = (pipe.vae.decode(latents / k) / 2 + 0.5).clamp(0, 1)  # (B, 3, H, W)
# the pipeline call is this graph and nothing more
called = pipe(prompt, generator=torch.Generator().manual_seed(0))
assert torch.allclose(image, called, atol=1e-6)

# [3] Interview hook
rows = component_table(pipe, prompt)  # observed during a call, not typed
guided = component_table(pipe, prompt, guidance_scale=5.0)  # with CFG
# [end]


if __name__ == "__main__":
    print("Components (pipe.components)")
    for name, obj in pipe.components.items():
        print(f"  {name:<13} {type(obj).__name__}")
    print(f"  vae_scale_factor {s}, scaling_factor {k:.4f}")
    same = torch.equal(image, called)
    print(f"\nHand-run graph equals pipe(prompt): {same}")
    lo, hi = image.min().item(), image.max().item()
    print(f"  image {tuple(image.shape)}, values in [{lo:.2f}, {hi:.2f}]")

    print("\nComponent table, 4 steps, no guidance")
    print(format_component_table(rows))
    print("\nThe same pipeline with guidance_scale=5.0")
    print(format_component_table(guided))

    print("\nPipelines differ in components (diffusers 0.42.1)")
    for name, parts in DIFFUSERS_COMPONENTS.items():
        denoisers = " ".join(p for p in parts if p in DENOISERS)
        encoders = sum(p.startswith("text_encoder") for p in parts)
        print(f"  {name:<26} {denoisers:<25} text encoders: {encoders}")
