r"""How conditions enter a denoiser: cross-attention, adaLN modulation, and the patch tokens they act on.

A text-to-image denoiser reads two conditions besides the noisy latent, and
they enter by different doors:

* the **text** ``(B, L, D_text)`` is read by *cross-attention*: the latent's
  tokens ask the questions (queries), the text tokens answer (keys and values),

  .. math::

     \operatorname{Attn}(x, c) = \operatorname{softmax}\!\Big(\frac{(x W_q)(c W_k)^\top}{\sqrt{d}}\Big)\,(c W_v)\,W_o;

* the **timestep** (and in some models a pooled text vector) becomes one vector
  :math:`e` per sample that *modulates* every token through adaptive layer norm
  (adaLN): a linear map of :math:`e` gives a shift :math:`\beta`, a scale
  :math:`\gamma` and a gate :math:`\alpha`, and

  .. math:: x \leftarrow x + \alpha \odot f\big(\operatorname{LN}(x)\,(1 + \gamma) + \beta\big).

A diffusion transformer (DiT) first cuts the latent ``(B, C, H, W)`` into
:math:`p \times p` patches, :math:`N = (H/p)(W/p)` tokens, and puts them back
at the end, so its prediction has the latent's shape.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._args import positive_int


def _check_latents(latents: torch.Tensor, patch_size: int) -> tuple[int, int, int, int]:
    if not isinstance(latents, torch.Tensor) or latents.ndim != 4:
        got = tuple(latents.shape) if isinstance(latents, torch.Tensor) else type(latents).__name__
        raise ValueError(f"latents must be (B, C, H, W), e.g. torch.randn(1, 4, 16, 16); got {got}")
    B, C, H, W = latents.shape
    for name, size in (("latent height", H), ("latent width", W)):
        if size % patch_size:
            lo = size // patch_size * patch_size
            near = f"{lo} or {lo + patch_size}" if lo else f"{patch_size}"
            raise ValueError(f"{name}={size} is not a multiple of patch_size={patch_size}; nearest valid: {near}")
    return B, C, H, W


def patchify(latents: torch.Tensor, patch_size: int = 2) -> torch.Tensor:
    r"""Latent ``(B, C, H, W)`` to tokens ``(B, N, C p^2)``, :math:`N = (H/p)(W/p)`.

    Tokens are the :math:`p \times p` patches in row-major order (patch row,
    then patch column); the features of a token are ordered channel, row in
    the patch, column in the patch, the order of a patch-embedding
    convolution's weight ``(D, C, p, p)``. With :math:`p = 2` this is
    :func:`~infralens.diffusion.flux_pack`.

    :param latents: ``(B, C, H, W)``, :math:`H` and :math:`W` multiples of :math:`p`.
    :param patch_size: :math:`p`.
    :returns: ``(B, N, C p^2)``.

    >>> x = torch.arange(16.0).view(1, 1, 4, 4)
    >>> patchify(x, 2)[0, :2].tolist()       # the first two 2x2 patches
    [[0.0, 1.0, 4.0, 5.0], [2.0, 3.0, 6.0, 7.0]]
    """
    p = positive_int("patch_size", patch_size, example=2)
    B, C, H, W = _check_latents(latents, p)
    x = latents.reshape(B, C, H // p, p, W // p, p)  # (B, C, H/p, p, W/p, p)
    x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
    return x.reshape(B, (H // p) * (W // p), C * p * p)  # (B, N, C p^2)


def unpatchify(tokens: torch.Tensor, height: int, width: int, patch_size: int = 2) -> torch.Tensor:
    r"""Tokens ``(B, N, C p^2)`` back to the latent ``(B, C, H, W)``: the inverse of :func:`patchify`.

    :param tokens: ``(B, N, C p^2)`` with :math:`N = (H/p)(W/p)`.
    :param height: :math:`H` of the latent (not of the image).
    :param width: :math:`W` of the latent.
    :param patch_size: :math:`p`.
    :returns: ``(B, C, H, W)``.

    >>> x = torch.randn(2, 4, 6, 8)
    >>> torch.equal(unpatchify(patchify(x, 2), 6, 8, 2), x)
    True
    """
    p = positive_int("patch_size", patch_size, example=2)
    h, w = positive_int("height", height, example=16), positive_int("width", width, example=16)
    _check_latents(torch.empty(1, 1, h, w), p)
    N = (h // p) * (w // p)
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.shape[1] != N or tokens.shape[2] % (p * p):
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokens must be (B, N, C * {p * p}) with N = ({h}/{p}) * ({w}/{p}) = {N}, "
            f"e.g. torch.randn(1, {N}, {4 * p * p}); got {got}"
        )
    B, C = tokens.shape[0], tokens.shape[2] // (p * p)
    x = tokens.reshape(B, h // p, w // p, C, p, p)  # (B, H/p, W/p, C, p, p)
    x = x.permute(0, 3, 1, 4, 2, 5)  # (B, C, H/p, p, W/p, p)
    return x.reshape(B, C, h, w)  # (B, C, H, W)


def patch_token_count(height: int, width: int, *, spatial_factor: int = 8, patch_size: int = 2) -> int:
    r"""Tokens a DiT sees for an image: :math:`N = \frac{H}{s p} \cdot \frac{W}{s p}`.

    :param height: :math:`H` in pixels, a multiple of :math:`s p`.
    :param width: :math:`W` in pixels, a multiple of :math:`s p`.
    :param spatial_factor: :math:`s`, the VAE's (8 for SD3 and FLUX.1).
    :param patch_size: :math:`p`, the transformer's (2 for SD3, PixArt and FLUX.1).
    :returns: :math:`N`.

    >>> patch_token_count(1024, 1024)              # SD3 at 1024x1024
    4096
    """
    s = positive_int("spatial_factor", spatial_factor, example=8)
    p = positive_int("patch_size", patch_size, example=2)
    step = s * p
    sizes = []
    for name, value in (("height", height), ("width", width)):
        size = positive_int(name, value, example=1024)
        if size % step:
            lo = size // step * step
            near = f"{lo} or {lo + step}" if lo else f"{step}"
            raise ValueError(
                f"{name}={size} is not a multiple of spatial_factor * patch_size = {s} * {p} = {step}; "
                f"nearest valid: {near}"
            )
        sizes.append(size // step)
    return sizes[0] * sizes[1]


def timestep_features(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    r"""Sinusoidal timestep features :math:`[\cos(t\,\omega_i),\ \sin(t\,\omega_i)]`, :math:`\omega_i = 10^{-4i/(d/2)}`.

    The same as diffusers' ``get_timestep_embedding(t, d, flip_sin_to_cos=True,
    downscale_freq_shift=0)``; a small MLP turns them into the conditioning vector.

    :param timesteps: :math:`t`, ``(B,)``.
    :param dim: :math:`d`, even.
    :returns: ``(B, d)`` float32.

    >>> timestep_features(torch.tensor([0.0]), 4).tolist()
    [[1.0, 1.0, 0.0, 0.0]]
    """
    d = positive_int("dim", dim, example=32)
    if d % 2:
        raise ValueError(f"dim must be even (half cosines, half sines), e.g. dim=32; got {d}")
    t = torch.as_tensor(timesteps).reshape(-1).to(torch.float64)  # (B,)
    half = d // 2
    omega = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float64) / half)  # (d/2,)
    angles = t[:, None] * omega[None, :]  # (B, d/2)
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1).float()  # (B, d)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""adaLN's affine step, one vector per sample for every token: :math:`x\,(1 + \gamma) + \beta`.

    :param x: normalised tokens ``(B, N, D)``.
    :param shift: :math:`\beta`, ``(B, D)``.
    :param scale: :math:`\gamma`, ``(B, D)``.
    :returns: ``(B, N, D)``.

    >>> x = torch.randn(2, 5, 8)
    >>> torch.equal(modulate(x, torch.zeros(2, 8), torch.zeros(2, 8)), x)
    True
    """
    if x.ndim != 3 or shift.shape != (x.shape[0], x.shape[2]) or scale.shape != shift.shape:
        raise ValueError(
            f"x must be (B, N, D) and shift, scale (B, D) with the same B and D, e.g. x (2, 5, 8) and "
            f"shift (2, 8); got x {tuple(x.shape)}, shift {tuple(shift.shape)}, scale {tuple(scale.shape)}"
        )
    return x * (1 + scale[:, None]) + shift[:, None]  # (B, N, D): the same for every token of a sample


class AdaLNZero(nn.Module):
    r"""Conditioning vector ``(B, D_c)`` to six ``(B, D)`` vectors: shift, scale, gate for attention and for the MLP.

    :math:`[\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2] = \operatorname{SiLU}(e)\,W + b`, in the
    order of diffusers' ``AdaLayerNormZero``. "Zero": with ``zero_init=True``
    the map starts at zero, every gate :math:`\alpha` is 0, and the block it
    drives is the identity (the DiT paper's initialisation).

    :param dim: :math:`D`, the width of the tokens it modulates.
    :param cond_dim: :math:`D_c`, the width of the conditioning vector (default ``dim``).
    :param zero_init: start from zero weights and bias.

    >>> ada = AdaLNZero(8)
    >>> [v.shape for v in ada(torch.randn(2, 8))][:2]
    [torch.Size([2, 8]), torch.Size([2, 8])]
    """

    def __init__(self, dim: int, cond_dim: int | None = None, *, zero_init: bool = True):
        super().__init__()
        self.dim = positive_int("dim", dim, example=64)
        cond = positive_int("cond_dim", dim if cond_dim is None else cond_dim, example=64)
        self.linear = nn.Linear(cond, 6 * dim)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, emb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp)``, each ``(B, D)``."""
        return tuple(self.linear(nn.functional.silu(emb)).chunk(6, dim=1))  # 6 x (B, D)


class CrossAttention(nn.Module):
    r"""Latent tokens attend to text tokens: queries from ``hidden_states``, keys and values from the text.

    Projections are named as in diffusers' ``Attention`` (``to_q``, ``to_k``,
    ``to_v``, ``to_out``). The output has the shape of the queries: one
    updated vector per latent token, whatever the number of text tokens.

    :param query_dim: :math:`D`, the width of the latent tokens.
    :param context_dim: :math:`D_\text{text}`, the width of the text tokens.
    :param heads: attention heads; must divide ``query_dim``.

    >>> attn = CrossAttention(query_dim=16, context_dim=32, heads=2)
    >>> x, text = torch.randn(1, 64, 16), torch.randn(1, 7, 32)
    >>> attn(x, text).shape, attn.attention_probs(x, text).shape
    (torch.Size([1, 64, 16]), torch.Size([1, 2, 64, 7]))
    """

    def __init__(self, query_dim: int, context_dim: int, heads: int = 2):
        super().__init__()
        D = positive_int("query_dim", query_dim, example=64)
        Dc = positive_int("context_dim", context_dim, example=32)
        self.heads = positive_int("heads", heads, example=2)
        if D % self.heads:
            raise ValueError(f"heads must divide query_dim={D}, e.g. heads=2; got {self.heads}")
        self.to_q = nn.Linear(D, D, bias=False)
        self.to_k = nn.Linear(Dc, D, bias=False)
        self.to_v = nn.Linear(Dc, D, bias=False)
        self.to_out = nn.Linear(D, D)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape
        return x.reshape(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, heads, T, d)

    def _check(self, hidden_states, encoder_hidden_states, encoder_attention_mask):
        D, Dc = self.to_q.in_features, self.to_k.in_features
        x, c = hidden_states, encoder_hidden_states
        if not (isinstance(x, torch.Tensor) and isinstance(c, torch.Tensor)) or x.ndim != 3 or c.ndim != 3:
            raise ValueError(
                f"hidden_states must be (B, N, {D}) and encoder_hidden_states (B, L, {Dc}), "
                f"e.g. torch.randn(1, 64, {D}) and torch.randn(1, 7, {Dc})"
            )
        if x.shape[2] != D or c.shape[2] != Dc or c.shape[0] != x.shape[0]:
            raise ValueError(
                f"hidden_states must be (B, N, {D}) and encoder_hidden_states (B, L, {Dc}) with the same B; "
                f"got {tuple(x.shape)} and {tuple(c.shape)}"
            )
        m = encoder_attention_mask
        if m is not None and (not isinstance(m, torch.Tensor) or m.shape != c.shape[:2] or m.dtype != torch.bool):
            got = (tuple(m.shape), m.dtype) if isinstance(m, torch.Tensor) else type(m).__name__
            raise ValueError(
                f"encoder_attention_mask must be a bool tensor (B, L) = {tuple(c.shape[:2])}, True on real "
                f"text tokens; got {got}"
            )

    def _scores(self, x, c, mask) -> tuple[torch.Tensor, torch.Tensor]:
        q = self._split(self.to_q(x))  # (B, heads, N, d): one query per latent token
        k = self._split(self.to_k(c))  # (B, heads, L, d): one key per text token
        v = self._split(self.to_v(c))  # (B, heads, L, d)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, N, L)
        if mask is not None:  # padded text tokens get no attention
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1), v  # (B, heads, N, L), (B, heads, L, d)

    def attention_probs(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r""":math:`\operatorname{softmax}(Q K^\top / \sqrt d)` ``(B, heads, N, L)``, weights over the text.

        :param hidden_states: latent tokens ``(B, N, D)``.
        :param encoder_hidden_states: text tokens ``(B, L, D_text)``.
        :param encoder_attention_mask: ``(B, L)`` bool, True on real tokens (``None``: attend to all).
        :returns: ``(B, heads, N, L)``; every row sums to 1.
        """
        self._check(hidden_states, encoder_hidden_states, encoder_attention_mask)
        return self._scores(hidden_states, encoder_hidden_states, encoder_attention_mask)[0]

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""The attention output ``(B, N, D)``: for each latent token, a mix of the text's values.

        :param hidden_states: latent tokens ``(B, N, D)``.
        :param encoder_hidden_states: text tokens ``(B, L, D_text)``.
        :param encoder_attention_mask: ``(B, L)`` bool, True on real tokens (``None``: attend to all).
        :returns: ``(B, N, D)``, the shape of ``hidden_states``.
        """
        self._check(hidden_states, encoder_hidden_states, encoder_attention_mask)
        probs, v = self._scores(hidden_states, encoder_hidden_states, encoder_attention_mask)
        B, N, D = hidden_states.shape
        out = (probs @ v).transpose(1, 2).reshape(B, N, D)  # (B, N, heads * d)
        return self.to_out(out)  # (B, N, D)
