"""Lab 08 · Offload / Memory Saving. Run: python offload_plan.py

An offload plan is a residency schedule: which weights sit on the GPU at
each stage of a generation, and which are copied in for it. Here Wan 2.1
14B (text encoder, DiT, VAE in bf16) is replayed through a whole
generation under a planner's policies and under DiffSynth-Studio's own
vram_limit rule, which decides differently.
"""

from infralens.calculators import dit_flops
from infralens.memory import (
    diffsynth_residency,
    plan_offload,
    wan21_t2v_components,
)

# [1] Setup / contract
GiB = 2**30
parts = wan21_t2v_components(dtype="bf16")  # parameter counts x 2 bytes
text_encoder, dit, vae = parts
steps, calls_per_step = 50, 2  # DiffSynth defaults: CFG, no cfg_merge
schedule = (
    ["text_encoder"] * 2  # prompt, then negative prompt
    + ["dit"] * (steps * calls_per_step)  # cond, uncond per step
    + ["vae"]  # decode once
)
card = 24 * GiB  # the device the plan must fit

# [2] Main transition
policies = {
    "all resident": ("resident", None),
    "model offload": ("model", None),
    "planner, 24 GiB": ("layer", card),
    "planner, 16 GiB": ("layer", 16 * GiB),
    "planner, none": ("layer", None),
    "DiffSynth, 16": ("diffsynth", 16 * GiB),
    "DiffSynth, 0": ("diffsynth", 0),
    "DiffSynth, None": ("diffsynth", None),
}
plans = {
    name: plan_offload(parts, schedule, strategy=s, budget=b)
    for name, (s, b) in policies.items()
}
# DiffSynth's rule for the DiT in plain Python: at its forward, a layer that
# is not resident becomes resident if the device's used memory is under
# vram_limit; nothing is reserved for the layer itself
in_use, kept, streamed = 0, [], []
for b in dit.layer_bytes:  # embeddings, 40 blocks, head
    if in_use < 16 * GiB:  # mem_get_info: used < vram_limit
        kept.append(b)
        in_use += b  # resident from now on
    else:
        streamed.append(b)  # a temporary copy at every call
rule = diffsynth_residency(dit.layer_bytes, vram_limit=16)
assert [b for b, r in zip(dit.layer_bytes, rule, strict=True) if r] == kept

# [3] Interview hook
bandwidth = 25e9  # assumed host-to-device bytes per second
throughput = 400e12  # assumed FLOP/s the GPU sustains on the DiT
call = dit_flops(height=480, width=832, frames=81)  # one 480p DiT call
compute_s = calls_per_step * call.total / throughput  # per step
copy_s = {  # DiffSynth copies synchronously: this adds to compute_s
    name: p.moved_per_call("dit") * calls_per_step / bandwidth
    for name, p in plans.items()
}
# [end]

if __name__ == "__main__":
    print("Components (bf16)")
    for c in parts:
        n, size = len(c.layer_bytes), c.total_bytes / GiB
        print(f"  {c.name:<13}{n:>3} units{size:>8.2f} GiB")
    split = f"keeps {len(kept)} units ({sum(kept) / GiB:.1f} GiB)"
    print(f"DiT, DiffSynth vram_limit=16: {split}, streams {len(streamed)}")
    print(f"\n{steps} steps x {calls_per_step} DiT calls, 24 GiB card")
    gbs, tflops = bandwidth / 1e9, throughput / 1e12
    print(f"assumed: copies at {gbs:.0f} GB/s, compute {tflops:.0f} TFLOP/s,")
    print(f"so {compute_s:.1f} s of DiT compute per step at 480p")
    head = f"{'peak':>6}{'fits':>6}{'per call':>10}"
    head += f"{'total':>9}{'copy s':>8}"
    print(f"  {'policy':<17}{head}")
    for name, p in plans.items():
        per_call = p.moved_per_call("dit") / GiB
        fits = "yes" if p.peak_bytes <= card else "no"
        peak, total = p.peak_bytes / GiB, p.moved_bytes / GiB
        print(
            f"  {name:<17}{peak:>6.1f}{fits:>6}{per_call:>10.2f}"
            f"{total:>9.0f}{copy_s[name]:>8.2f}"
        )
    print("  (GiB; copy s: seconds of copying per step, on top of compute)")
