"""Lab 01 · Pipeline Config Reading. Run: python read_config.py

pipeline_config.yaml names the family, the three components and every
runtime choice of a Wan 2.1-style text-to-video run. load_config turns its
strings into torch dtypes, devices and checked sizes, and refuses anything
the VAE or the DiT could not run, naming the key path.
"""

import textwrap
from pathlib import Path

import torch
import yaml

from infralens.diffusion import LATENT_FAMILIES, latent_shape
from infralens.pipelines import DIFFSYNTH_WAN_DEFAULTS, load_config

# [1] Setup / contract
CONFIG = Path(__file__).resolve().parent / "pipeline_config.yaml"
TEXT = CONFIG.read_text()
raw = yaml.safe_load(TEXT)  # plain dicts, strings and numbers
config = load_config(CONFIG)  # checked: torch dtypes, devices, sizes

# [2] Main transition
rt = config.runtime
dit = config.components["dit"]
assert dit.dtype is getattr(torch, raw["components"]["dit"]["dtype"])
fam = LATENT_FAMILIES[config.family]  # Wan 2.1: C = 16, s = 8, t_f = 4
shape = (
    1,
    fam.channels,
    1 + (rt.num_frames - 1) // fam.temporal_factor,
    rt.height // fam.spatial_factor,
    rt.width // fam.spatial_factor,
)  # (B, C, F', H', W')
assert shape == config.latent_shape
calls = rt.num_inference_steps * (1 if rt.guidance_scale == 1 else 2)
assert calls == config.denoiser_calls

# [3] Interview hook
# A demo call pipe(prompt=...) in DiffSynth-Studio fills these in for you:
hidden = DIFFSYNTH_WAN_DEFAULTS
demo_shape = latent_shape(
    "wan2.1",
    height=hidden["height"],
    width=hidden["width"],
    frames=hidden["num_frames"],
)  # (B, C, F', H', W')
demo_calls = hidden["num_inference_steps"] * 2  # cfg_scale 5: two calls
# one-line edits of the YAML that the loader refuses
EDITS = [
    ("num_frames: 9", "num_frames: 8"),
    ("height: 32", "height: 40"),
    ("dtype: float32  # latents", "dtype: fp8  # latents"),
    ("guidance_scale:", "guidance_sacle:"),
    ("offload: model", "offload: off"),
]
# [end]


def refusal(config_source) -> str:
    try:
        load_config(config_source)
    except ValueError as err:
        msg = f"ValueError: {err}"
    else:
        msg = "accepted"
    return textwrap.fill(
        msg, 76, initial_indent="    ", subsequent_indent="      "
    )


if __name__ == "__main__":
    print(f"{CONFIG.name}: family {config.family}\n")
    print(f"  {'component':<13} {'loader':<22} {'dtype':<15} device")
    for name, spec in config.components.items():
        cols = f"{name:<13} {spec.loader:<22} {spec.dtype!s:<15}"
        print(f"  {cols} {spec.device}")
    print("\n  params (the sizes each loader receives)")
    for name, spec in config.components.items():
        sizes = ", ".join(f"{k}={v}" for k, v in spec.params.items())
        print(f"  {name:<13} {sizes}")

    print("\nruntime: YAML value -> checked value (type)")
    for key, value in raw["runtime"].items():
        checked = getattr(rt, key)
        kind = type(checked).__name__
        print(f"  {key:<20} {value!r:<10} -> {checked!s:<14} ({kind})")

    print(f"\nLatent (B, C, F', H', W') = {config.latent_shape}")
    steps = rt.num_inference_steps
    print(f"DiT calls: {steps} steps x {calls // steps} = {calls}")

    print("\nA demo call pipe(prompt=...) hides these (DiffSynth Wan):")
    for key, value in hidden.items():
        print(f"  {key:<20} {value!r}")
    print(f"  -> latent {demo_shape}, {demo_calls} DiT calls")

    print("\nEdits the loader refuses:")
    for old, new in EDITS:
        print(f"  {new}\n{refusal(TEXT.replace(old, new, 1))}")
    no_vae = {**raw, "components": {**raw["components"]}}
    del no_vae["components"]["vae"]
    print(f"  (no vae block)\n{refusal(no_vae)}")
