r"""Exact softmax attention, whole or in blocks: one online softmax for every blocked variant.

Naive attention materialises the scores :math:`S = QK^\top \cdot \text{scale}`,
one :math:`S_q \times S_k` matrix per head, then their softmax:

.. math:: O = \operatorname{softmax}(S)\,V, \qquad \text{scale} = 1/\sqrt{d}

The softmax normalises each query's row over the keys, so the keys can also be
visited in blocks if three running quantities are kept per query row :math:`i`:
the largest score seen so far :math:`m_i`, the sum of exponentials relative to
it :math:`\ell_i`, and the unnormalised output :math:`a_i`. Block :math:`j` of
keys :math:`k \in j`, with scores :math:`S_{ik}` and values :math:`v_k`, updates them as

.. math:: m_i' = \max(m_i, \max_{k \in j} S_{ik}), \quad
   \ell_i' = e^{m_i - m_i'}\ell_i + \textstyle\sum_{k \in j} e^{S_{ik} - m_i'}, \quad
   a_i' = e^{m_i - m_i'} a_i + \textstyle\sum_{k \in j} e^{S_{ik} - m_i'} v_k

from :math:`m_i = -\infty, \ell_i = 0, a_i = 0`, and :math:`O_i = a_i / \ell_i` after the last block,
exactly the softmax result (FlashAttention's algorithm; Dao et al. 2022, Milakov & Gimelshein 2018).
:class:`OnlineSoftmax` is that update, written once. Everything blocked in the
book uses it: query chunks (:func:`chunked_attention`, the memory lab), query and
key tiles (:func:`flash_attention`, the transformer track's backend lab), and key
blocks that arrive from other ranks (ring attention in
:mod:`infralens.distributed`).
"""

from __future__ import annotations

import math

import torch

from infralens.core import dtype_bytes, positive_int


def _check_qkv(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> None:
    for name, t in (("query", query), ("key", key), ("value", value)):
        if not isinstance(t, torch.Tensor) or t.ndim != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name} must have 4 axes (B, h, S, d), e.g. (1, 8, 1024, 64); got {got}")
    if key.shape[:3] != value.shape[:3] or query.shape[:2] != key.shape[:2] or query.shape[-1] != key.shape[-1]:
        raise ValueError(
            "query (B, h, S_q, d), key (B, h, S_k, d) and value (B, h, S_k, d_v) must agree on B, h, S_k and d; "
            f"got query {tuple(query.shape)}, key {tuple(key.shape)}, value {tuple(value.shape)}"
        )


def _check_mask(mask: object, scores_shape: tuple[int, ...]) -> None:
    example = f"e.g. a boolean tensor of shape {scores_shape[2:]}"
    if not isinstance(mask, torch.Tensor) or not (mask.dtype == torch.bool or mask.is_floating_point()):
        got = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a boolean or floating-point tensor, {example}; got {got}")
    try:
        fits = torch.broadcast_shapes(mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"mask must broadcast to the scores (B, h, S_q, S_k) = {scores_shape}, {example}; got {tuple(mask.shape)}"
        )


def causal_visible(q_positions: torch.Tensor, k_positions: torch.Tensor) -> torch.Tensor:
    r"""Boolean ``(S_q, S_k)`` mask, ``True`` where key position :math:`j \le` query position :math:`i`.

    >>> causal_visible(torch.arange(3), torch.arange(3)).int().tolist()
    [[1, 0, 0], [1, 1, 0], [1, 1, 1]]
    """
    return k_positions[None, :] <= q_positions[:, None]  # (S_q, S_k)


def naive_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    causal: bool = False,
    mask: torch.Tensor | None = None,
    scale: float | None = None,
) -> torch.Tensor:
    r"""Attention that stores the whole score matrix: :math:`\operatorname{softmax}(QK^\top \cdot \text{scale} + M)\,V`.

    With ``causal=True`` query :math:`i` stands at position :math:`S_k - S_q + i`
    and sees keys up to it (the convention of a decode step against a cache).
    ``mask`` adds any other pattern (padding, a decode window): a boolean mask
    hides the keys where it is ``False`` (their scores become :math:`-\infty`),
    a floating-point mask :math:`M` is added to the scores (0 where visible, a
    large negative number where not), as ``scaled_dot_product_attention``'s
    ``attn_mask`` does. A query row that sees no key at all has no softmax and
    comes out NaN; that is the caller's to avoid.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d_v)``.
    :param causal: hide keys after each query's position.
    :param mask: boolean (``True`` = visible) or additive mask broadcasting to ``(B, h, S_q, S_k)``.
    :param scale: multiplies the scores; :math:`1/\sqrt{d}` by default.
    :returns: :math:`O`, shape ``(B, h, S_q, d_v)``.

    >>> import torch.nn.functional as F
    >>> q, k, v = torch.randn(3, 1, 2, 64, 16).unbind(0)
    >>> torch.allclose(naive_attention(q, k, v), F.scaled_dot_product_attention(q, k, v), atol=1e-6)
    True
    >>> keep = torch.rand(64, 64) < 0.9                      # (S_q, S_k), True = visible
    >>> keep[:, 0] = True                                    # every row sees a key
    >>> torch.allclose(naive_attention(q, k, v, mask=keep), F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
    ...                atol=1e-6)
    True
    """
    _check_qkv(query, key, value)
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = query @ key.transpose(-2, -1) * scale  # (B, h, S_q, S_k)
    if causal:
        sq, sk = query.shape[2], key.shape[2]
        visible = causal_visible(torch.arange(sk - sq, sk), torch.arange(sk)).to(scores.device)  # (S_q, S_k)
        scores = scores.masked_fill(~visible, float("-inf"))
    if mask is not None:
        _check_mask(mask, tuple(scores.shape))
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask  # + M
    return scores.softmax(dim=-1) @ value  # (B, h, S_q, d_v)


class OnlineSoftmax:
    r"""The running state :math:`(m, \ell, a)` of softmax attention for a block of queries.

    Create it for the queries, :meth:`update` it with key/value blocks in any
    order, read :attr:`output`. The state is kept in float32 or better whatever
    the inputs' dtype, as FlashAttention kernels keep theirs.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param value_dim: :math:`d_v`, channels of the values (default: :math:`d`).
    :param scale: multiplies the scores; :math:`1/\sqrt{d}` by default.

    >>> q, k, v = torch.randn(3, 1, 2, 8, 4).unbind(0)
    >>> state = OnlineSoftmax(q)
    >>> for block in range(0, 8, 3):  # keys in blocks of 3, 3 and 2
    ...     state.update(k[:, :, block:block + 3], v[:, :, block:block + 3])
    >>> torch.allclose(state.output, naive_attention(q, k, v), atol=1e-6)
    True
    """

    def __init__(self, query: torch.Tensor, *, value_dim: int | None = None, scale: float | None = None):
        if not isinstance(query, torch.Tensor) or query.ndim != 4:
            got = tuple(query.shape) if isinstance(query, torch.Tensor) else type(query).__name__
            raise ValueError(f"query must have 4 axes (B, h, S_q, d), e.g. (1, 8, 1024, 64); got {got}")
        B, h, sq, d = query.shape
        dv = d if value_dim is None else positive_int("value_dim", value_dim, example=d)
        self.query = query
        self.scale = 1 / math.sqrt(d) if scale is None else scale
        acc_dtype = torch.promote_types(query.dtype, torch.float32)
        self.max = torch.full((B, h, sq), float("-inf"), dtype=acc_dtype, device=query.device)  # m: (B, h, S_q)
        self.sum = torch.zeros((B, h, sq), dtype=acc_dtype, device=query.device)  # l: (B, h, S_q)
        self.acc = torch.zeros((B, h, sq, dv), dtype=acc_dtype, device=query.device)  # a: (B, h, S_q, d_v)
        self._scaled_query = query.to(acc_dtype) * self.scale  # Q * scale, once: (B, h, S_q, d)

    def update(self, key: torch.Tensor, value: torch.Tensor, *, visible: torch.Tensor | None = None) -> None:
        r"""Fold one key/value block into the state.

        :param key: :math:`K_j`, shape ``(B, h, S_j, d)``.
        :param value: :math:`V_j`, shape ``(B, h, S_j, d_v)``.
        :param visible: optional boolean mask broadcasting to ``(B, h, S_q, S_j)``, ``False`` where a key is hidden.
        """
        _check_qkv(self.query, key, value)
        s = self._scaled_query @ key.transpose(-2, -1).to(self.acc.dtype)  # S_ik, k in block j: (B, h, S_q, S_j)
        if visible is not None:
            s.masked_fill_(~visible, float("-inf"))
        m_new = torch.maximum(self.max, s.amax(dim=-1))  # m_i' = max(m_i, max_{k in j} S_ik)
        m_ref = m_new.masked_fill(m_new == float("-inf"), 0.0)  # rows with nothing visible yet stay at zero weight
        p = s.sub_(m_ref[..., None]).exp_()  # e^{S_ik - m_i'}, in place: one score block alive, (B, h, S_q, S_j)
        rescale = torch.exp(self.max - m_ref)  # e^{m_i - m_i'}: (B, h, S_q)
        self.sum = rescale * self.sum + p.sum(dim=-1)  # l_i' = e^{m_i - m_i'} l_i + sum_{k in j} e^{S_ik - m_i'}
        # a_i' = e^{m_i - m_i'} a_i + sum_{k in j} e^{S_ik - m_i'} v_k: (B, h, S_q, d_v)
        self.acc = rescale[..., None] * self.acc + p @ value.to(self.acc.dtype)
        self.max = m_new

    @property
    def output(self) -> torch.Tensor:
        r""":math:`O = a / \ell`, shape ``(B, h, S_q, d_v)`` in the query's dtype (NaN in a row that saw no key)."""
        return (self.acc / self.sum[..., None]).to(self.query.dtype)

    @property
    def logsumexp(self) -> torch.Tensor:
        r""":math:`m + \ln \ell` per query row, ``(B, h, S_q)``: the log of the softmax's normaliser."""
        return self.max + torch.log(self.sum)


def flash_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    *,
    block_q: int = 128,
    block_k: int = 128,
    causal: bool = False,
    scale: float | None = None,
) -> torch.Tensor:
    r"""Attention in :math:`b_q \times b_k` tiles with an online softmax: exact, and no :math:`S_q \times S_k` matrix.

    The largest score block alive is :math:`B \cdot h \cdot b_q \cdot b_k`, so the
    working memory grows with the tile, not with the sequence. With
    ``causal=True`` query :math:`i` stands at position :math:`S_k - S_q + i`
    (as in :func:`naive_attention`) and key tiles entirely in its future are
    skipped, not only masked.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d_v)``.
    :param block_q: :math:`b_q`, query rows per tile.
    :param block_k: :math:`b_k`, keys per tile.
    :param causal: hide keys after each query's position.
    :param scale: multiplies the scores; :math:`1/\sqrt{d}` by default.
    :returns: :math:`O`, shape ``(B, h, S_q, d_v)``.

    >>> import torch.nn.functional as F
    >>> q, k, v = torch.randn(3, 2, 4, 100, 16).unbind(0)
    >>> out = flash_attention(q, k, v, block_q=32, block_k=24, causal=True)
    >>> torch.allclose(out, F.scaled_dot_product_attention(q, k, v, is_causal=True), atol=1e-5)
    True
    """
    _check_qkv(query, key, value)
    bq = positive_int("block_q", block_q, example=128)
    bk = positive_int("block_k", block_k, example=128)
    sq, sk = query.shape[2], key.shape[2]
    out = torch.empty(query.shape[:3] + value.shape[-1:], dtype=query.dtype, device=query.device)  # (B, h, S_q, d_v)
    q_pos_all, k_pos_all = torch.arange(sk - sq, sk), torch.arange(sk)
    for q0 in range(0, sq, bq):
        rows = slice(q0, q0 + bq)
        state = OnlineSoftmax(query[:, :, rows], value_dim=value.shape[-1], scale=scale)
        q_pos = q_pos_all[rows]
        for k0 in range(0, sk, bk):
            cols = slice(k0, k0 + bk)
            if causal and k0 > q_pos[-1]:
                break  # every later key tile is in the future of every query of this tile
            visible = causal_visible(q_pos, k_pos_all[cols]) if causal else None
            state.update(key[:, :, cols], value[:, :, cols], visible=visible)
        out[:, :, rows] = state.output  # (B, h, b_q, d_v)
    return out


def chunked_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, *, chunk_size: int) -> torch.Tensor:
    r"""The same attention, ``chunk_size`` query rows at a time: only a :math:`c \times S_k` block of scores is alive.

    Each output row depends on its own query row and on all keys, so rows can be
    computed in any grouping; this is :func:`flash_attention` with one key tile
    covering every key. The last chunk may be shorter.

    :param query: :math:`Q`, shape ``(B, h, S_q, d)``.
    :param key: :math:`K`, shape ``(B, h, S_k, d)``.
    :param value: :math:`V`, shape ``(B, h, S_k, d_v)``.
    :param chunk_size: :math:`c`, query rows per chunk (>= 1).
    :returns: :math:`O`, shape ``(B, h, S_q, d_v)``.

    >>> q, k, v = torch.randn(3, 1, 2, 100, 16).unbind(0)
    >>> torch.allclose(chunked_attention(q, k, v, chunk_size=32), naive_attention(q, k, v), atol=1e-6)
    True
    """
    _check_qkv(query, key, value)
    c = positive_int("chunk_size", chunk_size, example=1024)
    return flash_attention(query, key, value, block_q=c, block_k=key.shape[2])


def score_bytes(*, batch: int, heads: int, queries: int, keys: int, dtype: str = "bf16") -> float:
    r"""Bytes of one attention score block, :math:`B \cdot h \cdot S_q \cdot S_k \cdot \text{itemsize}`.

    With ``queries`` the whole sequence this is what naive attention stores; with
    ``queries`` a chunk size it is what :func:`chunked_attention` stores at a time.
    Fused kernels (FlashAttention, memory-efficient SDPA) store at most a tile of it.

    :param batch: :math:`B`.
    :param heads: :math:`h`.
    :param queries: :math:`S_q`, query rows in the block.
    :param keys: :math:`S_k`, keys every query attends to.
    :param dtype: a name of :data:`~infralens.core.DTYPE_BYTES` (``"fp32"``, ``"bf16"``, ...).
    :returns: bytes.

    >>> score_bytes(batch=1, heads=40, queries=1024, keys=4096, dtype="fp32") == 40 * 1024 * 4096 * 4
    True
    """
    b = positive_int("batch", batch, example=1)
    h = positive_int("heads", heads, example=40)
    sq = positive_int("queries", queries, example=4096)
    sk = positive_int("keys", keys, example=4096)
    return b * h * sq * sk * dtype_bytes(dtype)
