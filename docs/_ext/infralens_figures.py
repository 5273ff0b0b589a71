"""Sphinx extension: draw the book's figures from the library at build time.

Each function in :data:`FIGURES` returns a matplotlib figure computed with
``infralens``; on ``builder-inited`` every figure is rendered to
``docs/_generated/<name>.png``, which pages include with ``{figure}``. Figures
are redrawn only when this file or a module of ``infralens.diffusion`` changed
(a hash of their sources), and a file is rewritten only when its bytes change,
so an unchanged library costs no drawing and re-reads no page. Nothing is downloaded: the picture that
gets noised is drawn here from a few shapes.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import torch

from infralens.diffusion import add_noise, alphas_cumprod, make_betas, snr

OUT_DIR = Path("docs") / "_generated"

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


def render(name: str, srcdir: Path) -> bool:
    """Render one figure; return whether the PNG on disk changed."""
    fig = FIGURES[name]()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=150, metadata={"Software": None})
    plt.close(fig)
    path = srcdir / OUT_DIR / f"{name}.png"
    if path.exists() and path.read_bytes() == buf.getvalue():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return True


def _source_key() -> str:
    """A hash of everything a figure depends on: this file and the library's diffusion modules."""
    import hashlib

    import infralens.diffusion

    files = [Path(__file__), *sorted(Path(infralens.diffusion.__file__).parent.glob("*.py"))]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _builder_inited(app) -> None:
    out = Path(app.srcdir) / OUT_DIR
    key, stamp = _source_key(), out / ".source-key"
    if stamp.exists() and stamp.read_text() == key and all((out / f"{n}.png").exists() for n in FIGURES):
        return  # nothing they are drawn from changed: skip matplotlib (about 2 s per build)
    for name in FIGURES:
        render(name, Path(app.srcdir))
    stamp.write_text(key)


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
