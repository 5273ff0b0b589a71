r"""A tiny text-conditioned image DiT: patchify, adaLN from the timestep, cross-attention to the text.

``TinyDiT(latents, timesteps, text)`` returns a prediction with the shape of
``latents`` ``(B, C, H, W)``, in the ``(latents, timesteps, text)`` order of
:class:`~infralens.diffusion.TinyDenoiser`. Its layout is PixArt-α's (text by
cross-attention, the timestep by adaptive layer norm) with DiT's per-block
adaLN-Zero:

1. the latent is cut into :math:`p \times p` patches and embedded,
   ``(B, C, H, W) -> (B, N, D)`` with :math:`N = (H/p)(W/p)`;
2. the timestep becomes one vector :math:`e` ``(B, D)``;
3. each block: self-attention on :math:`\operatorname{LN}(x)(1 + \gamma_1) + \beta_1`
   gated by :math:`\alpha_1`; cross-attention from the tokens to the text;
   an MLP on :math:`\operatorname{LN}(x)(1 + \gamma_2) + \beta_2` gated by :math:`\alpha_2`;
4. a final adaLN and a linear head give :math:`C p^2` features per token, put
   back into ``(B, C, H, W)``.

There is no positional encoding; weights are random and fixed by a seed.
Stable signature: ``TinyDiT(latent_channels=4, text_dim=32, dim=64, num_heads=2,
num_layers=2, patch_size=2, seed=0)``, ``forward(latents, timesteps, text, *,
encoder_attention_mask=None)``.
"""

from __future__ import annotations

import torch
from torch import nn

from ._args import positive_int
from .conditioning import AdaLNZero, CrossAttention, modulate, timestep_features, unpatchify


class DiTBlock(nn.Module):
    """One block: modulated, gated self-attention; cross-attention to the text; modulated, gated MLP."""

    def __init__(self, dim: int, text_dim: int, num_heads: int):
        super().__init__()
        self.adaln = AdaLNZero(dim, zero_init=False)
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.self_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.cross_attn = CrossAttention(dim, text_dim, heads=num_heads)
        self.norm3 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(approximate="tanh"), nn.Linear(4 * dim, dim))

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, text: torch.Tensor, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.adaln(emb)  # 6 x (B, D), from the timestep
        h = modulate(self.norm1(x), shift1, scale1)  # (B, N, D)
        x = x + gate1[:, None] * self.self_attn(h, h, h, need_weights=False)[0]  # (B, N, D)
        x = x + self.cross_attn(self.norm2(x), text, mask)  # (B, N, D): queries from x, keys/values from text
        h = modulate(self.norm3(x), shift2, scale2)  # (B, N, D)
        return x + gate2[:, None] * self.mlp(h)  # (B, N, D)


class TinyDiT(nn.Module):
    r"""``forward(latents (B, C, H, W), timesteps (B,), text (B, L, D_text)) -> (B, C, H, W)``.

    :param latent_channels: :math:`C` of the latent (4 as SD's VAE, 16 as SD3's).
    :param text_dim: :math:`D_\text{text}`, the width of the text encoder's output.
    :param dim: :math:`D`, the model width.
    :param num_heads: attention heads; must divide ``dim``.
    :param num_layers: blocks.
    :param patch_size: :math:`p`; latent height and width must be multiples of it.
    :param seed: seeds the random weights.

    >>> dit = TinyDiT(latent_channels=4, text_dim=32)
    >>> z = torch.randn(2, 4, 16, 16)                    # (B, C, H', W')
    >>> dit(z, torch.tensor([999, 10]), torch.randn(2, 7, 32)).shape
    torch.Size([2, 4, 16, 16])
    """

    def __init__(
        self,
        latent_channels: int = 4,
        text_dim: int = 32,
        dim: int = 64,
        num_heads: int = 2,
        num_layers: int = 2,
        patch_size: int = 2,
        seed: int = 0,
    ):
        super().__init__()
        self.latent_channels = C = positive_int("latent_channels", latent_channels, example=4)
        self.text_dim = positive_int("text_dim", text_dim, example=32)
        self.dim = D = positive_int("dim", dim, example=64)
        heads = positive_int("num_heads", num_heads, example=2)
        layers = positive_int("num_layers", num_layers, example=2)
        self.patch_size = p = positive_int("patch_size", patch_size, example=2)
        if D % heads:
            raise ValueError(f"num_heads must divide dim={D}, e.g. num_heads=2; got {heads}")
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same weights on every machine
        try:
            self.patch_embed = nn.Conv2d(C, D, kernel_size=p, stride=p)  # a linear map of each patch
            self.time_embed = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
            self.blocks = nn.ModuleList([DiTBlock(D, self.text_dim, heads) for _ in range(layers)])
            self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
            self.proj_out_1 = nn.Linear(D, 2 * D)  # final shift and scale
            self.proj_out_2 = nn.Linear(D, C * p * p)
        finally:
            torch.random.set_rng_state(state)
        self.eval()

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor | float,
        text: torch.Tensor,
        *,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Predict for ``latents`` at ``timesteps`` given ``text``: the result has the latent's shape.

        :param latents: the noisy latent ``(B, C, H, W)``, :math:`H` and :math:`W` multiples of :math:`p`.
        :param timesteps: ``(B,)`` or one value for every sample.
        :param text: text-encoder output ``(B, L, D_text)``.
        :param encoder_attention_mask: ``(B, L)`` bool, True on real text tokens.
        :returns: ``(B, C, H, W)``.
        """
        B, H, W = self._check(latents, text)
        emb = self.embed_timesteps(timesteps, batch=B).to(latents.dtype)  # (B, D): one vector per sample
        x = self.patch_embed(latents).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, N, D)
        for block in self.blocks:
            x = block(x, emb, text, encoder_attention_mask)  # (B, N, D)
        shift, scale = self.proj_out_1(nn.functional.silu(emb)).chunk(2, dim=1)  # 2 x (B, D)
        out = self.proj_out_2(modulate(self.norm_out(x), shift, scale))  # (B, N, C p^2)
        return unpatchify(out, H, W, self.patch_size)  # (B, C, H, W): the latent's shape

    def embed_timesteps(self, timesteps: torch.Tensor | float, batch: int = 1) -> torch.Tensor:
        r"""The conditioning vector :math:`e` ``(B, D)``: sinusoidal features of :math:`t` through an MLP.

        :param timesteps: ``(B,)`` or one value for every sample.
        :param batch: :math:`B`.
        :returns: ``(B, D)``; every block's adaLN reads it.
        """
        B = positive_int("batch", batch, example=1)
        t = torch.as_tensor(timesteps, device=self.proj_out_2.weight.device).reshape(-1)
        if t.numel() not in (1, B):
            raise ValueError(f"timesteps must be one value or one per sample, shape ({B},); got {tuple(t.shape)}")
        features = timestep_features(t.expand(B), self.dim).to(self.proj_out_2.weight.dtype)  # (B, D)
        return self.time_embed(features)  # (B, D)

    def tokens(self, latents: torch.Tensor) -> torch.Tensor:
        r"""The patch embedding alone, ``(B, C, H, W) -> (B, N, D)``.

        A convolution with kernel and stride :math:`p` is a linear map of each
        patch: of the tokens of :func:`~infralens.diffusion.patchify`.
        """
        self._check_latents(latents)
        return self.patch_embed(latents).flatten(2).transpose(1, 2)  # (B, N, D)

    def _check(self, latents: torch.Tensor, text: torch.Tensor) -> tuple[int, int, int]:
        B, H, W = self._check_latents(latents)
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != B or text.shape[2] != self.text_dim:
            got = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise ValueError(
                f"text must be (B, L, {self.text_dim}) with B = {B}, e.g. torch.randn({B}, 7, {self.text_dim}); "
                f"got {got}"
            )
        return B, H, W

    def _check_latents(self, latents: torch.Tensor) -> tuple[int, int, int]:
        C, p = self.latent_channels, self.patch_size
        if not isinstance(latents, torch.Tensor) or latents.ndim != 4 or latents.shape[1] != C:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be (B, {C}, H, W), e.g. torch.randn(1, {C}, 16, 16); got {got}")
        B, _, H, W = latents.shape
        if H % p or W % p:
            raise ValueError(
                f"latent height and width must be multiples of patch_size={p}, e.g. (16, 16); got ({H}, {W})"
            )
        return B, H, W
