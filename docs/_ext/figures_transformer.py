"""Figures of the transformer track: attention masks, RoPE angles, attention FLOPs; drawn from infralens.transformer."""

from __future__ import annotations

from collections.abc import Callable

import matplotlib.pyplot as plt
import torch
from matplotlib.colors import ListedColormap

from infralens.transformer import (
    MultiHeadAttention,
    attention_crossover,
    attention_flops,
    causal_mask,
    count_attention_flops,
    padded_causal_mask,
    rope_angles,
    rope_inv_freq,
    rope_scaled_inv_freq,
)

VISIBLE = ListedColormap(["#d9d9d9", "#2b6cb0"])  # hidden, visible


def _grid(ax, visible: torch.Tensor, title: str, *, first_query: int = 0) -> None:
    """One boolean mask (queries x keys) as a grid of squares, keys on x."""
    q_len, k_len = visible.shape
    ax.imshow(visible.int().numpy(), cmap=VISIBLE, vmin=0, vmax=1, aspect="equal")
    ax.set_xticks(range(k_len), [str(j) for j in range(k_len)], fontsize=7)
    ax.set_yticks(range(q_len), [str(first_query + i) for i in range(q_len)], fontsize=7)
    ax.set_xticks([x - 0.5 for x in range(1, k_len)], minor=True)
    ax.set_yticks([y - 0.5 for y in range(1, q_len)], minor=True)
    ax.grid(which="minor", color="white", lw=1.5)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("key position", fontsize=8)
    ax.set_title(title, fontsize=9)


def masks_figure() -> plt.Figure:
    """Causal, causal with left padding for a batch of two, and a decode step against a cache."""
    S = 8
    attention_mask = torch.tensor([[1] * S, [0, 0, 0] + [1] * (S - 3)])  # (B, S): row 1 left-padded
    padded = padded_causal_mask(attention_mask) == 0  # (B, 1, S, S)
    fig = plt.figure(figsize=(9, 3.3), constrained_layout=True)
    axes = fig.subplots(1, 3, gridspec_kw={"width_ratios": [1, 1, 1]})
    _grid(axes[0], causal_mask(S) == 0, "causal, S = 8")
    axes[0].set_ylabel("query position", fontsize=8)
    _grid(axes[1], padded[1, 0], "causal & padding (3 pad tokens on the left)")
    _grid(axes[2], causal_mask(1, S) == 0, "decode: 1 query, 8 cached keys", first_query=S - 1)
    return fig


def flops_figure() -> plt.Figure:
    """Projection and score/value FLOPs of one attention layer as S grows, D = 4096, with the crossings marked.

    Points are counted by torch's FlopCounterMode on a MultiHeadAttention built
    on the meta device; lines are the formula of ``attention_flops``.
    """
    D, H = 4096, 32
    lengths = [2**p for p in range(8, 17)]  # 256 .. 65536
    with torch.device("meta"):
        layers = {kv: MultiHeadAttention(D, H, kv_heads=kv) for kv in (32, 8)}
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for kv, colour, label in ((32, "#2b6cb0", "MHA"), (8, "#2f855a", "GQA, 8 KV heads")):
        formula = [attention_flops(batch=1, seq_len=s, dim=D, heads=H, kv_heads=kv) for s in lengths]
        measured = [count_attention_flops(layers[kv], torch.empty(1, s, D, device="meta")) for s in lengths]
        ax.plot(lengths, [f.projections for f in formula], color=colour, label=f"projections, {label}")
        ax.plot(lengths, [m.projections for m in measured], "o", color=colour, ms=4)
        crossing = attention_crossover(dim=D, heads=H, kv_heads=kv)
        ax.axvline(crossing, color=colour, ls="--", lw=0.9)
        ax.annotate(f"S* = {crossing:,.0f}", (crossing, 3e10), rotation=90, fontsize=8, color=colour,
                    xytext=(3, 0), textcoords="offset points")  # fmt: skip
    formula = [attention_flops(batch=1, seq_len=s, dim=D, heads=H) for s in lengths]
    measured = [count_attention_flops(layers[32], torch.empty(1, s, D, device="meta")) for s in lengths]
    ax.plot(lengths, [f.attention for f in formula], color="#c05621", label="scores + values (both)")
    ax.plot(lengths, [m.attention for m in measured], "o", color="#c05621", ms=4)
    ax.set(xscale="log", yscale="log", xlabel="sequence length S", ylabel="FLOPs of one layer (B = 1)")
    ax.set_xticks(lengths, [f"{s:,}" for s in lengths], fontsize=7)
    ax.set_title("Attention layer, D = 4096, H = 32: dots counted by torch's FlopCounterMode, lines the formula",
                 fontsize=9)  # fmt: skip
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    return fig


def rope_figure() -> plt.Figure:
    """cos of the RoPE angle per channel pair across positions, and each pair's wavelength with 4x scalings."""
    Dh, positions = 128, torch.arange(512)
    theta = rope_angles(positions, Dh)  # (S, Dh/2)
    fig, (ax_map, ax_wave) = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True,
                                          gridspec_kw={"width_ratios": [1.6, 1]})  # fmt: skip
    image = ax_map.imshow(theta.T.cos().numpy(), aspect="auto", cmap="RdBu", vmin=-1, vmax=1, origin="lower",
                          extent=(0, len(positions), -0.5, Dh // 2 - 0.5), interpolation="nearest")  # fmt: skip
    ax_map.set(xlabel="position m", ylabel="channel pair i", title=r"$\cos(m\,\omega_i)$, $D_h$ = 128, base 10000")
    fig.colorbar(image, ax=ax_map, shrink=0.8)
    pairs = torch.arange(Dh // 2)
    for label, inv_freq, style in (
        ("base 10000", rope_inv_freq(Dh), "-"),
        ("linear x4", rope_scaled_inv_freq(Dh, factor=4.0), "--"),
        ("NTK x4", rope_scaled_inv_freq(Dh, factor=4.0, method="ntk"), ":"),
    ):
        ax_wave.plot(pairs, 2 * torch.pi / inv_freq, style, label=label)
    ax_wave.set(yscale="log", xlabel="channel pair i", ylabel="wavelength (tokens)", title="one full turn takes")
    ax_wave.grid(alpha=0.3, which="both")
    ax_wave.legend(fontsize=8)
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "transformer_rope": rope_figure,
    "transformer_masks": masks_figure,
    "transformer_attention_flops": flops_figure,
}
