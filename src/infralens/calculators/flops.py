r"""FLOPs of one call of a Wan video DiT, split by where they are spent.

A Wan block (self-attention over the :math:`N` video tokens, cross-attention to
the :math:`L` text tokens, a GELU MLP of width :math:`f`, all at width
:math:`d`) spends, counting 2 FLOPs per multiply-add of its dense products:

.. math::
   F_\text{block} = \underbrace{12 N d^2 + 4 L d^2}_{\text{projections}}
   + \underbrace{4 N d f}_{\text{MLP}}
   + \underbrace{4 N^2 d}_{\text{self-attention}}
   + \underbrace{4 N L d}_{\text{cross-attention}}

(self-attention's :math:`Q, K, V, O` are :math:`8 N d^2`, cross-attention's
:math:`Q, O` another :math:`4 N d^2` and its :math:`K, V` over the text
:math:`4 L d^2`; :math:`QK^\top` and :math:`PV` are :math:`2 N^2 d` each, and
:math:`2 N L d` each against the text). One call adds the patch embedding and
the head (:math:`2 N d\, c\, p` each, :math:`c` latent channels, :math:`p` cells
per patch) and the text and timestep embeddings, which do not grow with
:math:`N`. Norms, RoPE, softmax and the modulation are a few FLOPs per element
and are not counted: these are the products torch's FLOP counter sees, and
``tox -e upstream`` checks the total against DiffSynth-Studio's own
``model_fn_wan_video`` on the meta device.

Attention's FLOPs grow with :math:`N^2`, everything else with :math:`N`, so the
share of attention rises with resolution and length. The memory of the
:math:`N \times N` scores is another matter: FlashAttention-style kernels and
torch's ``scaled_dot_product_attention`` never store them, so they cost FLOPs,
not bytes (:func:`~infralens.calculators.attention_cost` gives the bytes a naive
implementation would hold).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from infralens.core import positive_int
from infralens.families import get_model

from .tokens import latent_tokens


@dataclass(frozen=True)
class DitFlops:
    """FLOPs of one DiT call for one request, per block and in total."""

    model: str
    """The model record (:data:`~infralens.families.MODELS`)."""
    tokens: int
    """:math:`N`, video tokens per sample."""
    text_tokens: int
    """:math:`L`, text tokens (Wan pads every prompt to 512)."""
    layers: int
    """Blocks in the model."""
    batch: int
    """Samples per call (2 for a guided call with the two prompts batched)."""
    projections: int
    r"""Per block: :math:`12 N d^2 + 4 L d^2`, the attention projections."""
    mlp: int
    """Per block: :math:`4 N d f`."""
    self_attention: int
    r"""Per block: :math:`4 N^2 d`, :math:`QK^\top` and :math:`PV` over the video tokens."""
    cross_attention: int
    r"""Per block: :math:`4 N L d`, the same against the text tokens."""
    outside_blocks: int
    """Per call: patch embedding, head, text and timestep embeddings."""

    @property
    def block(self) -> int:
        """FLOPs of one block."""
        return self.projections + self.mlp + self.self_attention + self.cross_attention

    @property
    def attention(self) -> int:
        """Attention FLOPs of one call (self and cross, every block): the part that grows with :math:`N^2`."""
        return self.layers * (self.self_attention + self.cross_attention)

    @property
    def total(self) -> int:
        """FLOPs of one call."""
        return self.layers * self.block + self.outside_blocks

    @property
    def attention_share(self) -> float:
        """:attr:`attention` over :attr:`total`."""
        return self.attention / self.total


def dit_flops(
    model: str = "wan2.1-t2v-14b",
    *,
    height: int,
    width: int,
    frames: int,
    text_tokens: int = 512,
    batch: int = 1,
) -> DitFlops:
    r"""FLOPs of one call of a Wan DiT on a request (see the module docstring for the count).

    :param model: a Wan DiT in :data:`~infralens.families.MODELS`, ``"wan2.1-t2v-14b"`` or ``"wan2.1-t2v-1.3b"``.
    :param height: :math:`H` in pixels (a multiple of 16).
    :param width: :math:`W` in pixels (a multiple of 16).
    :param frames: :math:`F = 1 + 4k`.
    :param text_tokens: :math:`L`, the padded prompt length.
    :param batch: samples per call.
    :returns: a :class:`DitFlops`.

    >>> f = dit_flops(height=480, width=832, frames=81)
    >>> f.tokens, round(f.total / 1e15, 2), round(f.attention_share, 3)
    (32760, 1.68, 0.532)
    """
    spec = get_model(model)
    if not str(spec.upstream_class).startswith("WanModel"):
        raise ValueError(f"model must be a Wan DiT, e.g. model='wan2.1-t2v-14b'; got {model!r}")
    L = positive_int("text_tokens", text_tokens, example=512)
    B = positive_int("batch", batch, example=1)
    N = latent_tokens(spec.family, height=height, width=width, frames=frames).tokens
    d, f = spec["dim"], spec["ffn_dim"]
    p = math.prod(spec["patch_size"])  # latent cells per token
    projections = 12 * N * d * d + 4 * L * d * d  # self Q, K, V, O and cross Q, O over N; cross K, V over L
    mlp = 4 * N * d * f  # two matrices of d x f
    self_attention = 4 * N * N * d  # QK^T and PV: 2 N^2 d each
    cross_attention = 4 * N * L * d  # against the text: 2 N L d each
    embed = 2 * N * d * spec["in_dim"] * p  # the patch embedding: a conv with kernel = stride = the patch
    head = 2 * N * d * spec["out_dim"] * p  # back to the patch's latent cells
    text = 2 * L * d * (spec["text_dim"] + d)  # text MLP: text_dim -> d -> d
    time = 2 * d * (spec["freq_dim"] + d) + 2 * d * 6 * d  # timestep MLP, then the six modulation vectors
    outside = B * (embed + head + text) + time  # the timestep is embedded once, before a batched call
    return DitFlops(
        model, N, L, spec["num_layers"], B, B * projections, B * mlp, B * self_attention, B * cross_attention, outside
    )
