"""Lab 08 · KV Cache Step-by-Step. Run: python kv_cache.py

Generation is a prefill over the prompt, then one decode step per new
token. The KV cache keeps every layer's keys (already rotated by RoPE) and
values, so a decode step computes one new position instead of all of them,
with the same logits. Its bytes grow linearly with the tokens, and reading
them (with the weights) at every step is what bounds decoding speed.
"""

import torch

from infralens.calculators import kv_cache_bytes
from infralens.transformer import (
    LLAMA2_7B,
    DecoderConfig,
    KVCache,
    TinyLlama,
    decode_cost,
    llama_param_breakdown,
)

# [1] Setup / contract
config = DecoderConfig()  # 2 layers, 4 query heads, 2 KV heads of 16
torch.manual_seed(0)
model = TinyLlama(config).eval()
prompt = torch.randint(0, config.vocab_size, (2, 12))  # (B, S) token ids
new_tokens = 6

# [2] Main transition
cache = KVCache()
with torch.no_grad():
    logits = model(prompt, cache=cache)  # prefill: (B, 12, V), cache S = 12
    ids, steps = prompt, []
    for _ in range(new_tokens):
        nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1) greedy
        ids = torch.cat([ids, nxt], dim=1)  # (B, S + 1)
        logits = model(nxt, cache=cache)  # decode: (B, 1, V), S += 1
        full = model(ids)[:, -1]  # recompute everything: (B, V)
        gap = (logits[:, -1] - full).abs().max().item()
        steps.append((cache.seq_len, cache.nbytes, gap))
B, H_kv, S, Dh = cache.keys[0].shape  # one layer's keys: (B, H_kv, S, Dh)
formula = kv_cache_bytes(
    layers=config.num_hidden_layers, kv_heads=H_kv, head_dim=Dh, seq=S,
    batch=B, dtype="fp32",
)  # fmt: skip

# [3] Interview hook
# a 7B model at 4096 tokens: the cache, and what one decode step reads
per_kv = {
    n: kv_cache_bytes(layers=32, kv_heads=n, head_dim=128, seq=4096)
    for n in (32, 8, 1)
}  # MHA, GQA-8, MQA in bf16: fmt: skip
parts = llama_param_breakdown(**LLAMA2_7B)
matrices = parts.total - parts.embeddings - parts.norms  # read every step
costs = {(b, n): decode_cost(params=matrices, layers=32, heads=32,
                             kv_heads=n, head_dim=128, seq=4096, batch=b)
         for n in (32, 8) for b in (1, 8, 64)}  # fmt: skip
# [end]


if __name__ == "__main__":
    GiB = 2**30
    print(f"Prompt {tuple(prompt.shape)}, then {new_tokens} greedy tokens")
    print(f"Cache: {cache.num_layers} layers x (keys, values), each (B, H_kv,"
          f" S, Dh) = {tuple(cache.keys[0].shape)}")  # fmt: skip
    print(f"  {config.num_attention_heads} query heads share "
          f"{config.num_key_value_heads} KV heads")  # fmt: skip
    print("\n step  cached S  cache bytes  max |cached - full|")
    for i, (s, nbytes, gap) in enumerate(steps, 1):
        print(f"  {i:>3}  {s:>8}  {nbytes:>11,}  {gap:.1e}")
    per_token = steps[1][1] - steps[0][1]
    print(f"  bytes per token: {per_token:,} = 2 x L x B x H_kv x Dh x 4")
    print(f"  formula for S = {S}: {formula:,.0f}; measured {cache.nbytes:,}")

    print("\nLlama-2-7B shape, 4096 tokens, bf16, batch 1:")
    for n, b in per_kv.items():
        print(f"  {n:>2} KV heads: {b / GiB:.4g} GiB")
    print("\nOne decode step at 4096 cached tokens per sequence, bf16:")
    print("  KV heads  batch   GFLOPs  weights GiB  cache GiB  FLOP/byte")
    for (b, n), c in costs.items():
        print(f"  {n:>8}  {b:>5}  {c.flops / 1e9:>7.1f}"
              f"  {c.weight_bytes / GiB:>11.2f}  {c.kv_bytes / GiB:>9.2f}"
              f"  {c.intensity:>9.2f}")  # fmt: skip
