"""Figures of the transformer track's inference labs: the KV cache per decoded token, quantization error per scheme."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import torch

from infralens.calculators import kv_cache_bytes, weight_memory
from infralens.transformer import LLAMA2_7B, DecoderConfig, KVCache, TinyLlama, llama_param_count, quantize_symmetric

GiB = 2**30
SCHEMES = {  # label -> quantize_symmetric arguments
    "int8, a scale per tensor": {"bits": 8, "scheme": "tensor"},
    "int8, a scale per row": {"bits": 8, "scheme": "row"},
    "int4, a scale per row": {"bits": 4, "scheme": "row"},
    "int4, a scale per 128": {"bits": 4, "scheme": "group", "group_size": 128},
}


def kv_cache_growth_figure() -> plt.Figure:
    """Left: a tiny model's cache measured after prefill and every decode step. Right: a 7B cache by layout."""
    config = DecoderConfig()
    torch.manual_seed(0)
    model = TinyLlama(config).eval()
    cache = KVCache()
    measured = []
    with torch.no_grad():
        logits = model(torch.randint(0, config.vocab_size, (1, 8)), cache=cache)  # prefill: 8 tokens
        measured.append((cache.seq_len, cache.nbytes))
        for _ in range(24):  # greedy decode steps
            logits = model(logits[:, -1].argmax(-1, keepdim=True), cache=cache)
            measured.append((cache.seq_len, cache.nbytes))
    fig, (ax_tiny, ax_7b) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    seqs = [s for s, _ in measured]
    formula = [
        kv_cache_bytes(
            layers=config.num_hidden_layers,
            kv_heads=config.num_key_value_heads,
            head_dim=config.dh,
            seq=s,
            dtype="fp32",
        )
        for s in seqs
    ]
    ax_tiny.plot(seqs, [f / 1024 for f in formula], color="grey", lw=1, label="kv_cache_bytes")
    ax_tiny.plot(seqs, [b / 1024 for _, b in measured], "o", ms=3.5, label="KVCache.nbytes (measured)")
    ax_tiny.annotate("after the prefill", (seqs[0], measured[0][1] / 1024), textcoords="offset points", xytext=(8, 0))
    ax_tiny.set(xlabel="tokens in the cache", ylabel="KiB", title="tiny model, fp32: one step per token")
    ax_tiny.legend(fontsize=7)

    tokens = torch.linspace(256, 32768, 128).round().int().tolist()
    for kv, label in ((32, "32 KV heads (MHA)"), (8, "8 KV heads (GQA)"), (1, "1 KV head (MQA)")):
        ax_7b.plot(
            tokens, [kv_cache_bytes(layers=32, kv_heads=kv, head_dim=128, seq=s) / GiB for s in tokens], label=label
        )
    weights = weight_memory(params=llama_param_count(**LLAMA2_7B), dtype="bf16").total_bytes / GiB
    ax_7b.axhline(weights, color="black", ls="--", lw=1, label="weights, bf16")
    ax_7b.set(xlabel="context length S (tokens)", ylabel="GiB", title="Llama-2-7B shape, bf16, one sequence")
    ax_7b.legend(fontsize=7)
    for ax in (ax_tiny, ax_7b):
        ax.grid(alpha=0.3)
    return fig


def quantization_error_figure() -> plt.Figure:
    """Histograms of the rounding error of one weight matrix under four quantization schemes."""
    g = torch.Generator().manual_seed(0)
    w = torch.randn(256, 1024, generator=g) * 0.02  # (out, in): a projection's weights
    w[:, 17] *= 8  # an input channel with larger weights, as trained models have
    fig, ax = plt.subplots(figsize=(9, 3.4), constrained_layout=True)
    errors = {label: quantize_symmetric(w, **kwargs) for label, kwargs in SCHEMES.items()}
    errors = {label: (q, (q.dequantize() - w).flatten()) for label, q in errors.items()}
    edge = max(e.abs().max().item() for _, e in errors.values())
    bins = torch.linspace(-edge, edge, 161)
    for label, (q, err) in errors.items():
        rms = err.pow(2).mean().sqrt().item()
        ax.hist(err.numpy(), bins=bins.numpy(), histtype="step", lw=1.3,
                label=f"{label}: RMS {rms:.1e}, {q.nbytes / w.numel():.3f} bytes/weight")  # fmt: skip
    ax.set_yscale("log")
    ax.set(xlabel="dequantized - original weight", ylabel="weights", title="rounding error of a 256 x 1024 weight")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "kv_cache_growth": kv_cache_growth_figure,
    "quantization_errors": quantization_error_figure,
}
