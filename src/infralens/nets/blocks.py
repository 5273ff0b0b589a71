r"""The one transformer block design of the book's stand-in DiTs, and the layers it is made of.

Both tiny DiTs (image and video) use :class:`DiTBlock`, the block of Wan
(DiffSynth-Studio's ``DiTBlock``, diffusers' ``WanTransformerBlock``), whose
adaLN table comes from PixArt-α (``BasicTransformerBlock`` with
``ada_norm_single``). Conditions enter it by different doors:

* the **timestep** becomes one vector per sample, projected once per model to six
  vectors :math:`(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2)` to
  which each block adds its own learned table (``scale_shift_table``); they
  *modulate* the normalised tokens (adaLN) and *gate* the residual branches,

  .. math:: x \leftarrow x + \alpha_1 \odot
     \operatorname{SelfAttn}\big(\operatorname{LN}(x)(1 + \gamma_1) + \beta_1\big);

* the **text** is read by *cross-attention*: the latent's tokens ask the
  questions (queries), the text tokens answer (keys and values). In the block,
  as in Wan, queries and keys are RMS-normalised over the full width before the
  heads are split (``norm_q``, ``norm_k``, "qk-norm"), in self- and in
  cross-attention:

  .. math:: \operatorname{Attn}(x, c) =
     \operatorname{softmax}\!\Big(\frac{n_q(x W_q)\,n_k(c W_k)^\top}{\sqrt{d}}\Big)\,(c W_v)\,W_o;

* optional **image tokens** (Wan 2.1 image-to-video: CLIP features of the first
  frame) get their *own* key and value projections and key norm, a *separate*
  attention from the same queries, and the two results are added before the
  output projection (decoupled cross-attention, as in IP-Adapter):
  :math:`\operatorname{softmax}(q k_\text{txt}^\top) v_\text{txt}
  + \operatorname{softmax}(q k_\text{img}^\top) v_\text{img}`.
  Each softmax normalises over its own tokens, so the image cannot crowd the text out.

What the tiny block leaves out of Wan's: rotary position embeddings in
self-attention, and the biases of the cross-attention's query, key and value
projections (``tests/upstream/test_wan_cross_attention_upstream.py`` runs this
block against DiffSynth-Studio's and diffusers' with those biases at zero and
RoPE at angle 0, and gets the same output).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from infralens.core.args import positive_int


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
    r"""Conditioning vector ``(B, D_c)`` to six ``(B, D)`` modulation vectors: :math:`\operatorname{SiLU}(e)\,W + b`.

    Returned as one ``(B, 6, D)`` tensor in the order
    :math:`(\beta_1, \gamma_1, \alpha_1, \beta_2, \gamma_2, \alpha_2)` (shift, scale,
    gate for attention, then for the MLP), diffusers' ``AdaLayerNormZero`` order.
    "Zero": with ``zero_init=True`` the map starts at zero, every gate is 0 and
    a block it drives starts as the identity (the DiT paper's initialisation).

    :param dim: :math:`D`, the width of the tokens it modulates.
    :param cond_dim: :math:`D_c`, the width of the conditioning vector (default ``dim``).
    :param zero_init: start from zero weights and bias.

    >>> AdaLNZero(8)(torch.randn(2, 8)).shape
    torch.Size([2, 6, 8])
    """

    def __init__(self, dim: int, cond_dim: int | None = None, *, zero_init: bool = True):
        super().__init__()
        self.dim = positive_int("dim", dim, example=64)
        cond = positive_int("cond_dim", dim if cond_dim is None else cond_dim, example=64)
        self.linear = nn.Linear(cond, 6 * dim)
        if zero_init:
            nn.init.zeros_(self.linear.weight)
            nn.init.zeros_(self.linear.bias)

    def forward(self, emb: torch.Tensor) -> torch.Tensor:
        """``(B, 6, D)``: shift, scale, gate for attention, then shift, scale, gate for the MLP."""
        return self.linear(nn.functional.silu(emb)).unflatten(1, (6, self.dim))  # (B, 6, D)


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    B, T, D = x.shape
    return x.view(B, T, heads, D // heads).transpose(1, 2)  # (B, heads, T, D/heads)


class CrossAttention(nn.Module):
    r"""Latent tokens attend to text tokens (and, decoupled, to image tokens): queries from ``hidden_states``.

    Projections are named as in diffusers' ``Attention`` (``to_q``, ``to_k``,
    ``to_v``, ``to_out``; the image branch ``add_k_proj``, ``add_v_proj`` and
    ``norm_added_k`` as in its Wan attention; DiffSynth-Studio calls them ``k_img``,
    ``v_img``, ``norm_k_img``). The output has the shape of the queries.

    :param query_dim: :math:`D`, the width of the latent tokens.
    :param context_dim: :math:`D_\text{text}`, the width of the text tokens.
    :param heads: attention heads; must divide ``query_dim``.
    :param image_dim: width of the image tokens, for a decoupled image branch (``None``: none).
    :param qk_norm: RMS-normalise queries and keys over the full width :math:`D` before
        splitting heads (``norm_q``, ``norm_k``, as Wan does); ``False`` is the plain
        attention of Stable Diffusion's UNet and diffusers' default ``Attention``.

    >>> attn = CrossAttention(query_dim=16, context_dim=32, heads=2)
    >>> x, text = torch.randn(1, 64, 16), torch.randn(1, 7, 32)
    >>> attn(x, text).shape, attn.attention_probs(x, text).shape
    (torch.Size([1, 64, 16]), torch.Size([1, 2, 64, 7]))
    """

    def __init__(
        self, query_dim: int, context_dim: int, heads: int = 2, *, image_dim: int | None = None, qk_norm: bool = False
    ):
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
        if not isinstance(qk_norm, bool):
            raise ValueError(f"qk_norm must be True or False, e.g. qk_norm=True; got {qk_norm!r}")
        self.qk_norm = qk_norm
        if self.qk_norm:  # Wan: RMSNorm over the full width, before the head split
            self.norm_q = nn.RMSNorm(D, eps=1e-6)
            self.norm_k = nn.RMSNorm(D, eps=1e-6)
        self.image_dim = None if image_dim is None else positive_int("image_dim", image_dim, example=D)
        if self.image_dim is not None:  # the decoupled image branch: its own keys, values and key norm
            self.add_k_proj = nn.Linear(self.image_dim, D, bias=False)
            self.add_v_proj = nn.Linear(self.image_dim, D, bias=False)
            self.norm_added_k = nn.RMSNorm(D, eps=1e-6)

    def _check(self, x, c, mask, image_tokens) -> None:
        D, Dc = self.to_q.in_features, self.to_k.in_features
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
        if mask is not None and (
            not isinstance(mask, torch.Tensor) or mask.shape != c.shape[:2] or mask.dtype != torch.bool
        ):
            got = (tuple(mask.shape), mask.dtype) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(
                f"encoder_attention_mask must be a bool tensor (B, L) = {tuple(c.shape[:2])}, True on real "
                f"text tokens; got {got}"
            )
        Di = self.image_dim
        if Di is None and image_tokens is not None:
            raise ValueError("image_tokens given, but this attention has no image branch; build it with image_dim=...")
        if Di is not None and (
            not isinstance(image_tokens, torch.Tensor) or image_tokens.ndim != 3
            or image_tokens.shape[0] != x.shape[0] or image_tokens.shape[2] != Di
        ):  # fmt: skip
            got = tuple(image_tokens.shape) if isinstance(image_tokens, torch.Tensor) else image_tokens
            raise ValueError(f"image_tokens must be (B, L_img, {Di}) with B = {x.shape[0]}; got {got}")

    def _query_key(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, k = self.to_q(x), self.to_k(c)  # (B, N, D), (B, L, D)
        if self.qk_norm:
            q, k = self.norm_q(q), self.norm_k(k)  # n_q, n_k over all D features of a token
        return _heads(q, self.heads), _heads(k, self.heads)  # (B, heads, N, d), (B, heads, L, d)

    def _probs(self, q: torch.Tensor, k: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # (B, heads, N, L)
        if mask is not None:  # padded text tokens get no attention
            scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        return scores.softmax(dim=-1)  # (B, heads, N, L): each row sums to 1 over these keys only

    def attention_probs(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r""":math:`\operatorname{softmax}(Q K^\top / \sqrt d)` ``(B, heads, N, L)``, the weights over the text.

        :param hidden_states: latent tokens ``(B, N, D)``.
        :param encoder_hidden_states: text tokens ``(B, L, D_text)``.
        :param encoder_attention_mask: ``(B, L)`` bool, True on real tokens (``None``: attend to all).
        :returns: ``(B, heads, N, L)``; every row sums to 1.
        """
        image = torch.zeros(hidden_states.shape[0], 1, self.image_dim) if self.image_dim else None
        self._check(hidden_states, encoder_hidden_states, encoder_attention_mask, image)
        q, k = self._query_key(hidden_states, encoder_hidden_states)  # (B, heads, N, d), (B, heads, L, d)
        return self._probs(q, k, encoder_attention_mask)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
        *,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""The attention output ``(B, N, D)``: for each latent token, a mix of the text's values (plus the image's).

        :param hidden_states: latent tokens ``(B, N, D)``.
        :param encoder_hidden_states: text tokens ``(B, L, D_text)``.
        :param encoder_attention_mask: ``(B, L)`` bool, True on real text tokens (``None``: attend to all).
        :param image_tokens: ``(B, L_img, D_img)``, required iff the attention has an image branch.
        :returns: ``(B, N, D)``, the shape of ``hidden_states``.
        """
        self._check(hidden_states, encoder_hidden_states, encoder_attention_mask, image_tokens)
        B, N, D = hidden_states.shape
        q, k = self._query_key(hidden_states, encoder_hidden_states)  # (B, heads, N, d) and (B, heads, L, d)
        v = _heads(self.to_v(encoder_hidden_states), self.heads)  # (B, heads, L, d)
        out = self._probs(q, k, encoder_attention_mask) @ v  # (B, heads, N, d)
        if self.image_dim is not None:  # decoupled: a second softmax over the image tokens alone, added
            k_img = _heads(self.norm_added_k(self.add_k_proj(image_tokens)), self.heads)  # (B, heads, L_img, d)
            v_img = _heads(self.add_v_proj(image_tokens), self.heads)  # (B, heads, L_img, d)
            out = out + self._probs(q, k_img, None) @ v_img  # (B, heads, N, d)
        return self.to_out(out.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class SelfAttention(nn.Module):
    r"""Tokens attend to each other: fused Q/K/V projection, Wan's qk-norm, torch's SDPA, output projection.

    :math:`\operatorname{softmax}\big(n_q(x W_q)\,n_k(x W_k)^\top / \sqrt d\big)\,(x W_v)\,W_o`,
    with :math:`n_q`, :math:`n_k` RMSNorms over the full width (``norm_q``, ``norm_k``).

    >>> attn = SelfAttention(16, heads=2)
    >>> attn(torch.randn(1, 6, 16)).shape
    torch.Size([1, 6, 16])
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.to_qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = nn.RMSNorm(dim, eps=1e-6)
        self.norm_k = nn.RMSNorm(dim, eps=1e-6)
        self.to_out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.to_qkv(x).chunk(3, dim=-1)  # 3 x (B, N, D)
        q, k = self.norm_q(q), self.norm_k(k)  # qk-norm over all D features, before the head split
        q, k, v = (_heads(t, self.heads) for t in (q, k, v))  # 3 x (B, heads, N, d)
        a = nn.functional.scaled_dot_product_attention(q, k, v)  # (B, heads, N, d)
        return self.to_out(a.transpose(1, 2).reshape(B, N, D))  # (B, N, D)


class DiTBlock(nn.Module):
    r"""Modulated, gated self-attention; cross-attention to the text (and image); modulated, gated MLP.

    ``forward(x (B, N, D), context (B, L, D), t_mod (B, 6, D), *, mask=None, image_tokens=None) -> (B, N, D)``.
    The block's own ``scale_shift_table`` ``(1, 6, D)`` is added to the model's
    timestep projection ``t_mod`` (Wan, PixArt-α). Both attentions normalise their
    queries and keys (``attn1.norm_q``, ``attn1.norm_k``, ``attn2.norm_q``,
    ``attn2.norm_k``), as Wan's do.

    :param dim: :math:`D`.
    :param heads: attention heads; must divide ``dim``.
    :param mlp_ratio: MLP width over :math:`D`.
    :param image_dim: width of image tokens for a decoupled image branch (``None``: text only).

    >>> block = DiTBlock(16, 2)
    >>> block(torch.randn(1, 6, 16), torch.randn(1, 3, 16), torch.zeros(1, 6, 16)).shape
    torch.Size([1, 6, 16])
    """

    def __init__(self, dim: int, heads: int, *, mlp_ratio: int = 4, image_dim: int | None = None):
        super().__init__()
        D = positive_int("dim", dim, example=64)
        h = positive_int("heads", heads, example=2)
        if D % h:
            raise ValueError(f"heads must divide dim={D}, e.g. heads=2; got {h}")
        self.norm1 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.attn1 = SelfAttention(D, h)
        self.norm2 = nn.LayerNorm(D, eps=1e-6)
        self.attn2 = CrossAttention(D, D, heads=h, image_dim=image_dim, qk_norm=True)
        self.norm3 = nn.LayerNorm(D, elementwise_affine=False, eps=1e-6)
        self.ffn = nn.Sequential(nn.Linear(D, mlp_ratio * D), nn.GELU(approximate="tanh"), nn.Linear(mlp_ratio * D, D))
        self.scale_shift_table = nn.Parameter(torch.randn(1, 6, D) / math.sqrt(D))  # learned offsets per block

    def modulation(self, t_mod: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """``(shift1, scale1, gate1, shift2, scale2, gate2)``, each ``(B, D)``: the table plus ``t_mod``."""
        return (self.scale_shift_table + t_mod).unbind(1)  # 6 x (B, D)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        t_mod: torch.Tensor,
        *,
        mask: torch.Tensor | None = None,
        image_tokens: torch.Tensor | None = None,
    ) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.modulation(t_mod)  # 6 x (B, D), from the timestep
        x = x + gate1[:, None] * self.attn1(modulate(self.norm1(x), shift1, scale1))  # (B, N, D)
        x = x + self.attn2(self.norm2(x), context, mask, image_tokens=image_tokens)  # queries x, keys/values text
        return x + gate2[:, None] * self.ffn(modulate(self.norm3(x), shift2, scale2))  # (B, N, D)
