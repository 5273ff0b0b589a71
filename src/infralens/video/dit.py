r"""A tiny video diffusion transformer with Wan's three condition paths.

``TinyVideoDiT(latents, timesteps, text)`` returns a prediction with the shape
of ``latents`` ``(B, C, F, H, W)``. Each condition enters on its own path:

* the **timestep** ``(B,)`` becomes a sinusoidal embedding, then six vectors per
  sample (shift, scale and gate for attention and for the MLP) that *modulate*
  every token (adaLN);
* the **text** ``(B, L, D_text)`` is projected to the model width and read by
  *cross-attention*: latent tokens are the queries, text tokens the keys and values;
* an **image or video condition** ``(B, C_y, F, H, W)`` already in latent space
  (Wan 2.1 I2V: a 4-channel first-frame mask and the VAE latent of the first frame
  followed by zeros, so :math:`C_y = 20`) is *concatenated on channels* before the
  patch embedding;
* optional **image tokens** ``(B, L_img, D_img)`` (Wan 2.1 I2V: CLIP features of
  the first frame) are projected and put in front of the text tokens, so the
  same cross-attention reads both.

The latent is cut into patches of ``(1, 2, 2)`` latent cells by a strided 3-D
convolution, giving :math:`N = F \cdot H/2 \cdot W/2` tokens. There is no positional
encoding (Wan uses 3-D rotary embeddings); weights are random and fixed by a seed.

Stable signature (other labs load this class): ``TinyVideoDiT(latent_channels=16,
condition_channels=0, text_dim=32, image_token_dim=0, dim=32, num_heads=2, num_layers=1, seed=0)``,
``forward(latents, timesteps, text, *, condition=None, image_tokens=None)``, the
``(latents, timesteps, text)`` order of :class:`~infralens.diffusion.TinyDenoiser`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..diffusion._args import positive_int


def timestep_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    r"""Sinusoidal timestep features :math:`[\cos(t\,\omega_i), \sin(t\,\omega_i)]`, :math:`\omega_i = 10000^{-2i/d}`.

    :param timesteps: :math:`t`, shape ``(B,)`` (0 to 1000 in Wan: :math:`1000\,\sigma`).
    :param dim: :math:`d`, even.
    :returns: ``(B, d)`` in float32.

    >>> e = timestep_embedding(torch.tensor([0.0, 500.0]), 8)
    >>> e.shape, e[0].tolist() == [1.0] * 4 + [0.0] * 4
    (torch.Size([2, 8]), True)
    """
    half = dim // 2
    omega = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64) / half)  # (d/2,)
    angles = timesteps.to(torch.float64).reshape(-1, 1) * omega  # (B, d/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()  # (B, d)


class _Block(nn.Module):
    """Self-attention and MLP modulated by the timestep; cross-attention to the context in between."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(approximate="tanh"), nn.Linear(2 * dim, dim))
        self.modulation = nn.Parameter(torch.randn(1, 6, dim) / math.sqrt(dim))  # learned offsets per block

    def forward(self, x: torch.Tensor, context: torch.Tensor, t_mod: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = (self.modulation + t_mod).unbind(1)  # 6 x (B, D)
        # adaLN: x_mod = LN(x) * (1 + scale) + shift, the same for every token of a sample
        h = self.norm1(x) * (1 + scale1[:, None]) + shift1[:, None]  # (B, N, D)
        q, k, v = self.qkv(h).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, heads, N, D/heads)
        x = x + gate1[:, None] * self.proj(a.transpose(1, 2).reshape(B, N, D))  # (B, N, D)
        # cross-attention: queries from latent tokens, keys/values from the context tokens
        c, _ = self.cross_attn(self.norm_cross(x), context, context, need_weights=False)  # (B, N, D)
        x = x + c
        h = self.norm2(x) * (1 + scale2[:, None]) + shift2[:, None]  # (B, N, D)
        return x + gate2[:, None] * self.mlp(h)  # (B, N, D)


class TinyVideoDiT(nn.Module):
    r"""``forward(latents (B, C, F, H, W), timesteps (B,), text (B, L, D_text)) -> (B, C, F, H, W)``.

    :param latent_channels: :math:`C` of the latent being denoised (16 in Wan 2.1).
    :param condition_channels: :math:`C_y` of the channel-concatenated condition
        (0: none; 20 for Wan 2.1 I2V: 4 mask channels and a 16-channel latent).
    :param text_dim: :math:`D_\text{text}` of the text encoder's output (4096 for Wan's umT5).
    :param image_token_dim: :math:`D_\text{img}` of image tokens (0: none; 1280 for Wan 2.1 I2V's CLIP).
    :param dim: model width :math:`D`.
    :param num_heads: attention heads; must divide ``dim``.
    :param num_layers: transformer blocks.
    :param seed: seeds the random weights.

    >>> dit = TinyVideoDiT(latent_channels=16, text_dim=32)
    >>> z = torch.randn(1, 16, 3, 4, 6)                  # (B, C, F', H', W')
    >>> out = dit(z, torch.tensor([999.0]), torch.randn(1, 7, 32))
    >>> out.shape
    torch.Size([1, 16, 3, 4, 6])
    """

    patch_size = (1, 2, 2)
    """Latent cells per token along (frames, height, width)."""

    def __init__(
        self,
        latent_channels: int = 16,
        condition_channels: int = 0,
        text_dim: int = 32,
        image_token_dim: int = 0,
        dim: int = 32,
        num_heads: int = 2,
        num_layers: int = 1,
        seed: int = 0,
    ):
        super().__init__()
        self.latent_channels = positive_int("latent_channels", latent_channels, example=16)
        self.text_dim = positive_int("text_dim", text_dim, example=32)
        self.dim = positive_int("dim", dim, example=32)
        heads = positive_int("num_heads", num_heads, example=2)
        layers = positive_int("num_layers", num_layers, example=1)
        for name, value, example in (
            ("condition_channels", condition_channels, 20),
            ("image_token_dim", image_token_dim, 1280),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(
                    f"{name} must be a whole number >= 0 (0 means none), e.g. {name}={example}; got {value!r}"
                )
        if dim % heads:
            raise ValueError(f"num_heads must divide dim={dim}, e.g. num_heads=2; got {heads}")
        self.condition_channels = condition_channels
        self.image_token_dim = image_token_dim
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)  # the same weights on every machine
        try:
            in_channels = latent_channels + condition_channels
            self.patch_embedding = nn.Conv3d(in_channels, dim, kernel_size=self.patch_size, stride=self.patch_size)
            self.text_embedding = nn.Sequential(
                nn.Linear(text_dim, dim), nn.GELU(approximate="tanh"), nn.Linear(dim, dim)
            )
            self.image_embedding = (
                nn.Sequential(nn.LayerNorm(image_token_dim), nn.Linear(image_token_dim, dim))
                if image_token_dim
                else None
            )
            self.time_embedding = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
            self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))
            self.blocks = nn.ModuleList([_Block(dim, heads) for _ in range(layers)])
            self.head_norm = nn.LayerNorm(dim, elementwise_affine=False)
            self.head_modulation = nn.Parameter(torch.randn(1, 2, dim) / math.sqrt(dim))
            self.head = nn.Linear(dim, latent_channels * math.prod(self.patch_size))
        finally:
            torch.random.set_rng_state(state)
        self.eval()

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        r"""``(B, C_in, F, H, W) -> (B, N, D)`` tokens, :math:`N = F \cdot H/2 \cdot W/2`, row-major over (f, h, w)."""
        return self.patch_embedding(x).flatten(2).transpose(1, 2)  # (B, D, F, H/2, W/2) -> (B, N, D)

    def unpatchify(self, tokens: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, N, C * 1 * 2 * 2) -> (B, C, F, H, W)`` for a token grid ``(F, H/2, W/2)``."""
        B = tokens.shape[0]
        f, h, w = grid
        pf, ph, pw = self.patch_size
        x = tokens.reshape(B, f, h, w, pf, ph, pw, self.latent_channels)  # (B, f, h, w, pf, ph, pw, C)
        x = x.permute(0, 7, 1, 4, 2, 5, 3, 6)  # (B, C, f, pf, h, ph, w, pw)
        return x.reshape(B, self.latent_channels, f * pf, h * ph, w * pw)  # (B, C, F, H, W)

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        text: torch.Tensor,
        *,
        condition: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Predict for ``latents`` ``(B, C, F, H, W)`` at ``timesteps`` ``(B,)`` given ``text`` ``(B, L, D_text)``.

        :param latents: the noisy latent; :math:`H` and :math:`W` even.
        :param timesteps: one per sample, ``(B,)`` (or a scalar, used for every sample).
        :param text: text-encoder output ``(B, L, D_text)``.
        :param condition: ``(B, C_y, F, H, W)``, required iff ``condition_channels > 0``.
        :param image_tokens: ``(B, L_img, D_img)``, required iff ``image_token_dim > 0``.
        :returns: the prediction, shape of ``latents``.
        """
        B, _, F, H, W = self._check(latents, text, condition, image_tokens)
        t = torch.as_tensor(timesteps, device=latents.device).reshape(-1)
        if t.numel() not in (1, B):
            raise ValueError(f"timesteps must be a scalar or have shape (B,) = ({B},); got {tuple(t.shape)}")
        t = t.expand(B)  # (B,)
        # timestep path: (B,) -> (B, D) -> six modulation vectors (B, 6, D)
        t_emb = self.time_embedding(timestep_embedding(t, self.dim).to(latents.dtype))  # (B, D)
        t_mod = self.time_projection(t_emb).unflatten(1, (6, self.dim))  # (B, 6, D)
        # text path: (B, L, D_text) -> (B, L, D); image tokens go in front of the text
        context = self.text_embedding(text)  # (B, L, D)
        if self.image_embedding is not None:
            context = torch.cat([self.image_embedding(image_tokens), context], dim=1)  # (B, L_img + L, D)
        # image/video condition path: channel concatenation before patchify
        x = latents if condition is None else torch.cat([latents, condition], dim=1)  # (B, C + C_y, F, H, W)
        tokens = self.patchify(x)  # (B, N, D)
        for block in self.blocks:
            tokens = block(tokens, context, t_mod)  # (B, N, D)
        shift, scale = (self.head_modulation + t_emb[:, None]).unbind(1)  # 2 x (B, D)
        out = self.head(self.head_norm(tokens) * (1 + scale[:, None]) + shift[:, None])  # (B, N, C*4)
        return self.unpatchify(out, (F, H // 2, W // 2))  # (B, C, F, H, W)

    def _check(self, latents, text, condition, image_tokens) -> tuple[int, int, int, int, int]:
        C = self.latent_channels
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != C:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be (B, {C}, F, H, W), e.g. torch.randn(1, {C}, 3, 4, 6); got {got}")
        B, _, F, H, W = latents.shape
        if H % 2 or W % 2:
            raise ValueError(f"latent height and width must be even for (1, 2, 2) patches, e.g. (4, 6); got ({H}, {W})")
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != B or text.shape[2] != self.text_dim:
            got = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise ValueError(
                f"text must be (B, L, {self.text_dim}) with B = {B}, "
                f"e.g. torch.randn({B}, 7, {self.text_dim}); got {got}"
            )
        Cy = self.condition_channels
        if Cy and (condition is None or tuple(condition.shape) != (B, Cy, F, H, W)):
            got = None if condition is None else tuple(condition.shape)
            raise ValueError(
                f"condition must be (B, C_y, F, H, W) = {(B, Cy, F, H, W)} (concatenated on channels); got {got}"
            )
        if not Cy and condition is not None:
            raise ValueError("condition given, but condition_channels=0; build TinyVideoDiT(condition_channels=...)")
        Di = self.image_token_dim
        if Di and (
            image_tokens is None or image_tokens.ndim != 3 or image_tokens.shape[0] != B or image_tokens.shape[2] != Di
        ):
            got = None if image_tokens is None else tuple(image_tokens.shape)
            raise ValueError(
                f"image_tokens must be (B, L_img, {Di}) with B = {B}, e.g. torch.randn({B}, 5, {Di}); got {got}"
            )
        if not Di and image_tokens is not None:
            raise ValueError("image_tokens given, but image_token_dim=0; build TinyVideoDiT(image_token_dim=...)")
        return B, C, F, H, W
