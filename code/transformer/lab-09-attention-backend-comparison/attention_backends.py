"""Lab 09 · Attention Backend Comparison. Run: python attention_backends.py

scaled_dot_product_attention is one function with several kernels; which
one runs is decided per call, from the inputs. FlashAttention's algorithm
(tiles of keys folded into an online softmax) is exact and never stores
the S x S scores. A paged KV cache applies the same "blocks, not one big
array" idea to the cache of a server.
"""

import torch
import torch.nn.functional as F  # noqa: N812

from infralens.attention import flash_attention, naive_attention, score_bytes
from infralens.calculators import kv_cache_bytes
from infralens.memory import peak_tensor_bytes
from infralens.transformer import PagedKVCache, cache_waste, sdpa_dispatch

# [1] Setup / contract
torch.manual_seed(0)
B, H, S, Dh = 1, 8, 1024, 64
q, k, v = torch.randn(3, B, H, S, Dh).unbind(0)  # (B, H, S, Dh) each
calls = {  # name -> (q, k, v, keyword arguments of SDPA)
    "fp32, is_causal": (q, k, v, {"is_causal": True}),
    "bf16, is_causal": (
        *(t.bfloat16() for t in (q, k, v)),
        {"is_causal": True},
    ),
    "fp32, boolean mask": (
        q,
        k,
        v,
        {"attn_mask": torch.ones(S, S).tril().bool()},
    ),
    "fp32, head_dim 256": (
        *(torch.randn(B, H, 64, 256) for _ in range(3)),
        {},
    ),
    "fp32, dropout 0.1": (q, k, v, {"dropout_p": 0.1}),
    "fp32, last dim strided": (*(t.mT.contiguous().mT for t in (q, k, v)), {}),
}

# [2] Main transition
dispatch = {
    name: sdpa_dispatch(a, b, c, **kw) for name, (a, b, c, kw) in calls.items()
}
reference = F.scaled_dot_product_attention(
    q, k, v, is_causal=True
)  # (B, H, S, Dh)
tiled = flash_attention(q, k, v, block_q=128, block_k=128, causal=True)
naive = naive_attention(q, k, v, causal=True)
peak = {
    "naive (S x S scores)": peak_tensor_bytes(
        lambda: naive_attention(q, k, v, causal=True)
    ),
    "tiled 128 x 128": peak_tensor_bytes(
        lambda: flash_attention(q, k, v, block_q=128, block_k=128, causal=True)
    ),
}

# [3] Interview hook
# a server's cache: requests of mixed lengths in a 4096-token context
lengths = [310, 1900, 45, 4096, 700, 1200, 88, 2500]
waste = cache_waste(lengths, max_seq_len=4096, block_size=16)
per_token = kv_cache_bytes(layers=32, kv_heads=8, head_dim=128, seq=1)  # bf16
paged = PagedKVCache(num_blocks=64, block_size=16, kv_heads=2, head_dim=8)
for seq_id, n in enumerate([37, 5, 60]):  # three short requests, one layer
    paged.append(seq_id, torch.randn(2, n, 8), torch.randn(2, n, 8))
# [end]


if __name__ == "__main__":
    print(
        f"SDPA on this machine (torch {torch.__version__}): which kernel ran"
    )
    for name, d in dispatch.items():
        print(f"  {name:<23} {d.backend:<16} {d.kernel}")
    print("  accepted when forced alone, and why the others refuse:")
    for name in ("fp32, is_causal", "fp32, dropout 0.1"):
        d = dispatch[name]
        print(f"    {name}: accepted {', '.join(d.accepted)}")
        for backend, reason in d.refusals.items():
            print(f"      {backend}: {reason}")

    print(f"\nCausal attention, (B, H, S, Dh) = {(B, H, S, Dh)}, fp32")
    for name, out in (("tiled online softmax", tiled), ("naive", naive)):
        gap = (out - reference).abs().max()
        print(f"  {name:<21} max |out - SDPA| = {gap:.1e}")
    scores = score_bytes(batch=B, heads=H, queries=S, keys=S, dtype="fp32")
    print(f"  S x S scores of all heads: {scores / 2**20:.0f} MiB")
    for name, nbytes in peak.items():
        print(f"  peak working memory, {name:<20} {nbytes / 2**20:8.2f} MiB")

    print(
        f"\nKV cache of {len(lengths)} requests, max 4096 tokens, blocks of 16"
    )
    print(f"  tokens held: {waste.tokens:,}")
    for kind in ("fixed", "paged"):
        slots = getattr(waste, f"{kind}_slots")
        gib = slots * per_token / 2**30
        frac = getattr(waste, f"{kind}_waste")
        print(
            f"  {kind}: {slots:>6,} slots = {gib:5.2f} GiB, {frac:5.1%} unused"
        )
    print(f"  block tables: {paged.block_tables}")
    keys, _ = paged.gather(1)
    print(f"  request 1 read back through its table: {tuple(keys.shape)}")
