"""Lab 08 · diffusers' LoRA loading path, on tiny random modules.

Run: python lora_loading.py  (needs diffusers, transformers, tokenizers, peft)

A LoRA file in kohya's format (the one most shared files use) is loaded
into a tiny Stable Diffusion pipeline: its keys are renamed, its alphas
split off, PEFT layers injected around exactly the targeted projections,
and the adapter is weighted, fused and unloaded. The loaded layer is
compared with this lab's LoRALinear on the same A, B and alpha.
"""

import logging

import diffusers
import peft
import torch
import transformers
from torch import nn

from infralens.adapters import LoRALinear
from infralens.pipelines import tiny_sd_pipeline

logging.disable(logging.WARNING)
for library in (diffusers, transformers):
    library.utils.logging.disable_progress_bar()


def kohya(
    prefix: str, d_in: int, d_out: int, rank: int, alpha: float, seed: int
):
    """One module's LoRA as sd-scripts writes it: lora_down, lora_up, alpha."""
    g = torch.Generator().manual_seed(seed)
    return {
        f"{prefix}.lora_down.weight": torch.randn(rank, d_in, generator=g),
        f"{prefix}.lora_up.weight": torch.randn(d_out, rank, generator=g),
        f"{prefix}.alpha": torch.tensor(alpha),
    }


# [1] Setup / contract
pipe = tiny_sd_pipeline()  # CLIP text encoder + UNet, real classes
target = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # 8 -> 8
W = pipe.unet.get_submodule(target).weight.detach().clone()  # (d_out, d_in)
rank, alpha = 4, 2.0
unet_key = "lora_unet_" + target.replace(".", "_")  # kohya's flat names
te_key = "lora_te_text_model_encoder_layers_0_self_attn_{}_proj"  # q and out
file = kohya(unet_key, 8, 8, rank, alpha, 1)  # A (4, 8), B (8, 4), alpha 2
for seed, proj in enumerate(("q", "out"), start=2):  # the text encoder too
    file |= kohya(te_key.format(proj), 16, 16, 2, 2.0, seed)

# [2] Main transition
converted, alphas = pipe.lora_state_dict(dict(file))  # renamed; alphas apart
pipe.load_lora_weights(dict(file), adapter_name="style")  # unet + text_encoder
layer = pipe.unet.get_submodule(target)  # peft's lora.Linear around W
r, lora_alpha, scaling = (
    d["style"] for d in (layer.r, layer.lora_alpha, layer.scaling)
)
wrapped = {part: [n for n, m in getattr(pipe, part).named_modules()
                  if isinstance(m, peft.tuners.lora.Linear)]
           for part in ("unet", "text_encoder")}  # fmt: skip
base = nn.Linear(8, 8, bias=False)  # to_q has no bias, as in SD
base.load_state_dict(layer.base_layer.state_dict())  # the same W
ours = LoRALinear(base, rank=rank, lora_alpha=alpha)  # this lab's layer
with torch.no_grad():
    ours.lora_A.copy_(file[f"{unet_key}.lora_down.weight"])  # (r, d_in)
    ours.lora_B.copy_(file[f"{unet_key}.lora_up.weight"])  # (d_out, r)
x = torch.randn(3, 8)  # three tokens entering to_q
with torch.no_grad():
    same = torch.allclose(layer(x), ours(x), atol=1e-5)

# [3] Interview hook
pipe.set_adapters(["style"], adapter_weights=[0.5])  # strength: scaling x 0.5
half = layer.scaling["style"]  # 0.5 * alpha / r
pipe.set_adapters(["style"], adapter_weights=[1.0])
pipe.fuse_lora(lora_scale=0.7)  # W += 0.7 * (alpha / r) * B A, in place
pipe.unload_lora_weights()  # removes the wrappers, not the fused update
after = pipe.unet.get_submodule(target).weight  # plain nn.Linear again
still_fused = not torch.allclose(after, W)
# [end]


if __name__ == "__main__":
    print("kohya file: one UNet projection, two text-encoder projections")
    for key, value in file.items():
        print(f"  {key:<72} {tuple(value.shape)}")
    print("\nlora_state_dict: renamed for diffusers, alphas split off")
    for key in converted:
        print(f"  {key}")
    print(f"  network_alphas: { {k: float(v) for k, v in alphas.items()} }")

    print("\nload_lora_weights(file, adapter_name='style')")
    print(f"  {target} is now {type(layer).__module__}.{type(layer).__name__}")
    print(f"  r={r}, lora_alpha={lora_alpha}, scaling={scaling} = alpha / r")
    for part, names in wrapped.items():
        print(f"  {part} modules wrapped: {len(names)} {names}")
    print(f"  equals LoRALinear with the same A, B, alpha: {same}")

    print("\nset_adapters(['style'], adapter_weights=[0.5])")
    print(f"  scaling {half} = 0.5 * {alpha} / {rank}")
    print("fuse_lora(lora_scale=0.7), then unload_lora_weights()")
    print(f"  layer is {type(pipe.unet.get_submodule(target)).__name__} again")
    print(f"  weight still carries the LoRA: {still_fused}")
