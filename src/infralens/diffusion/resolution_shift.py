r"""Resolution-dependent ("dynamic") shift: more tokens, more steps spent at high noise.

diffusers' FLUX.1 pipeline does not use a fixed shift. It computes

.. math:: \mu = \mu_b + (\mu_m - \mu_b)\,\frac{L - L_b}{L_m - L_b}

from the packed sequence length :math:`L` (``calculate_shift``; :math:`b` for base,
:math:`m` for max) and maps each
sigma with the exponential time shift
:math:`e^\mu / (e^\mu + 1/\sigma - 1)`. Multiplying numerator and denominator
by :math:`\sigma` shows that this *is* the ordinary shift
:math:`s\sigma / (1 + (s - 1)\sigma)` with :math:`s = e^\mu`, so
:func:`dynamic_shift` returns :math:`s` and :func:`shift_sigmas` applies it.

DiffSynth-Studio 2.1.12's ``"FLUX.1"`` template uses the fixed shift 3 instead;
its Qwen-Image and FLUX.2 templates compute :math:`\mu` from the sequence
length in the same exponential form, with their own constants.
"""

from __future__ import annotations

import math
import numbers

from ._args import positive_int


def dynamic_shift(
    image_seq_len: int,
    *,
    base_seq_len: int = 256,
    max_seq_len: int = 4096,
    base_shift: float = 0.5,
    max_shift: float = 1.15,
) -> float:
    r"""The shift :math:`s = e^{\mu}` for a sequence of :math:`L` tokens, :math:`\mu` linear in :math:`L`.

    The defaults are those of diffusers' ``calculate_shift`` (FLUX.1): :math:`\mu`
    goes from ``base_shift`` at ``base_seq_len`` tokens to ``max_shift`` at
    ``max_seq_len`` tokens and keeps the same slope outside that range.

    :param image_seq_len: :math:`L`, tokens after packing (FLUX.1: :math:`H/16 \cdot W/16` for an
        :math:`H \times W` image).
    :param base_seq_len: :math:`L_\text{base}`.
    :param max_seq_len: :math:`L_\text{max}`, greater than :math:`L_\text{base}`.
    :param base_shift: :math:`\mu_\text{base}`.
    :param max_shift: :math:`\mu_\text{max}`.
    :returns: :math:`s = e^{\mu}`, the value to give :func:`shift_sigmas`.

    >>> round(dynamic_shift(4096), 4)             # 1024x1024 FLUX.1: 64 x 64 tokens
    3.1582
    >>> round(math.log(dynamic_shift(256)), 4)    # the base length gives mu = base_shift
    0.5
    """
    L = positive_int("image_seq_len", image_seq_len, example=4096)
    lo = positive_int("base_seq_len", base_seq_len, example=256)
    hi = positive_int("max_seq_len", max_seq_len, example=4096)
    if hi <= lo:
        raise ValueError(f"max_seq_len must be > base_seq_len={lo}, e.g. max_seq_len=4096; got {hi}")
    for name, value in (("base_shift", base_shift), ("max_shift", max_shift)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"{name} must be a real number (it is log s), e.g. {name}=0.5; got {value!r}")
    mu = base_shift + (max_shift - base_shift) * (L - lo) / (hi - lo)  # linear in the token count
    return math.exp(mu)
