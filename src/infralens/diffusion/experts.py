r"""Two denoisers over one flow-matching loop: where a boundary timestep hands the latent from one expert to the next.

Wan 2.2's A14B models are two transformers of the same shape: a *high-noise*
expert runs the early steps (layout, motion) and a *low-noise* expert the rest
(detail). The pipeline switches once, at the first step whose timestep falls
below a boundary :math:`b\,T` (a fraction :math:`b` of the :math:`T = 1000`
training timesteps):

.. math:: k = \min\{\, i : T\sigma_i < b\,T \,\}, \qquad
   \sigma_i = \frac{s\,u_i}{1 + (s - 1)\,u_i}, \quad u_i = 1 - \frac{i}{N}

so steps :math:`0, \dots, k - 1` run the high-noise expert and
:math:`k, \dots, N - 1` the low-noise one. Because the grid is shifted, the
switch step moves with the shift :math:`s` as well as with :math:`b`. Solving
:math:`\sigma(u) < b` for :math:`u` gives the closed form

.. math:: u^* = \frac{b}{s - (s - 1)\,b}, \qquad k = \min\big(N, \big\lfloor N (1 - u^*) \big\rfloor + 1\big)

(a step exactly on the boundary is not below it and stays with the high-noise
expert). In floating point a tie can fall either way, and the loop compares its
own float32 timesteps, so :func:`expert_switch_step` scans those rather than
evaluating the closed form.
"""

from __future__ import annotations

import numbers

from infralens.core import positive_int

from .flow import flow_sigmas

EXPERTS = ("dit", "dit2")
"""DiffSynth-Studio's names of the two experts: ``dit`` runs first (high noise), ``dit2`` after the switch."""


def _boundary(boundary: object) -> float:
    if isinstance(boundary, bool) or not isinstance(boundary, numbers.Real) or not 0 <= boundary <= 1:
        raise ValueError(
            f"boundary must be a fraction of the training timesteps in [0, 1], e.g. boundary=0.9; got {boundary!r}"
        )
    return float(boundary)


def expert_switch_step(
    num_inference_steps: int,
    boundary: float,
    *,
    shift: float | None = None,
    num_train_timesteps: int = 1000,
) -> int:
    r"""The first step that runs the low-noise expert: :math:`k = \min\{i : T\sigma_i < bT\}`.

    :param num_inference_steps: :math:`N`.
    :param boundary: :math:`b`, the boundary as a fraction of the training timesteps (a model's config).
    :param shift: :math:`s` of the Wan sigma grid (the template's default when ``None``).
    :param num_train_timesteps: :math:`T`.
    :returns: :math:`k` in ``[0, N]``; :math:`N` means the low-noise expert never runs.

    >>> expert_switch_step(4, 0.5, shift=1.0)      # timesteps 1000, 750, 500, 250
    3
    >>> expert_switch_step(50, 0.9, shift=5.0), expert_switch_step(50, 0.9, shift=1.0)
    (18, 6)
    """
    n = positive_int("num_inference_steps", num_inference_steps, example=40)
    b = _boundary(boundary)
    T = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
    timesteps = flow_sigmas("Wan", n, shift=shift) * T  # (N,) float32, what the loop compares
    for i, t in enumerate(timesteps.tolist()):
        if t < b * T:
            return i
    return n


def expert_schedule(
    num_inference_steps: int,
    boundary: float,
    *,
    shift: float | None = None,
    experts: tuple[str, str] = EXPERTS,
) -> tuple[str, ...]:
    """The expert each step calls, in order: ``experts[0]`` before the switch, ``experts[1]`` from it on.

    The tuple is a call schedule for :func:`infralens.memory.plan_offload`.

    :param num_inference_steps: :math:`N`.
    :param boundary: :math:`b`, as in :func:`expert_switch_step`.
    :param shift: :math:`s` of the sigma grid.
    :param experts: the names of the high-noise and the low-noise expert, in that order.
    :returns: ``N`` names.

    >>> expert_schedule(4, 0.5, shift=1.0)
    ('dit', 'dit', 'dit', 'dit2')
    """
    if len(experts) != 2 or not all(isinstance(e, str) and e for e in experts) or experts[0] == experts[1]:
        raise ValueError(
            f"experts must be two different names, high-noise first, e.g. ('dit', 'dit2'); got {experts!r}"
        )
    k = expert_switch_step(num_inference_steps, boundary, shift=shift)
    return (experts[0],) * k + (experts[1],) * (num_inference_steps - k)
