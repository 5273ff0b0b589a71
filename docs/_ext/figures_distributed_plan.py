"""Figures of the distributed track's plan and network labs: the 3-D mesh's rank layout, and the alpha-beta fit.

The mesh comes from ``mesh_layout`` (torch's DeviceMesh on a fake world) for
Lab 07's plan; the fit times real gloo collectives between two processes on
the machine that builds the book, so that figure shows that machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import Rectangle

from infralens.distributed import (
    COLLECTIVES,
    collective_terms,
    fit_alpha_beta,
    load_plan,
    measure_collectives,
    mesh_layout,
)

ROOT = Path(__file__).resolve().parents[2]
PLAN = ROOT / "code" / "distributed" / "lab-07-3d-parallelism-plan" / "parallelism_plan.yaml"
HIGHLIGHT = 13  # the rank whose groups the pages follow


def mesh_layout_figure() -> plt.Figure:
    """Every rank of Lab 07's plan at its (pp, dp, tp) coordinate; a row of TP ranks is one node."""
    plan = load_plan(PLAN)
    layout = mesh_layout({"pp": plan.pp, "dp": plan.dp, "tp": plan.tp})
    rows = plan.pp * plan.dp
    fig, ax = plt.subplots(figsize=(8.6, 4.4), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    cells = {}
    for s in range(plan.pp):
        for d in range(plan.dp):
            y = rows - 1 - (s * plan.dp + d)
            for t in range(plan.tp):
                rank = layout.mesh[s, d, t].item()
                node = rank // plan.cluster.gpus_per_node
                ax.add_patch(Rectangle((t, y), 0.94, 0.88, color=cmap(node % 20), alpha=0.45))
                ax.text(t + 0.47, y + 0.44, str(rank), ha="center", va="center", fontsize=9)
                cells[rank] = (t, y)
            ax.text(plan.tp + 0.15, y + 0.44, f"node {rank // plan.cluster.gpus_per_node}", va="center", fontsize=8)
            ax.text(-0.15, y + 0.44, f"stage {s}, replica {d}", ha="right", va="center", fontsize=8)
    styles = {"dp": ("tab:red", "-"), "pp": ("tab:blue", "--")}
    for axis, (colour, ls) in styles.items():
        for rank in layout.group_of(HIGHLIGHT, axis):
            t, y = cells[rank]
            ax.add_patch(Rectangle((t, y), 0.94, 0.88, fill=False, lw=2, ec=colour, ls=ls))
        ax.plot([], [], color=colour, ls=ls, lw=2, label=f"rank {HIGHLIGHT}'s {axis} group")
    t, y = cells[HIGHLIGHT]
    ax.add_patch(Rectangle((0, y - 0.04), plan.tp - 0.06, 0.96, fill=False, lw=1.5, ec="black"))
    ax.plot([], [], color="black", lw=1.5, label=f"rank {HIGHLIGHT}'s tp group (one node)")
    ax.set(xlim=(-2.6, plan.tp + 1.1), ylim=(-0.2, rows + 0.1), title="DeviceMesh (pp=4, dp=2, tp=8)")
    ax.set_xticks([i + 0.47 for i in range(plan.tp)], [f"tp {i}" for i in range(plan.tp)], fontsize=8)
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3, fontsize=8, frameon=False)
    return fig


def alpha_beta_fit_figure() -> plt.Figure:
    """Measured gloo collectives (2 processes) against the fitted alpha-beta model, on log-log axes."""
    samples = measure_collectives(2, timeout=120)
    fit = fit_alpha_beta(samples, 2)
    fig, ax = plt.subplots(figsize=(8.6, 3.8), constrained_layout=True)
    for colour, name in zip(("tab:blue", "tab:orange", "tab:green", "tab:red"), COLLECTIVES, strict=True):
        pts = [s for s in samples if s.collective == name]
        sizes = [s.nbytes for s in pts]
        ax.plot(sizes, [s.seconds * 1e6 for s in pts], "o", color=colour, label=f"{name} measured")
        terms = collective_terms(name, 2)
        model = [terms.time(n, alpha=fit.alpha, beta=fit.beta) * 1e6 for n in sizes]
        ax.plot(sizes, model, "-", color=colour, alpha=0.7)
    ax.plot([], [], "-", color="grey", label="model (at n = 2 the last three share a line)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set(
        xlabel="message N (bytes, nccl-tests convention)",
        ylabel="time (microseconds)",
        title=(
            f"gloo, 2 processes on this build's machine: alpha = {fit.alpha * 1e6:.0f} us, "
            f"1/beta = {fit.bandwidth / 1e9:.2f} GB/s, median |error| {fit.median_abs_error:.0%}"
        ),
    )
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, ncol=2)
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "mesh_layout": mesh_layout_figure,
    "alpha_beta_fit": alpha_beta_fit_figure,
}
