"""A tiny, real conditional denoiser for the labs: small enough for a doctest, shaped like the real thing.

It reads what a diffusion denoiser reads (a noisy latent ``(B, C, H, W)``, a
timestep per sample and text embeddings ``(B, L, D)``) and returns a
prediction with the latent's shape. Latent cells attend to the text tokens
through one cross-attention layer, and the timestep enters as a learned
per-channel shift. Weights are random and fixed by a seed; nothing is
downloaded.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from infralens.core import positive_int, seeded


class TinyDenoiser(nn.Module):
    """``forward(latents (B, C, H, W), timesteps (B,), text (B, L, D)) -> (B, C, H, W)``.

    >>> model = TinyDenoiser(latent_channels=4, text_dim=16)
    >>> out = model(torch.randn(2, 4, 8, 8), torch.tensor([999, 500]), torch.randn(2, 6, 16))
    >>> out.shape
    torch.Size([2, 4, 8, 8])
    """

    def __init__(self, latent_channels: int = 4, text_dim: int = 16, width: int = 32, seed: int = 0):
        super().__init__()
        self.latent_channels = positive_int("latent_channels", latent_channels, example=4)
        self.text_dim = positive_int("text_dim", text_dim, example=16)
        self.width = positive_int("width", width, example=32)
        with seeded(seed):  # the same weights on every machine
            self.conv_in = nn.Conv2d(latent_channels, width, 3, padding=1)
            self.time = nn.Linear(1, width)
            self.to_q = nn.Linear(width, width, bias=False)
            self.to_k = nn.Linear(text_dim, width, bias=False)
            self.to_v = nn.Linear(text_dim, width, bias=False)
            self.conv_out = nn.Conv2d(width, latent_channels, 3, padding=1)
        self.eval()

    def forward(self, latents: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        B, C, H, W = latents.shape
        if C != self.latent_channels or text.shape[0] != B or text.shape[-1] != self.text_dim:
            raise ValueError(
                f"latents must be (B, {self.latent_channels}, H, W) and text (B, L, {self.text_dim}) with the same B; "
                f"got latents {tuple(latents.shape)} and text {tuple(text.shape)}"
            )
        h = self.conv_in(latents)  # (B, width, H, W)
        h = h + self.time(timesteps.float().view(B, 1) / 1000)[:, :, None, None]  # timestep as a channel shift
        q = self.to_q(h.flatten(2).transpose(1, 2))  # (B, H*W, width): one query per latent cell
        k, v = self.to_k(text), self.to_v(text)  # (B, L, width): keys and values from text tokens
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(self.width), dim=-1)  # (B, H*W, L)
        h = h + (attn @ v).transpose(1, 2).reshape(B, self.width, H, W)  # (B, width, H, W)
        return self.conv_out(torch.nn.functional.silu(h))  # (B, C, H, W): the latent's shape
