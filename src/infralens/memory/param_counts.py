r"""Parameter counts of the Wan 2.1 text-to-video pipeline's components, from their configurations.

Offload moves weights, so its sizes are parameter counts times bytes per
parameter. The transformer and the text encoder are stacks of identical blocks;
counting one block from the configuration gives the offload units of
layer-level offload and, times the depth, most of the model:

.. math:: P_\text{DiT block} = \underbrace{8d^2}_{\text{self + cross attention}}
   + \underbrace{2 d f}_{\text{FFN}} + f + 21 d,
   \qquad P_\text{T5 block} = 4 d\, d_\text{attn} + 3 d f + 2 d + n_\text{buckets} h

(biases, RMS/LayerNorm scales and the modulation table are the linear terms).
The defaults are Wan 2.1 14B's transformer (the constructor defaults of
diffusers' ``WanTransformer3DModel``) and the UMT5-XXL encoder (the defaults of
DiffSynth-Studio's ``WanTextEncoder``); ``tox -e upstream`` instantiates both on
the meta device and compares every count.
"""

from __future__ import annotations

import math

from infralens.calculators import dtype_bytes
from infralens.diffusion._args import positive_int

from .offload import Component

WAN21_VAE_PARAMS = 126_892_531
"""Parameters of the Wan 2.1 VAE (encoder and decoder): ``AutoencoderKLWan()`` in diffusers, counted on the meta device.

The VAE is a tree of 3-D convolutions, residual blocks and one attention block;
no short closed formula, so the count is taken from the class and re-checked by
``tox -e upstream``.
"""


def wan_dit_layer_params(
    *,
    dim: int = 5120,
    ffn_dim: int = 13824,
    num_layers: int = 40,
    in_channels: int = 16,
    out_channels: int = 16,
    text_dim: int = 4096,
    freq_dim: int = 256,
    patch_size: tuple[int, int, int] = (1, 2, 2),
) -> tuple[int, ...]:
    r"""Parameters of a Wan text-to-video transformer, per offload unit in execution order.

    Units: the input embeddings (patch embedding and the time and text
    embedders), each of the ``num_layers`` blocks of
    :math:`8d^2 + 2df + f + 21d`, and the output head. Argument names follow
    DiffSynth-Studio's ``WanModel`` (``dim``, ``ffn_dim``); diffusers spells
    :math:`d` as ``num_attention_heads * attention_head_dim`` (40 x 128).

    :param dim: :math:`d`, the hidden size.
    :param ffn_dim: :math:`f`, the feed-forward hidden size.
    :param num_layers: transformer blocks.
    :param in_channels: latent channels in.
    :param out_channels: latent channels out.
    :param text_dim: width of the text encoder's output.
    :param freq_dim: width of the sinusoidal timestep embedding.
    :param patch_size: latent cells per token ``(frames, height, width)``.
    :returns: ``(embeddings, block, ..., block, head)`` parameter counts.

    >>> units = wan_dit_layer_params()
    >>> len(units), units[1], sum(units)
    (42, 351394304, 14288491584)
    """
    d = positive_int("dim", dim, example=5120)
    f = positive_int("ffn_dim", ffn_dim, example=13824)
    n = positive_int("num_layers", num_layers, example=40)
    c_in = positive_int("in_channels", in_channels, example=16)
    c_out = positive_int("out_channels", out_channels, example=16)
    t = positive_int("text_dim", text_dim, example=4096)
    fr = positive_int("freq_dim", freq_dim, example=256)
    if len(tuple(patch_size)) != 3:
        raise ValueError(f"patch_size must have 3 entries (frames, height, width), e.g. (1, 2, 2); got {patch_size!r}")
    p = 1
    for k in patch_size:
        p *= positive_int("patch_size entries", k, example=2)
    patch_embed = c_in * p * d + d  # Conv3d with kernel = stride = patch
    time_embed = (fr * d + d) + (d * d + d)  # two linears, freq -> d -> d
    time_proj = d * 6 * d + 6 * d  # d -> 6d modulation for the blocks
    text_embed = (t * d + d) + (d * d + d)  # two linears, text_dim -> d -> d
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, out with bias; RMSNorm of q and k over d
    block = 2 * attention + 2 * d + (2 * d * f + f + d) + 6 * d  # self, cross, norm2, FFN, modulation table
    head = 2 * d + d * c_out * p + c_out * p  # modulation table and the linear back to patches
    return (patch_embed + time_embed + time_proj + text_embed, *([block] * n), head)


def umt5_encoder_layer_params(
    *,
    vocab: int = 256384,
    dim: int = 4096,
    dim_attn: int = 4096,
    ffn_dim: int = 10240,
    num_heads: int = 64,
    num_layers: int = 24,
    num_buckets: int = 32,
) -> tuple[int, ...]:
    r"""Parameters of a UMT5 encoder (Wan's text encoder), per offload unit in execution order.

    Units: the token embedding :math:`V d`, each block of
    :math:`4 d\,d_\text{attn} + 3 d f + 2 d + n_\text{buckets} h` (bias-free
    attention, gated FFN, two RMSNorm scales, its own relative-position table)
    and the final RMSNorm :math:`d`.

    :param vocab: :math:`V`, vocabulary size.
    :param dim: :math:`d`, model width.
    :param dim_attn: :math:`d_\text{attn}`, total width of the attention heads.
    :param ffn_dim: :math:`f`, gated feed-forward width.
    :param num_heads: :math:`h`.
    :param num_layers: encoder blocks.
    :param num_buckets: :math:`n_\text{buckets}`, relative-position buckets.
    :returns: ``(embedding, block, ..., block, final norm)`` parameter counts.

    >>> units = umt5_encoder_layer_params()
    >>> units[0], units[1], sum(units)
    (1050148864, 192948224, 5680910336)
    """
    V = positive_int("vocab", vocab, example=256384)
    d = positive_int("dim", dim, example=4096)
    da = positive_int("dim_attn", dim_attn, example=4096)
    f = positive_int("ffn_dim", ffn_dim, example=10240)
    h = positive_int("num_heads", num_heads, example=64)
    n = positive_int("num_layers", num_layers, example=24)
    nb = positive_int("num_buckets", num_buckets, example=32)
    block = 4 * d * da + 3 * d * f + 2 * d + nb * h  # q, k, v, o; gate, fc1, fc2; two norms; position table
    return (V * d, *([block] * n), d)


def wan21_t2v_components(*, dtype: str = "bf16") -> tuple[Component, ...]:
    r"""The Wan 2.1 14B text-to-video pipeline as offload sees it: text encoder, transformer, VAE, in bytes.

    Bytes are parameters times the size of ``dtype`` (DiffSynth-Studio runs all
    three in the pipeline's ``torch_dtype``, bfloat16 by default). Names are
    diffusers' component names.

    :param dtype: a name of :data:`~infralens.calculators.DTYPE_BYTES`.
    :returns: ``(text_encoder, transformer, vae)`` as :class:`Component`.

    >>> [(c.name, c.total_bytes) for c in wan21_t2v_components()]
    [('text_encoder', 11361820672), ('transformer', 28576983168), ('vae', 253785062)]
    """
    size = dtype_bytes(dtype)

    def to_bytes(params: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(math.ceil(p * size) for p in params)  # int4 packs two per byte: round up

    return (
        Component("text_encoder", to_bytes(umt5_encoder_layer_params())),
        Component("transformer", to_bytes(wan_dit_layer_params())),
        Component("vae", to_bytes((WAN21_VAE_PARAMS,))),
    )
