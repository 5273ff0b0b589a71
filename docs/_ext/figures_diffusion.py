"""Figures of the diffusion tracks: noise schedules, and a picture noised at several timesteps."""

from __future__ import annotations

import math
from collections.abc import Callable

import matplotlib.pyplot as plt
import torch

from infralens.diffusion import add_noise, alphas_cumprod, make_betas, snr

# The three schedules as the book discusses them: DDPM's linear schedule with
# diffusers' defaults, Stable Diffusion's scaled_linear settings, and the cosine one.
SCHEDULE_SETTINGS = {
    "linear (1e-4 to 0.02, DDPM)": dict(schedule="linear"),
    "scaled_linear (0.00085 to 0.012, SD)": dict(schedule="scaled_linear", beta_start=0.00085, beta_end=0.012),
    "squaredcos_cap_v2 (cosine)": dict(schedule="squaredcos_cap_v2"),
}
NOISED_TIMESTEPS = (0, 50, 150, 300, 500, 999)


def schedules_figure() -> plt.Figure:
    """alpha_bar_t and log10 SNR(t) for the three schedules of ``make_betas``."""
    fig, (ax_ab, ax_snr) = plt.subplots(1, 2, figsize=(9, 3.4), constrained_layout=True)
    for label, kwargs in SCHEDULE_SETTINGS.items():
        ab = alphas_cumprod(make_betas(**kwargs, dtype=torch.float64))  # (T,)
        t = torch.arange(len(ab))
        ax_ab.plot(t, ab, label=label)
        ax_snr.plot(t, torch.log10(snr(ab)), label=label)
    ax_ab.set(xlabel="training timestep t", ylabel=r"$\bar\alpha_t$", title="signal kept")
    ax_snr.set(xlabel="training timestep t", ylabel=r"$\log_{10}\,\mathrm{SNR}(t)$", title="signal-to-noise ratio")
    ax_snr.axhline(0, color="grey", lw=0.8, ls="--")
    ax_ab.legend(fontsize=7, loc="upper right")
    for ax in (ax_ab, ax_snr):
        ax.grid(alpha=0.3)
    return fig


def synthetic_scene(size: int = 96) -> torch.Tensor:
    """A small RGB picture in [-1, 1], shape ``(3, size, size)``: sky, sun, two hills."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")  # (H, W)
    img = torch.stack([0.35 + 0.3 * y, 0.55 + 0.25 * y, 0.95 - 0.1 * y])  # (3, H, W) sky
    sun = ((x - 0.72) ** 2 + (y - 0.28) ** 2) < 0.12**2
    img[:, sun] = torch.tensor([1.0, 0.85, 0.2])[:, None]
    for phase, height, colour in ((0.0, 0.62, (0.2, 0.55, 0.25)), (1.7, 0.75, (0.1, 0.4, 0.15))):
        hill = y > height + 0.08 * torch.sin(2 * math.pi * x + phase)
        img[:, hill] = torch.tensor(colour)[:, None]
    return img * 2 - 1


def noised_picture_figure() -> plt.Figure:
    """One picture noised with ``add_noise`` at several timesteps of the linear schedule."""
    ab = alphas_cumprod(make_betas("linear"))  # (T,)
    x0 = synthetic_scene()[None].expand(len(NOISED_TIMESTEPS), -1, -1, -1)  # (B, 3, H, W)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    x_t = add_noise(x0, noise, ab[list(NOISED_TIMESTEPS)])  # one alpha_bar per sample
    fig, axes = plt.subplots(1, len(NOISED_TIMESTEPS), figsize=(9, 1.95), constrained_layout=True)
    for ax, t, img in zip(axes, NOISED_TIMESTEPS, x_t, strict=True):
        ax.imshow(((img.permute(1, 2, 0) + 1) / 2).clamp(0, 1).numpy())  # (H, W, 3) in [0, 1]
        ax.set_title(f"t={t}\n" + rf"$\bar\alpha_t$={ab[t].item():.3f}", fontsize=8)
        ax.axis("off")
    return fig


FIGURES: dict[str, Callable[[], plt.Figure]] = {
    "schedules": schedules_figure,
    "noised_picture": noised_picture_figure,
}
