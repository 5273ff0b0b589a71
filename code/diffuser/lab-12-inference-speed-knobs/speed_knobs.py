"""Lab 12 · Inference Speed Knobs Reading. Run: python speed_knobs.py

Each speed knob of a diffusion pipeline skips, shrinks or reorders one piece
of work. Here each one runs on a tiny DiT on CPU: which attention kernel
runs, how many blocks a first-block cache skips and how far the sample
moves, what fp8 weight storage saves and what it does not, which blocks
group offloading moves together and when, and what makes a compiled block
compile again. (The first torch.compile with inductor takes a while.)
"""

import copy
import textwrap
import time

import torch
import torch.nn.functional as F  # noqa: N812
from torch.nn.attention import SDPBackend, sdpa_kernel

from infralens.attention import score_bytes
from infralens.diffusion import flow_match_sigmas, flow_sample
from infralens.memory import (
    LAYERWISE_SKIP_PATTERNS,
    GroupOffload,
    enable_layerwise_casting,
    offload_timeline,
    peak_tensor_bytes,
    stored_bytes,
    wan_dit_layer_params,
)
from infralens.nets import TinyDiT
from infralens.pipelines import FirstBlockCache
from infralens.transformer import sdpa_dispatch

# [1] Setup / contract
torch.manual_seed(0)
torch.set_num_threads(1)  # matrices this small run faster on one thread
dit = TinyDiT(latent_channels=4, text_dim=32, dim=64, num_layers=6)
z = torch.randn(1, 4, 16, 16)  # (B, C, H, W): 64 tokens of 2x2 patches
text = torch.randn(1, 7, 32)  # (B, L, D_text)
sigmas = flow_match_sigmas(20, shift=3.0)[:-1]  # (N,) 20 steps, SD3's shift
q, k, v = torch.randn(3, 1, 2, 1024, 64).unbind(0)  # (B, H, S, Dh)


def sample(model, cache=None):  # the flow loop, one denoiser call a step
    def call(x, t, c):
        if cache is None:
            return model(x, t, c)
        with cache.context("cond"):  # one cache state per CFG branch
            return model(x, t, c)

    return flow_sample(call, z, sigmas, text)  # (B, C, H, W)


def rel(a, b):
    return ((a - b).norm() / b.norm()).item()


# [2] Main transition
# 1. attention: the kernel SDPA picks, and the S x S scores it never stores
kernels = {
    "float32": sdpa_dispatch(q, k, v).backend,
    "bfloat16": sdpa_dispatch(
        q.bfloat16(), k.bfloat16(), v.bfloat16()
    ).backend,
    "bool mask": sdpa_dispatch(
        q, k, v, attn_mask=torch.rand(1024, 1024) > 0.1
    ).backend,
    "dropout 0.1": sdpa_dispatch(q, k, v, dropout_p=0.1).backend,
}
with sdpa_kernel(SDPBackend.MATH):
    math_peak = peak_tensor_bytes(
        lambda: F.scaled_dot_product_attention(q, k, v)
    )
fused_peak = peak_tensor_bytes(lambda: F.scaled_dot_product_attention(q, k, v))

# 2. first-block cache: skip blocks 1-5 while block 0's residual barely moves
reference = sample(dit)
cached = {}
for tau in (0.05, 0.1, 0.2):
    cache = FirstBlockCache(dit.blocks, threshold=tau)
    out = sample(dit, cache)
    cached[tau] = (cache.skipped_blocks, rel(out, reference))
    cache.remove()

# 3. layerwise casting: fp8 storage, float32 compute
fp8 = copy.deepcopy(dit)
skip = (*LAYERWISE_SKIP_PATTERNS, "time_embedding")  # its dtype is read
cast = enable_layerwise_casting(
    fp8, torch.float8_e4m3fn, torch.float32, skip_patterns=skip
)
layer = fp8.blocks[0].ffn[0]
seen = []  # the weight's dtype while the layer runs
layer.register_forward_pre_hook(lambda m, args: seen.append(m.weight.dtype))
t500 = torch.tensor([500.0])
with torch.no_grad():
    drift = rel(fp8(z, t500, text), dit(z, t500, text))

# 4. group offload: which blocks move together, and when
offloaded = copy.deepcopy(dit)
off = GroupOffload(offloaded, num_blocks_per_group=2)
with torch.no_grad():
    offloaded(z, t500, text)
wan_block = wan_dit_layer_params()[1] * 2  # bytes of one Wan 14B block, bf16
copy_s = wan_block / 25e9  # at 25 GB/s host to device (an assumption)
timeline = {  # 40 blocks; compute per block assumed, not measured
    (c, prefetch): offload_timeline([c] * 40, [copy_s] * 40, prefetch=prefetch)
    for c in (0.1, 0.003)
    for prefetch in (False, True)
}

# [3] Interview hook
# 5. regional compile: one compiled block serves all six; a new shape
#    compiles again. First with a counting backend, then with inductor.


class Count:  # a torch.compile backend that counts graphs, then runs eager
    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def blocks_only(model, H=16, L=7, t=500.0, B=1, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)  # the same inputs for the same shapes
    zz = torch.randn(B, 4, H, H, generator=g).to(dtype)  # (B, C, H, W)
    words = torch.randn(B, L, 32, generator=g).to(dtype)  # (B, L, D_text)
    with torch.no_grad():
        x = model.tokens(zz).contiguous()  # (B, N, D)
        emb = model.embed_timesteps(torch.tensor([t] * B), batch=B)
        t_mod = model.time_projection(emb.to(dtype))  # (B, 6, D)
        ctx = model.text_embedding(words)  # (B, L, D)
        for block in model.blocks:  # the repeated region
            x = block(x, ctx, t_mod)  # (B, N, D)
    return x


counted, counter = copy.deepcopy(dit), Count()
for block in counted.blocks:
    block.compile(backend=counter)  # regional: each block, not the model
changes = {
    "first call": {},
    "the same shapes": {},
    "another timestep": {"t": 10.0},
    "256 tokens": {"H": 32},
    "144 tokens": {"H": 24},
    "text of 9 tokens": {"L": 9},
}
graphs = {}
for change, kwargs in changes.items():
    blocks_only(counted, **kwargs)
    graphs[change] = counter.graphs
counted.to(torch.bfloat16)
blocks_only(counted, dtype=torch.bfloat16)
graphs["bfloat16 weights"] = counter.graphs

inductor = copy.deepcopy(dit)
torch._inductor.config.compile_threads = 1  # no worker pool: quieter
start = time.perf_counter()
eager_out = blocks_only(inductor)
eager_s = time.perf_counter() - start  # the same call, not compiled
for block in inductor.blocks:
    block.compile()  # inductor: generated C++ kernels, needs a compiler
seconds = []
for _ in range(3):
    start = time.perf_counter()
    compiled_out = blocks_only(inductor)
    seconds.append(time.perf_counter() - start)
# [end]

if __name__ == "__main__":
    print("1. SDPA on this CPU, (1, 2, 1024, 64) queries, keys and values:")
    for name, backend in kernels.items():
        print(f"  {name:<12} {backend}")
    print(f"  peak bytes: math path {math_peak:,}, fused {fused_peak:,}")
    scores = score_bytes(
        batch=1, heads=2, queries=1024, keys=1024, dtype="fp32"
    )
    print(f"  (one (1, 2, 1024, 1024) float32 score tensor: {scores:,.0f})")

    print("\n2. First-block cache, 20 flow steps, 6 blocks (120 block calls):")
    print(f"  {'threshold':<10}{'blocks skipped':>16}{'sample moved':>14}")
    for tau, (skipped, moved) in cached.items():
        print(f"  {tau:<10}{skipped:>16}{moved:>14.2e}")

    print("\n3. Layerwise casting, fp8 storage, float32 compute:")
    before, after = stored_bytes(dit), stored_bytes(fp8)
    print(f"  before: {before}")
    print(f"  after:  {after}")
    print(f"  {len(cast)} layers cast; weight dtype while running: {seen[0]},")
    print(f"  after: {layer.weight.dtype}; output moved by {drift:.2e}")

    print("\n4. Group offload, 2 blocks per group, one forward:")
    for name, nbytes in off.group_bytes().items():
        print(f"  group {name:<18}{nbytes:>8,} bytes")
    marks = {"onload": "+", "offload": "-", "compute": ""}
    events = " ".join(marks[e.action] + e.name for e in off.events)
    print("  events (+ onload, - offload, else a module runs):")
    print(
        textwrap.fill(
            events, 76, initial_indent="    ", subsequent_indent="    "
        )
    )
    total = sum(stored_bytes(dit).values())
    print(f"  peak resident {off.peak_resident_bytes():,} of {total:,} bytes")
    print(f"  Wan 14B block: {wan_block / 1e9:.2f} GB, {copy_s * 1e3:.1f} ms")
    print("  40 such blocks, modelled (compute per block assumed):")
    for (c, prefetch), (total_s, waits) in timeline.items():
        how = "streams" if prefetch else "serial"
        print(
            f"    {c * 1e3:>3.0f} ms a block, {how:<7}: {total_s:.2f} s,"
            f" {sum(waits):.2f} s waiting for copies"
        )

    print("\n5. Regional compile: graphs compiled so far, after")
    for change, n in graphs.items():
        print(f"  {change:<18}{n:>3}")
    gap = (compiled_out - eager_out).abs().max().item()
    print(
        f"  inductor: {seconds[0]:.1f} s first call, then"
        f" {seconds[1] * 1e3:.1f} and {seconds[2] * 1e3:.1f} ms;"
        f" max |compiled - eager| {gap:.1e}"
    )
    print(
        f"  eager: {eager_s * 1e3:.1f} ms (wall-clock times depend on the"
        " machine and its load)"
    )
