r"""Parameter counts of the Wan 2.1 text-to-video and Wan 2.2 A14B pipelines' components, from their configurations.

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

from infralens.core import attention_params, dtype_bytes, linear_params, norm_params
from infralens.core.args import positive_int
from infralens.families import MODELS

from .offload import Component

_WAN = MODELS["wan2.1-t2v-14b"].config
_UMT5 = MODELS["umt5-xxl"].config

WAN21_VAE_PARAMS: int = MODELS["wan2.1-vae"]["params"]
"""Parameters of the Wan 2.1 VAE (encoder and decoder): ``AutoencoderKLWan()`` in diffusers, counted on the meta device.

The VAE is a tree of 3-D convolutions, residual blocks and one attention block;
no short closed formula, so the count is taken from the class and re-checked by
``tox -e upstream``.
"""


def wan_dit_layer_params(
    *,
    dim: int = _WAN["dim"],
    ffn_dim: int = _WAN["ffn_dim"],
    num_layers: int = _WAN["num_layers"],
    in_channels: int = _WAN["in_dim"],
    out_channels: int = _WAN["out_dim"],
    text_dim: int = _WAN["text_dim"],
    freq_dim: int = _WAN["freq_dim"],
    patch_size: tuple[int, int, int] = _WAN["patch_size"],
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
    d = positive_int("dim", dim, example=_WAN["dim"])
    f = positive_int("ffn_dim", ffn_dim, example=_WAN["ffn_dim"])
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
    patch_embed = linear_params(c_in * p, d)  # Conv3d with kernel = stride = patch: a linear map of each patch
    time_embed = linear_params(fr, d) + linear_params(d, d)  # freq -> d -> d
    time_proj = linear_params(d, 6 * d)  # d -> 6d modulation for the blocks
    text_embed = linear_params(t, d) + linear_params(d, d)  # text_dim -> d -> d
    attention = attention_params(d, heads=1, bias=True) + 2 * norm_params(d)  # q, k, v, o; RMSNorm of q and k
    ffn = linear_params(d, f) + linear_params(f, d)
    block = 2 * attention + norm_params(d, bias=True) + ffn + 6 * d  # self, cross, norm3, FFN, modulation table
    head = 2 * d + linear_params(d, c_out * p)  # modulation table and the linear back to patches
    return (patch_embed + time_embed + time_proj + text_embed, *([block] * n), head)


def umt5_encoder_layer_params(
    *,
    vocab: int = _UMT5["vocab"],
    dim: int = _UMT5["dim"],
    dim_attn: int = _UMT5["dim_attn"],
    ffn_dim: int = _UMT5["ffn_dim"],
    num_heads: int = _UMT5["num_heads"],
    num_layers: int = _UMT5["num_layers"],
    num_buckets: int = _UMT5["num_buckets"],
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
    V = positive_int("vocab", vocab, example=_UMT5["vocab"])
    d = positive_int("dim", dim, example=4096)
    da = positive_int("dim_attn", dim_attn, example=4096)
    f = positive_int("ffn_dim", ffn_dim, example=_UMT5["ffn_dim"])
    h = positive_int("num_heads", num_heads, example=64)
    n = positive_int("num_layers", num_layers, example=24)
    nb = positive_int("num_buckets", num_buckets, example=32)
    if da % h:
        raise ValueError(f"dim_attn={da} must be a multiple of num_heads={h} (equal heads), e.g. dim_attn={64 * h}")
    attention = attention_params(d, heads=h, head_dim=da // h, bias=False)  # q, k, v, o: 4 d d_attn
    gated_ffn = 2 * linear_params(d, f, bias=False) + linear_params(f, d, bias=False)  # gate, fc1; fc2
    block = attention + gated_ffn + 2 * norm_params(d) + nb * h  # two RMSNorms; its own position table
    return (V * d, *([block] * n), d)


def wan21_t2v_components(*, dtype: str = "bf16") -> tuple[Component, ...]:
    r"""The Wan 2.1 14B text-to-video pipeline as offload sees it: text encoder, DiT, VAE, in bytes.

    Bytes are parameters times the size of ``dtype`` (DiffSynth-Studio runs all
    three in the pipeline's ``torch_dtype``, bfloat16 by default). Names are
    DiffSynth-Studio's component names (``dit``, where diffusers says ``transformer``).

    :param dtype: a name of :data:`~infralens.core.DTYPE_BYTES`.
    :returns: ``(text_encoder, dit, vae)`` as :class:`Component`.

    >>> [(c.name, c.total_bytes) for c in wan21_t2v_components()]
    [('text_encoder', 11361820672), ('dit', 28576983168), ('vae', 253785062)]
    """
    size = dtype_bytes(dtype)

    def to_bytes(params: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(math.ceil(p * size) for p in params)  # int4 packs two per byte: round up

    return (
        Component("text_encoder", to_bytes(umt5_encoder_layer_params())),
        Component("dit", to_bytes(wan_dit_layer_params())),
        Component("vae", to_bytes((WAN21_VAE_PARAMS,))),
    )


def wan22_a14b_components(task: str = "t2v", *, dtype: str = "bf16") -> tuple[Component, ...]:
    r"""Wan 2.2 A14B as offload sees it: text encoder, two experts of the 14B shape, the Wan 2.1 VAE, in bytes.

    The two experts (``dit`` for high noise, ``dit2`` for low noise, DiffSynth-Studio's
    names) have the same architecture and different weights; image-to-video widens the
    patch embedding to 36 input channels. Together they hold twice one expert's bytes,
    but the loop calls one at a time, so an offload plan keeps only one resident.

    :param task: ``"t2v"`` or ``"i2v"`` (the released ``Wan2.2-T2V-A14B`` and ``Wan2.2-I2V-A14B``).
    :param dtype: a name of :data:`~infralens.core.DTYPE_BYTES`.
    :returns: ``(text_encoder, dit, dit2, vae)`` as :class:`Component`.

    >>> [(c.name, c.total_bytes) for c in wan22_a14b_components()]
    [('text_encoder', 11361820672), ('dit', 28576983168), ('dit2', 28576983168), ('vae', 253785062)]
    """
    if task not in ("t2v", "i2v"):
        raise ValueError(f"task must be 't2v' or 'i2v' (the Wan 2.2 A14B releases), e.g. task='i2v'; got {task!r}")
    config = MODELS[f"wan2.2-{task}-a14b"].config
    size = dtype_bytes(dtype)
    expert = tuple(math.ceil(p * size) for p in wan_dit_layer_params(in_channels=config["in_dim"]))
    text_encoder, _, vae = wan21_t2v_components(dtype=dtype)
    return (text_encoder, Component("dit", expert), Component("dit2", expert), vae)
