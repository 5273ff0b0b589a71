"""Lab 06 · the loading path of a diffusers pipeline.

Run: python loading_path.py  (needs diffusers, transformers and tokenizers)

A Stable Diffusion pipeline of tiny random modules is saved the way a Hub
checkpoint is laid out, loaded back with a dtype per component, given a
new scheduler, turned into an img2img pipeline that shares its modules,
and offloaded. Each step prints what diffusers actually did.
"""

import json
import logging
import tempfile
from itertools import groupby
from pathlib import Path

import diffusers
import torch
import transformers

from infralens.pipelines import tiny_sd_pipeline

logging.disable(logging.WARNING)  # notes on absent optional components
for library in (diffusers, transformers):
    library.utils.logging.disable_progress_bar()
# read from the lazy module after the line above: importing them by name
# first would print transformers' note on torchvision
DiffusionPipeline = diffusers.DiffusionPipeline
EulerDiscreteScheduler = diffusers.EulerDiscreteScheduler
StableDiffusionImg2ImgPipeline = diffusers.StableDiffusionImg2ImgPipeline

# [1] Setup / contract
pipe = tiny_sd_pipeline(vae=True)  # real classes, random weights, SD 1.5 DDIM
folder = Path(tempfile.mkdtemp())
pipe.save_pretrained(folder)  # one subfolder per component + model_index.json
index = json.loads((folder / "model_index.json").read_text())
# {"unet": ["diffusers", "UNet2DConditionModel"], ..., "_class_name": ...}

# [2] Main transition
mixed = {"unet": torch.bfloat16, "default": torch.float32}
loaded = DiffusionPipeline.from_pretrained(folder, dtype=mixed)
parts = loaded.components  # name -> object, as registered by __init__
dtypes = {n: m.dtype for n, m in parts.items() if hasattr(m, "dtype")}
euler = EulerDiscreteScheduler.from_config(loaded.scheduler.config)
fresh = EulerDiscreteScheduler()  # the class defaults, not the checkpoint's
before = loaded.unet.dtype  # bfloat16
img2img = StableDiffusionImg2ImgPipeline.from_pipe(loaded)  # shares modules
shared = img2img.unet is loaded.unet
after = loaded.unet.dtype  # from_pipe's dtype default cast the shared unet

# [3] Interview hook
seq = type(pipe).model_cpu_offload_seq  # "text_encoder->...->unet->vae"
order: list[str] = []
for name, module in [("text_encoder", pipe.text_encoder), ("unet", pipe.unet),
                     ("vae", pipe.vae.decoder)]:  # fmt: skip
    module.register_forward_pre_hook(lambda m, a, n=name: order.append(n))
pipe.enable_model_cpu_offload(device="cpu")  # "cpu" stands in for "cuda"
with torch.no_grad():
    pipe("a red fox", num_inference_steps=3, height=16, width=16)
# [end]


if __name__ == "__main__":
    written = sorted(p.name for p in folder.iterdir())
    print(f"saved: {written}")
    print("model_index.json:")
    for key, value in index.items():
        print(f"  {key:<24} {value}")

    print("\nfrom_pretrained(folder, dtype={'unet': bf16, 'default': fp32})")
    print(f"  class from _class_name: {type(loaded).__name__}")
    for name, dtype in dtypes.items():
        print(f"  {name:<13} {dtype}")

    print("\nSwapping the scheduler (4 steps)")
    for label, s in [("from_config(config)", euler), ("default-built", fresh)]:
        s.set_timesteps(4)
        last = float(s.alphas_cumprod[-1])
        ts = [int(t) for t in s.timesteps]
        schedule = f"{label:<20} {s.config.beta_schedule:<14}"
        print(f"  {schedule} alpha_bar[999]={last:.5f} timesteps={ts}")

    print("\nStableDiffusionImg2ImgPipeline.from_pipe(loaded)")
    print(f"  shares the unet object: {shared}")
    print(f"  loaded.unet.dtype before: {before}, after: {after}")

    print(f"\nmodel_cpu_offload_seq = {seq!r}")
    runs = {name: len(list(calls)) for name, calls in groupby(order)}
    print(f"  components called, in order: {' -> '.join(runs)}")
    print(f"  calls per component: {runs}")
