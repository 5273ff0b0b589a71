r"""Tiny diffusion transformers, image and video, built from the one :class:`~infralens.nets.DiTBlock`.

Both follow Wan's (and PixArt-α's) layout:

1. the latent is cut into patches and embedded: ``(B, C, H, W) -> (B, N, D)`` with
   :math:`N = (H/p)(W/p)` for an image, ``(B, C, F, H, W) -> (B, N, D)`` with
   :math:`N = F \cdot H/2 \cdot W/2` for a video (patches of ``(1, 2, 2)`` latent cells);
2. the timestep becomes a vector :math:`e` ``(B, D)`` (sinusoidal features through an
   MLP), projected once to the six modulation vectors ``(B, 6, D)`` every block adds
   to its own table;
3. the text ``(B, L, D_text)`` is projected to the model width by an MLP and read by
   each block's cross-attention;
4. a final modulated norm and a linear head give the patch features back, put into
   the latent's shape.

The video model adds Wan 2.1 image-to-video's two image paths: a latent-space
condition concatenated on channels before the patch embedding (a 4-channel
first-frame mask and the first frame's VAE latent, :math:`C_y = 20`), and CLIP
image tokens read by a *decoupled* cross-attention branch (their own keys and
values, a separate softmax, added to the text attention's result).

Each block normalises queries and keys as Wan's do (qk-norm, RMSNorm over the
full width, in self- and cross-attention). Where the tiny models differ from Wan:
there is no positional encoding (Wan rotates queries and keys with 3-D RoPE);
the cross-attention's query, key and value projections have no biases; the
image tokens' projection is LayerNorm then Linear (Wan's ``img_emb`` is LayerNorm,
Linear, GELU, Linear, LayerNorm); the text projection is Linear, GELU, Linear as in
Wan. Weights are random and fixed by a seed, nothing is downloaded.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from infralens.core import positive_int, seeded
from infralens.families import LATENT_FAMILIES

from .blocks import AdaLNZero, DiTBlock, modulate
from .embeddings import timestep_features
from .patches import unpatchify


def _count(name: str, value: object, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a whole number >= 0 (0 means none), e.g. {name}={example}; got {value!r}")
    return value


class DiTBackbone(nn.Module):
    """What the image and video DiTs share: the timestep and text paths, the blocks, the modulated head.

    Subclasses add the patch embedding (2-D or 3-D) and put the head's patch
    features back into the latent's shape.
    """

    def _build_shared(self, *, text_dim, dim, num_heads, num_layers, mlp_ratio, image_dim) -> None:
        self.text_dim = positive_int("text_dim", text_dim, example=32)
        self.dim = D = positive_int("dim", dim, example=64)
        heads = positive_int("num_heads", num_heads, example=2)
        layers = positive_int("num_layers", num_layers, example=2)
        if D % heads:
            raise ValueError(f"num_heads must divide dim={D}, e.g. num_heads=2; got {heads}")
        self.time_embedding = nn.Sequential(nn.Linear(D, D), nn.SiLU(), nn.Linear(D, D))
        self.time_projection = AdaLNZero(D, zero_init=False)  # e -> six modulation vectors (B, 6, D)
        self.text_embedding = nn.Sequential(nn.Linear(self.text_dim, D), nn.GELU(approximate="tanh"), nn.Linear(D, D))
        kw = dict(mlp_ratio=mlp_ratio, image_dim=D if image_dim else None)
        self.blocks = nn.ModuleList([DiTBlock(D, heads, **kw) for _ in range(layers)])
        self.norm_out = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.scale_shift_table = nn.Parameter(torch.randn(1, 2, D) / math.sqrt(D))  # the head's shift and scale

    def embed_timesteps(self, timesteps: torch.Tensor | float, batch: int = 1) -> torch.Tensor:
        r"""The conditioning vector :math:`e` ``(B, D)``: sinusoidal features of :math:`t` through an MLP.

        :param timesteps: ``(B,)`` or one value for every sample.
        :param batch: :math:`B`.
        :returns: ``(B, D)``; ``time_projection`` turns it into every block's modulation.
        """
        B = positive_int("batch", batch, example=1)
        t = torch.as_tensor(timesteps).reshape(-1)
        if t.numel() not in (1, B):
            raise ValueError(f"timesteps must be one value or one per sample, shape ({B},); got {tuple(t.shape)}")
        weight = self.time_embedding[0].weight
        return self.time_embedding(timestep_features(t.expand(B), self.dim).to(weight.device, weight.dtype))  # (B, D)

    def _run(
        self, tokens: torch.Tensor, timesteps, text, *, mask=None, image_tokens=None
    ) -> torch.Tensor:  # fmt: skip
        B = tokens.shape[0]
        emb = self.embed_timesteps(timesteps, batch=B).to(tokens.dtype)  # (B, D): one vector per sample
        t_mod = self.time_projection(emb)  # (B, 6, D)
        context = self.text_embedding(text)  # (B, L, D)
        for block in self.blocks:
            tokens = block(tokens, context, t_mod, mask=mask, image_tokens=image_tokens)  # (B, N, D)
        shift, scale = (self.scale_shift_table + emb[:, None]).unbind(1)  # 2 x (B, D)
        return self.proj_out(modulate(self.norm_out(tokens), shift, scale))  # (B, N, C * prod(patch))

    def _check_text(self, text: torch.Tensor, B: int) -> None:
        if not isinstance(text, torch.Tensor) or text.ndim != 3 or text.shape[0] != B or text.shape[2] != self.text_dim:
            got = tuple(text.shape) if isinstance(text, torch.Tensor) else type(text).__name__
            raise ValueError(
                f"text must be (B, L, {self.text_dim}) with B = {B}, e.g. torch.randn({B}, 7, {self.text_dim}); "
                f"got {got}"
            )


class TinyDiT(DiTBackbone):
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
        self.patch_size = p = positive_int("patch_size", patch_size, example=2)
        with seeded(seed):  # the same weights on every machine
            self._build_shared(
                text_dim=text_dim, dim=dim, num_heads=num_heads, num_layers=num_layers, mlp_ratio=4, image_dim=None
            )
            self.patch_embed = nn.Conv2d(C, self.dim, kernel_size=p, stride=p)  # a linear map of each patch
            self.proj_out = nn.Linear(self.dim, C * p * p)
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
        B, H, W = self._check_latents(latents)
        self._check_text(text, B)
        out = self._run(self.tokens(latents), timesteps, text, mask=encoder_attention_mask)  # (B, N, C p^2)
        return unpatchify(out, H, W, self.patch_size)  # (B, C, H, W): the latent's shape

    def tokens(self, latents: torch.Tensor) -> torch.Tensor:
        r"""The patch embedding alone, ``(B, C, H, W) -> (B, N, D)``.

        A convolution with kernel and stride :math:`p` is a linear map of each
        patch: of the tokens of :func:`~infralens.nets.patchify`.
        """
        self._check_latents(latents)
        return self.patch_embed(latents).flatten(2).transpose(1, 2)  # (B, D, H/p, W/p) -> (B, N, D)

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


class TinyVideoDiT(DiTBackbone):
    r"""``forward(latents (B, C, F, H, W), timesteps (B,), text (B, L, D_text)) -> (B, C, F, H, W)``.

    :param latent_channels: :math:`C` of the latent being denoised (16 in Wan 2.1).
    :param condition_channels: :math:`C_y` of the channel-concatenated condition
        (0: none; 20 for Wan 2.1 I2V: 4 mask channels and a 16-channel latent).
    :param text_dim: :math:`D_\text{text}` of the text encoder's output (4096 for Wan's umT5).
    :param image_token_dim: :math:`D_\text{img}` of image tokens (0: none; 1280 for Wan 2.1 I2V's CLIP),
        read by a decoupled cross-attention branch.
    :param dim: model width :math:`D`.
    :param num_heads: attention heads; must divide ``dim``.
    :param num_layers: transformer blocks.
    :param seed: seeds the random weights.

    >>> dit = TinyVideoDiT(latent_channels=16, text_dim=32)
    >>> z = torch.randn(1, 16, 3, 4, 6)                  # (B, C, F', H', W')
    >>> dit(z, torch.tensor([999.0]), torch.randn(1, 7, 32)).shape
    torch.Size([1, 16, 3, 4, 6])
    """

    patch_size: tuple[int, int, int] = LATENT_FAMILIES["wan2.1"].patch
    """Latent cells per token along (frames, height, width), Wan's."""

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
        self.latent_channels = C = positive_int("latent_channels", latent_channels, example=16)
        self.condition_channels = _count("condition_channels", condition_channels, 20)
        self.image_token_dim = _count("image_token_dim", image_token_dim, 1280)
        with seeded(seed):  # the same weights on every machine
            self._build_shared(
                text_dim=text_dim, dim=dim, num_heads=num_heads, num_layers=num_layers, mlp_ratio=2,
                image_dim=self.image_token_dim,
            )  # fmt: skip
            D, p = self.dim, self.patch_size
            self.patch_embedding = nn.Conv3d(C + self.condition_channels, D, kernel_size=p, stride=p)
            self.image_embedding = (  # CLIP features to the model width (Wan's img_emb)
                nn.Sequential(nn.LayerNorm(self.image_token_dim), nn.Linear(self.image_token_dim, D))
                if self.image_token_dim
                else None
            )
            self.proj_out = nn.Linear(D, C * math.prod(p))
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
        _, _, F, H, W = self._check(latents, text, condition, image_tokens)
        x = latents if condition is None else torch.cat([latents, condition], dim=1)  # (B, C + C_y, F, H, W)
        image = None if self.image_embedding is None else self.image_embedding(image_tokens)  # (B, L_img, D)
        out = self._run(self.patchify(x), timesteps, text, image_tokens=image)  # (B, N, C * 4)
        return self.unpatchify(out, (F, H // 2, W // 2))  # (B, C, F, H, W)

    def _check(self, latents, text, condition, image_tokens) -> tuple[int, int, int, int, int]:
        C = self.latent_channels
        if not isinstance(latents, torch.Tensor) or latents.ndim != 5 or latents.shape[1] != C:
            got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
            raise ValueError(f"latents must be (B, {C}, F, H, W), e.g. torch.randn(1, {C}, 3, 4, 6); got {got}")
        B, _, F, H, W = latents.shape
        if H % 2 or W % 2:
            raise ValueError(f"latent height and width must be even for (1, 2, 2) patches, e.g. (4, 6); got ({H}, {W})")
        self._check_text(text, B)
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
