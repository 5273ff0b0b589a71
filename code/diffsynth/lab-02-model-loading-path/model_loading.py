"""Lab 02 · Model Loading Path. Run: python model_loading.py

The Lab 01 config names three loaders; a registry maps each name to a
module class, and load_component builds the module in the config's
dtype on its device. Then: what each component weighs, and which of
them must be on the compute device in each stage of a run.
"""

import textwrap
from pathlib import Path

import torch

from infralens.pipelines import (
    DTYPES,
    LOADERS,
    architecture_fingerprint,
    component_stats,
    load_component,
    load_components,
    load_config,
    stage_residency,
)

# [1] Setup / contract
HERE = Path(__file__).resolve().parent
LAB01 = HERE.parent / "lab-01-pipeline-config-reading"
TEXT = (LAB01 / "pipeline_config.yaml").read_text()
config = load_config(TEXT)
spec = config.components["dit"]  # loader, dtype, device, params
loader = LOADERS[spec.loader]  # "tiny_video_dit" -> TinyVideoDiT

# [2] Main transition
# the boundary, by hand: name -> class -> module -> dtype and device
by_hand = loader(**spec.params)  # DiffSynth: cls(**extra_kwargs)
by_hand = by_hand.to(dtype=spec.dtype, device=spec.device)
by_hand = by_hand.eval().requires_grad_(False)
dit = load_component("dit", spec)  # the same steps, with checks
pairs = zip(by_hand.parameters(), dit.parameters(), strict=True)
assert all(torch.equal(a, b) for a, b in pairs)
modules = load_components(config)  # all three, wired and checked
n_params = sum(p.numel() for p in dit.parameters())
n_bytes = sum(p.numel() * p.element_size() for p in dit.parameters())
assert (n_params, n_bytes) == (
    component_stats(dit).parameters,
    component_stats(dit).bytes,
)

# [3] Interview hook
# residency: what is on the compute device in each stage of a run
plans = {}
for offload in ("resident", "model", "layer"):
    text = TEXT.replace("offload: model", f"offload: {offload}")
    plans[offload] = stage_residency(load_config(text), modules)
# DiffSynth-Studio finds the class from the weights' names and shapes
same_arch = loader(**{**spec.params, "seed": 1})  # other weights
deeper = loader(**{**spec.params, "num_layers": 3})  # other shapes
# [end]


def kib(n: int) -> str:
    return f"{n / 1024:.1f}"


def row(*cells: object, widths=(15, 19, 10, 15, 7, 6)) -> str:
    pairs = zip(cells, widths, strict=True)
    return ("  " + " ".join(f"{c!s:<{w}}" for c, w in pairs)).rstrip()


if __name__ == "__main__":
    print("Registry (config name -> class)")
    for name, cls in LOADERS.items():
        print(f"  {name:<22} -> {cls.__name__}")

    print("\nLoaded components (load_components)")
    print(row("role", "class", "parameters", "dtype", "KiB", "device"))
    for name, module in modules.items():
        s = component_stats(module)
        n, size = f"{s.parameters:,}", kib(s.bytes)
        print(row(name, s.class_name, n, s.dtype, size, s.device))

    print("\nThe same parameters in each dtype, KiB")
    print(row("role", *DTYPES, widths=(15, 9, 9, 9)))
    for name, module in modules.items():
        sizes = component_stats(module).bytes_by_dtype.values()
        print(row(name, *map(kib, sizes), widths=(15, 9, 9, 9)))

    head = ("stage", "calls", "on device", "weights KiB", "copied KiB")
    widths = (15, 6, 23, 12, 10)
    for offload, stages in plans.items():
        print(f"\nResidency with offload: {offload}")
        print(row(*head, widths=widths))
        for st in stages:
            where = ", ".join(st.on_device)
            sizes = kib(st.weight_bytes), kib(st.moved_bytes)
            print(row(st.stage, st.calls, where, *sizes, widths=widths))
        peak = kib(max(st.weight_bytes for st in stages))
        moved = kib(sum(st.moved_bytes for st in stages))
        print(f"  peak weights {peak} KiB, copied {moved} KiB")

    print("\nA DiT identified by its weights' names and shapes")
    variants = {"seed 0": dit, "seed 1": same_arch, "3 layers": deeper}
    for label, m in variants.items():
        print(f"  {label:<9} {architecture_fingerprint(m)}")

    print("\nConfig edits that fail at the boundary:")
    for old, new in [
        ("num_layers: 2}", "num_layer: 2}"),
        ("text_dim: 32", "text_dim: 48"),
        ("loader: tiny_video_dit", "loader: tiny_vdit"),
    ]:
        try:
            load_components(load_config(TEXT.replace(old, new, 1)))
        except ValueError as err:
            msg = textwrap.fill(f"ValueError: {err}", 72)
            print(f"  {new}\n" + textwrap.indent(msg, "    "))
