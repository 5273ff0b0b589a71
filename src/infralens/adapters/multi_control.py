r"""Several controls over one sampling loop: weights, start/end windows, and the combined residual.

Each control :math:`j` has a weight :math:`\lambda_j` (diffusers:
``controlnet_conditioning_scale``) and a window over the :math:`N` denoising
steps. At step :math:`i` the denoiser receives

.. math:: r^{(i)} = \sum_j \lambda_j\, \kappa_j(i)\, r_j^{(i)}

where :math:`r_j^{(i)}` is control :math:`j`'s residual and
:math:`\kappa_j(i) \in \{0, 1\}` says whether step :math:`i` lies in its window.

The two libraries spell the window differently (both read, not guessed):

* **diffusers** (``control_guidance_start`` :math:`s`, ``control_guidance_end``
  :math:`e`, fractions of the step list; ``StableDiffusionControlNetPipeline``):
  step :math:`i` covers the interval :math:`[i/N, (i+1)/N]` and is kept only if
  that whole interval lies in :math:`[s, e]`:
  :math:`\kappa(i) = 1 - [\,i/N < s \ \lor\ (i+1)/N > e\,]`. Outside its window a
  ControlNet still runs, with scale 0.
* **DiffSynth-Studio** (``ControlNetInput(scale, start=1.0, end=0.0)``, FLUX.1):
  a *progress* :math:`p_i = (N - 1 - i)/\max(N - 1, 1)` runs from 1 at the first
  step to 0 at the last, and the control is active when
  :math:`\text{end} \le p_i \le \text{start}`. An inactive ControlNet is not run.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from infralens.core.args import positive_int


def _unit(name: str, value: object, example: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value <= 1:
        raise ValueError(f"{name} must be a fraction in [0, 1], e.g. {name}={example}; got {value!r}")
    return float(value)


@dataclass(frozen=True)
class ControlWindow:
    r"""One control's name, weight and window, in diffusers' terms.

    :param name: a label for tables (``"canny"``, ``"depth"``).
    :param conditioning_scale: :math:`\lambda`, the weight of its residuals.
    :param control_guidance_start: :math:`s`, the fraction of the steps after which it starts.
    :param control_guidance_end: :math:`e`, the fraction of the steps after which it stops;
        :math:`0 \le s < e \le 1`, as diffusers' ``check_inputs`` requires.

    >>> ControlWindow("canny", 1.0, 0.0, 0.5)
    ControlWindow(name='canny', conditioning_scale=1.0, control_guidance_start=0.0, control_guidance_end=0.5)
    """

    name: str
    conditioning_scale: float = 1.0
    control_guidance_start: float = 0.0
    control_guidance_end: float = 1.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, e.g. name='canny'; got {self.name!r}")
        scale = self.conditioning_scale
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not math.isfinite(scale):
            raise ValueError(f"conditioning_scale must be a finite number, e.g. conditioning_scale=1.0; got {scale!r}")
        start = _unit("control_guidance_start", self.control_guidance_start, 0.0)
        end = _unit("control_guidance_end", self.control_guidance_end, 1.0)
        if start >= end:
            raise ValueError(
                "control_guidance_start must be < control_guidance_end (diffusers refuses start >= end), e.g. "
                f"control_guidance_start=0.0, control_guidance_end=0.5; got {start} and {end}"
            )


def control_keep(
    num_inference_steps: int, control_guidance_start: float = 0.0, control_guidance_end: float = 1.0
) -> torch.Tensor:
    r"""diffusers' per-step switch for one control, shape ``(N,)``, values 0.0 or 1.0.

    .. math:: \kappa(i) = 1 - \big[\, i/N < s \ \lor\ (i+1)/N > e \,\big]

    Step :math:`i` is kept only if its whole share of the step list,
    :math:`[i/N, (i+1)/N]`, lies inside :math:`[s, e]`; a window that contains no
    whole step keeps nothing. :math:`N` is ``len(timesteps)``, which is ``num_inference_steps``
    for first-order schedulers.

    :param num_inference_steps: :math:`N`.
    :param control_guidance_start: :math:`s` in :math:`[0, 1)`.
    :param control_guidance_end: :math:`e` in :math:`(s, 1]`.
    :returns: a float32 tensor of zeros and ones, step 0 (the noisiest) first.

    >>> control_keep(10, 0.0, 0.5)
    tensor([1., 1., 1., 1., 1., 0., 0., 0., 0., 0.])
    >>> control_keep(10, 0.0, 0.05)  # shorter than one step: never on
    tensor([0., 0., 0., 0., 0., 0., 0., 0., 0., 0.])
    """
    n = positive_int("num_inference_steps", num_inference_steps, example=50)
    w = ControlWindow("window", 1.0, control_guidance_start, control_guidance_end)  # validates s and e
    s, e = w.control_guidance_start, w.control_guidance_end
    # kappa(i) = 1 - [i/N < s or (i+1)/N > e], in Python floats as diffusers computes it
    return torch.tensor([1.0 - float(i / n < s or (i + 1) / n > e) for i in range(n)])


def diffsynth_control_active(num_inference_steps: int, start: float = 1.0, end: float = 0.0) -> torch.Tensor:
    r"""DiffSynth-Studio's per-step switch for one ``ControlNetInput``, shape ``(N,)``, bool.

    .. math:: p_i = \frac{N - 1 - i}{\max(N - 1, 1)}, \qquad
       \text{active}(i) = [\,\text{end} \le p_i \le \text{start}\,]

    The progress :math:`p` falls from 1 (first step) to 0 (last step), so ``start``
    is the larger number: the defaults ``start=1.0, end=0.0`` mean every step. Both
    ends are inclusive, and the test is on a point per step, not an interval.

    :param num_inference_steps: :math:`N`.
    :param start: progress at which the control switches on, in :math:`[0, 1]`.
    :param end: progress at which it switches off, in :math:`[0, \text{start}]`.
    :returns: a bool tensor, step 0 first.

    >>> diffsynth_control_active(10, start=1.0, end=0.5)
    tensor([ True,  True,  True,  True,  True, False, False, False, False, False])
    """
    n = positive_int("num_inference_steps", num_inference_steps, example=50)
    hi = _unit("start", start, 1.0)
    lo = _unit("end", end, 0.0)
    if lo > hi:
        raise ValueError(
            "end must be <= start: DiffSynth-Studio counts progress down from 1 (first step) to 0 (last step), "
            f"so start is the larger number, e.g. start=1.0, end=0.5; got start={hi}, end={lo}"
        )
    # p_i = (N - 1 - i) / max(N - 1, 1); active iff end <= p_i <= start
    return torch.tensor([lo <= (n - 1 - i) / max(n - 1, 1) <= hi for i in range(n)])


def _controls(controls: object) -> list[ControlWindow]:
    if not isinstance(controls, Sequence) or not controls or not all(isinstance(c, ControlWindow) for c in controls):
        raise ValueError(
            "controls must be a non-empty list of ControlWindow, e.g. [ControlWindow('canny', 1.0, 0.0, 0.5)]; "
            f"got {controls!r}"
        )
    names = [c.name for c in controls]
    if len(set(names)) != len(names):
        raise ValueError(f"control names must be unique, one column each; got {names}")
    return list(controls)


def control_schedule(controls: Sequence[ControlWindow], num_inference_steps: int) -> torch.Tensor:
    r"""The weight each control gets at each step, :math:`\lambda_j \kappa_j(i)`, shape ``(N, K)``.

    Column :math:`j` is ``controls[j].conditioning_scale`` times :func:`control_keep` of its
    window: diffusers' ``cond_scale`` at step :math:`i`.

    >>> controls = [ControlWindow("canny", 1.0, 0.0, 0.5), ControlWindow("depth", 0.6, 0.2, 1.0)]
    >>> control_schedule(controls, 4)
    tensor([[1.0000, 0.0000],
            [1.0000, 0.6000],
            [0.0000, 0.6000],
            [0.0000, 0.6000]])
    """
    items = _controls(controls)
    n = positive_int("num_inference_steps", num_inference_steps, example=50)
    keep = [control_keep(n, c.control_guidance_start, c.control_guidance_end) for c in items]  # K x (N,)
    scales = torch.tensor([float(c.conditioning_scale) for c in items])  # (K,)
    return torch.stack(keep, dim=1) * scales  # (N, K)


def format_control_schedule(
    controls: Sequence[ControlWindow], num_inference_steps: int, timesteps: torch.Tensor | None = None
) -> str:
    """A text table of :func:`control_schedule`: one row per step, ``-`` where a control is off.

    :param controls: the controls, one column each.
    :param num_inference_steps: :math:`N`.
    :param timesteps: optional ``(N,)`` timesteps to print beside the step index (rounded).
    :returns: the table, without a trailing newline.

    >>> print(format_control_schedule([ControlWindow("edge", 0.8, 0.5, 1.0)], 4))
    step   edge
       0      -
       1      -
       2   0.80
       3   0.80
    """
    items = _controls(controls)
    sched = control_schedule(items, num_inference_steps)  # (N, K)
    n = sched.shape[0]
    if timesteps is not None and (not isinstance(timesteps, torch.Tensor) or tuple(timesteps.shape) != (n,)):
        shape = tuple(timesteps.shape) if isinstance(timesteps, torch.Tensor) else type(timesteps).__name__
        raise ValueError(f"timesteps must be a tensor of shape (num_inference_steps,) = ({n},); got {shape}")
    widths = [max(6, len(c.name)) for c in items]
    head = "step" + ("      t" if timesteps is not None else "")
    lines = [head + "".join(f" {c.name:>{w}}" for c, w in zip(items, widths, strict=True))]
    for i in range(n):
        row = f"{i:>4}" + (f" {timesteps[i].item():>6.0f}" if timesteps is not None else "")
        for value, w in zip(sched[i].tolist(), widths, strict=True):
            row += f" {value:>{w}.2f}" if value != 0 else f" {'-':>{w}}"
        lines.append(row)
    return "\n".join(lines)


def combine_control_residuals(
    residuals: Sequence[Sequence[torch.Tensor] | None], scales: Sequence[float] | torch.Tensor
) -> list[torch.Tensor]:
    r"""The residuals the denoiser receives at one step: :math:`\sum_j \lambda_j \kappa_j(i)\, r_j`, block by block.

    ``residuals[j]`` is control :math:`j`'s list of residual tensors (one per block, e.g. the
    down residuals followed by the mid residual) or ``None`` for a control that was not run
    because it is off at this step; ``scales[j]`` is its effective weight at this step (a row
    of :func:`control_schedule`), which must then be 0. Controls with weight 0 are skipped.

    :returns: one tensor per block; zeros of the right shapes when every control is off.

    >>> r1, r2 = [torch.ones(2, 3)], [torch.full((2, 3), 2.0)]
    >>> combine_control_residuals([r1, r2], [1.0, 0.5])[0]
    tensor([[2., 2., 2.],
            [2., 2., 2.]])
    >>> combine_control_residuals([r1, None], [1.0, 0.0])[0].sum().item()
    6.0
    """
    weights = scales.tolist() if isinstance(scales, torch.Tensor) else list(scales)
    if not isinstance(residuals, Sequence) or len(residuals) != len(weights) or not weights:
        got = f"{len(residuals)} residual sets" if isinstance(residuals, Sequence) else type(residuals).__name__
        raise ValueError(f"residuals and scales need one entry per control ({len(weights)} scales); got {got}")
    computed = [(j, list(r)) for j, r in enumerate(residuals) if r is not None]
    if not computed:
        raise ValueError("at least one control's residuals are needed to know the block shapes; got only None")
    shapes = [tuple(t.shape) for t in computed[0][1]]
    for j, r in computed:
        if [tuple(t.shape) for t in r] != shapes:
            raise ValueError(
                f"every control must return residuals of the same shapes, one per block: control 0 gives {shapes}, "
                f"control {j} gives {[tuple(t.shape) for t in r]}"
            )
    for j, r in enumerate(residuals):
        if r is None and weights[j] != 0:
            raise ValueError(
                f"residuals[{j}] is None (not run) but its scale at this step is {weights[j]}: only a control that "
                "is off (scale 0) may be skipped"
            )
    # r = sum_j lambda_j kappa_j(i) r_j, over the controls that are on
    out = [torch.zeros_like(t) for t in computed[0][1]]
    for j, r in computed:
        if weights[j] != 0:
            out = [acc + weights[j] * t for acc, t in zip(out, r, strict=True)]
    return out
