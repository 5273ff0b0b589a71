r"""Bytes of training state each rank keeps under ZeRO stages 0 to 3 (Rajbhandari et al. 2020).

Mixed-precision Adam keeps, per parameter, the half-precision weight
(:math:`b_p = 2` bytes), its half-precision gradient (:math:`b_g = 2`) and an
optimizer state of :math:`b_o = 12` bytes: an fp32 master copy of the weight and
Adam's two fp32 moments. That is the ZeRO paper's :math:`2 + 2 + K` with
:math:`K = 12`, 16 bytes per parameter in all. Stage :math:`s` shards the first
:math:`s` of (optimizer state, gradients, weights) over the :math:`N_d`
data-parallel ranks:

.. math:: M_0 = (b_p + b_g + b_o)\,\Psi, \quad
   M_1 = (b_p + b_g)\,\Psi + \frac{b_o \Psi}{N_d}, \quad
   M_2 = b_p \Psi + \frac{(b_g + b_o)\,\Psi}{N_d}, \quad
   M_3 = \frac{(b_p + b_g + b_o)\,\Psi}{N_d}

These are *persistent* bytes: activations, temporary buffers (the gathered
weights of the layer in use at stage 3, communication buckets) and allocator
fragmentation come on top. Real shards are padded to a multiple of the rank
count; FSDP2 pads whole rows of dim 0, so at most :math:`N_d - 1` rows per sharded tensor.
"""

from __future__ import annotations

from ._args import non_negative, whole_count

ZERO_STAGES = (0, 1, 2, 3)
"""Stage 0 is plain data parallel; 1 shards optimizer states, 2 also gradients, 3 also weights."""


def zero_bytes_per_rank(
    num_params: int,
    world_size: int,
    stage: int,
    *,
    param_bytes: float = 2,
    grad_bytes: float = 2,
    optimizer_bytes: float = 12,
) -> float:
    r"""Persistent bytes of weights, gradients and optimizer state per rank at ZeRO ``stage``.

    :param num_params: :math:`\Psi`, parameters of the model (``7e9`` is accepted: it is a whole number).
    :param world_size: :math:`N_d`, data-parallel ranks the state is sharded over.
    :param stage: 0 (plain DDP), 1 (optimizer state sharded), 2 (+ gradients), 3 (+ weights).
    :param param_bytes: :math:`b_p`, bytes per weight as the model computes with it (2 for bf16).
    :param grad_bytes: :math:`b_g`, bytes per gradient (2 for bf16).
    :param optimizer_bytes: :math:`b_o`, optimizer bytes per parameter (12: fp32 master weight, Adam's m and v).
    :returns: bytes per rank (a float: shards are not rounded up).

    >>> zero_bytes_per_rank(7e9, 8, 3) / 1e9          # 16 bytes per parameter
    14.0
    >>> [zero_bytes_per_rank(7e9, 8, s) / 1e9 for s in (0, 1, 2)]
    [112.0, 38.5, 26.25]
    """
    psi = whole_count("num_params", num_params, example="7_000_000_000")
    n = whole_count("world_size", world_size, example="8")
    if isinstance(stage, bool) or not isinstance(stage, int) or stage not in ZERO_STAGES:
        raise ValueError(
            f"stage must be one of 0, 1, 2, 3 (0 = plain DDP, 3 = weights sharded too), e.g. stage=3; got {stage!r}"
        )
    bp = non_negative("param_bytes", param_bytes, example=2)
    bg = non_negative("grad_bytes", grad_bytes, example=2)
    bo = non_negative("optimizer_bytes", optimizer_bytes, example=12)
    per_param = (bo, bg, bp)  # stage s shards the first s of (optimizer state, gradients, weights)
    sharded, replicated = sum(per_param[:stage]), sum(per_param[stage:])
    # M_s = (replicated bytes) Psi + (sharded bytes) Psi / N_d
    return replicated * psi + sharded * psi / n
