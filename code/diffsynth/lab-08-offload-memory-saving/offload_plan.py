"""Lab 08 · Offload / Memory Saving. Run: python offload_plan.py

An offload plan is a residency schedule: which weights sit on the GPU at
each stage of a generation, and which are copied in for it. Here Wan 2.1
14B (text encoder, DiT, VAE in bf16) is replayed through a whole
generation under four policies and several memory budgets.
"""

from infralens.memory import plan_offload, wan21_t2v_components

# [1] Setup / contract
GiB = 2**30
parts = wan21_t2v_components(dtype="bf16")  # parameter counts x 2 bytes
text_encoder, dit, vae = parts
steps, calls_per_step = 50, 2  # DiffSynth defaults: CFG, no cfg_merge
schedule = (
    ["text_encoder"] * 2  # prompt, then negative prompt
    + ["transformer"] * (steps * calls_per_step)  # cond, uncond per step
    + ["vae"]  # decode once
)
card = 24 * GiB  # the device the plan must fit

# [2] Main transition
policies = {
    "all resident": ("resident", None),
    "model offload": ("model", None),
    "layer, limit 24": ("layer", card),
    "layer, limit 16": ("layer", 16 * GiB),
    "layer, limit 8": ("layer", 8 * GiB),
    "layer, keep none": ("layer", None),
}
plans = {
    name: plan_offload(parts, schedule, strategy=s, budget=b)
    for name, (s, b) in policies.items()
}
# the layer policy for the DiT in plain Python: keep blocks in execution
# order while they fit beside room for the largest streamed one
reserve, kept, streamed = max(dit.layer_bytes), [], []
for b in dit.layer_bytes:  # embeddings, 40 blocks, head
    fits = sum(kept) + b + reserve <= 16 * GiB
    (kept if fits else streamed).append(b)

# [3] Interview hook
bandwidth = 25e9  # assumed host-to-device bytes per second
per_step = {
    name: p.moved_per_call("transformer") * calls_per_step / bandwidth
    for name, p in plans.items()
}
# [end]

if __name__ == "__main__":
    print("Components (bf16)")
    for c in parts:
        n, size = len(c.layer_bytes), c.total_bytes / GiB
        print(f"  {c.name:<13}{n:>3} units{size:>8.2f} GiB")
    split = f"keep {len(kept)} units, stream {len(streamed)}"
    print(f"DiT, limit 16 GiB: {split}")
    print(f"\n{steps} steps x {calls_per_step} DiT calls, 24 GiB card,")
    print("copy time at an assumed 25 GB/s")
    head = f"{'peak':>6}{'fits':>6}{'per call':>10}"
    head += f"{'total':>9}{'s/step':>8}"
    print(f"  {'policy':<17}{head}")
    for name, p in plans.items():
        call = p.moved_per_call("transformer") / GiB
        fits = "yes" if p.peak_bytes <= card else "no"
        peak, total = p.peak_bytes / GiB, p.moved_bytes / GiB
        print(
            f"  {name:<17}{peak:>6.1f}{fits:>6}{call:>10.2f}"
            f"{total:>9.0f}{per_step[name]:>8.2f}"
        )
    print("  (GiB; s/step: seconds of copying per denoising step)")
