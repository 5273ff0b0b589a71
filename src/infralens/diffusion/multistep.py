r"""Multistep solvers of the flow-matching ODE: Euler, DPM-Solver++ and UniPC, on the sigmas diffusers gives each.

A flow model predicts the velocity :math:`\hat v \approx \epsilon - x_0` of the path
:math:`x_\sigma = \alpha_\sigma\,x_0 + \sigma\,\epsilon` with :math:`\alpha_\sigma = 1 - \sigma`
(:mod:`~infralens.diffusion.flow`). Every solver here first turns the velocity into
a clean estimate, :math:`\hat x_0 = x_\sigma - \sigma\,\hat v` (diffusers'
``prediction_type="flow_prediction"``), and steps in :math:`\lambda = \log(\alpha_\sigma/\sigma)`,
half the log signal-to-noise ratio, with :math:`h = \lambda_{t} - \lambda_{s}` from the
current level :math:`s` to the next :math:`t`.

**Order 1** (DPM-Solver++ and UniPC alike) integrates the ODE exactly for an
:math:`\hat x_0` held constant over the step:

.. math:: x_t = \frac{\sigma_t}{\sigma_s}\,x_s - \alpha_t\,(e^{-h} - 1)\,\hat x_0

which, with :math:`\alpha = 1 - \sigma`, is *exactly* the Euler step
:math:`x_s + (\sigma_t - \sigma_s)\,\hat v` (:func:`~infralens.diffusion.flow_euler_step`).

**Order 2 and 3** keep the :math:`\hat x_0` of the previous steps and add the
differences between them, :math:`D_1 = (\hat x_{0,s} - \hat x_{0,s'}) / r` with
:math:`r = h_\text{prev} / h`: a finite-difference estimate of how :math:`\hat x_0`
changes, bought with no extra model call. DPM-Solver++(2M) adds
:math:`-\tfrac12\,\alpha_t (e^{-h} - 1)\,D_1`; (3M) a second difference. UniPC
(``solver_type="bh2"``) predicts the same way with its own coefficients and, once
the model has been called at the new point (the call the next step needs anyway),
*corrects* the point it just predicted with that new :math:`\hat x_0`.

**Which order runs** is not the configured order: a multistep method needs
history, so the first step is order 1 and the second at most 2; diffusers
(``lower_order_final=True``, the default) also lowers the last steps
(:func:`solver_orders`). The last step, to :math:`\sigma = 0`, returns
:math:`\hat x_0` itself.

**Sigmas.** For the same step count and shift, diffusers' three schedulers visit
different noise levels (:func:`flow_solver_sigmas`).
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable

import torch

from infralens.core.args import positive_int

from .flow import flow_euler_step, flow_match_sigmas, shift_sigmas

SOLVERS = ("euler", "dpmsolver++", "unipc")
"""The solvers :func:`flow_multistep_sample` runs: diffusers' ``FlowMatchEulerDiscreteScheduler``,
``DPMSolverMultistepScheduler`` and ``UniPCMultistepScheduler`` (both with ``use_flow_sigmas=True``)."""


def _solver(solver: object) -> str:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {', '.join(map(repr, SOLVERS))}, e.g. solver='unipc'; got {solver!r}")
    return solver  # type: ignore[return-value]


def _order(solver: str, solver_order: object) -> int:
    if solver == "euler":
        if solver_order not in (None, 1):
            raise ValueError(f"solver_order must be 1 (or None) for solver='euler'; got {solver_order!r}")
        return 1
    if solver_order is None:
        return 2  # diffusers' default for both multistep schedulers
    if isinstance(solver_order, bool) or not isinstance(solver_order, numbers.Integral) or not 1 <= solver_order <= 3:
        raise ValueError(f"solver_order must be 1, 2 or 3, e.g. solver_order=2; got {solver_order!r}")
    return int(solver_order)


def flow_solver_sigmas(
    num_inference_steps: int, *, solver: str, shift: float = 1.0, num_train_timesteps: int = 1000
) -> torch.Tensor:
    r"""The :math:`N` sigmas a diffusers scheduler visits with flow sigmas and a fixed shift, highest first.

    All three start from an even grid and apply :func:`~infralens.diffusion.shift_sigmas`,
    but not the same grid (:math:`T` = ``num_train_timesteps``):

    * ``"euler"``: :math:`N` points from 1 to :math:`\sigma_{\min}` (the shifted :math:`1/T`),
      shifted (:func:`~infralens.diffusion.flow_match_sigmas`): the last step starts
      next to :math:`\sigma = 0`;
    * ``"dpmsolver++"``: :math:`1 - \text{linspace}(1, 1/T, N + 1)`, reversed, shifted, the 0 dropped:
      it starts at the shifted :math:`1 - 1/T`, below 1;
    * ``"unipc"``: :math:`\text{linspace}(1, 1/T, N + 1)` without its last point, shifted, and
      a first sigma of 1 lowered by :math:`10^{-6}` (so :math:`\log \sigma/\alpha` stays finite).

    :param num_inference_steps: :math:`N`.
    :param solver: one of :data:`SOLVERS`.
    :param shift: :math:`s > 0` (``shift`` of the Euler scheduler, ``flow_shift`` of the others).
    :param num_train_timesteps: :math:`T`.
    :returns: shape ``(N,)``, float32 as diffusers stores them; the loop then goes to 0.

    >>> for solver in SOLVERS:
    ...     print(f"{solver:<12}", [round(v, 4) for v in flow_solver_sigmas(4, solver=solver).tolist()])
    euler        [1.0, 0.667, 0.334, 0.001]
    dpmsolver++  [0.999, 0.7492, 0.4995, 0.2498]
    unipc        [1.0, 0.7502, 0.5005, 0.2508]
    """
    name = _solver(solver)
    N = positive_int("num_inference_steps", num_inference_steps, example=20)
    T = positive_int("num_train_timesteps", num_train_timesteps, example=1000)
    if name == "euler":
        return flow_match_sigmas(N, shift=shift, num_train_timesteps=T)[:-1]
    grid = torch.linspace(1.0, 1 / T, N + 1, dtype=torch.float64)  # (N + 1,) from 1 down to 1/T
    if name == "dpmsolver++":
        sigmas = shift_sigmas((1 - grid).flip(0), shift)[:-1]  # (N,) from 1 - 1/T down, the 0 dropped
    else:
        sigmas = shift_sigmas(grid[:-1], shift)  # (N,) from 1 down, 1/T dropped
        if abs(sigmas[0].item() - 1) < 1e-6:
            sigmas[0] -= 1e-6
    return sigmas.float()


def solver_orders(num_inference_steps: int, *, solver: str, solver_order: int | None = None) -> tuple[int, ...]:
    r"""The order each of the :math:`N` steps actually uses, as diffusers decides it.

    * ``"dpmsolver++"``: order 1 at the first step (no history) and at the last (to
      :math:`\sigma = 0`); order at most 2 at the second step and, when :math:`N < 15`, at the
      one before last;
    * ``"unipc"``: :math:`\min(p,\ i + 1,\ N - i)` at step :math:`i` (history, and
      ``lower_order_final``);
    * ``"euler"``: 1 everywhere.

    :param num_inference_steps: :math:`N`.
    :param solver: one of :data:`SOLVERS`.
    :param solver_order: :math:`p` in 1 to 3 (diffusers' default 2); only 1 or ``None`` for Euler.
    :returns: one order per step.

    >>> solver_orders(4, solver="dpmsolver++", solver_order=3)   # 3M at four steps is 2M
    (1, 2, 2, 1)
    >>> solver_orders(8, solver="unipc", solver_order=3)
    (1, 2, 3, 3, 3, 3, 2, 1)
    """
    name = _solver(solver)
    p = _order(name, solver_order)
    N = positive_int("num_inference_steps", num_inference_steps, example=20)
    orders = []
    for i in range(N):
        if name == "unipc":
            orders.append(min(p, i + 1, N - i))
        elif p == 1 or i == 0 or i == N - 1:
            orders.append(1)
        elif p == 2 or i == 1 or (i == N - 2 and N < 15):
            orders.append(2)
        else:
            orders.append(3)
    return tuple(orders)


def _lam(sigma: float) -> float:
    return math.log((1 - sigma) / sigma)  # lambda = log(alpha / sigma), alpha = 1 - sigma


def _dpm_update(x: torch.Tensor, x0s: list[torch.Tensor], lams: list[float], s_t: float, order: int) -> torch.Tensor:
    """DPM-Solver++ (midpoint 2M, 3M) from the newest point to sigma ``s_t``; ``x0s``/``lams`` newest last."""
    s0 = 1 / (1 + math.exp(lams[-1]))  # sigma from lambda: sigma = 1 / (1 + e^lambda)
    h = _lam(s_t) - lams[-1]
    a_t, phi = 1 - s_t, math.expm1(-h)  # alpha_t, e^{-h} - 1
    out = (s_t / s0) * x - (a_t * phi) * x0s[-1]  # order 1: exact for a constant x0_hat
    if order >= 2:
        r0 = (lams[-1] - lams[-2]) / h
        d1_0 = (x0s[-1] - x0s[-2]) / r0
        if order == 2:
            return out - 0.5 * (a_t * phi) * d1_0  # midpoint 2M
        r1 = (lams[-2] - lams[-3]) / h
        d1_1 = (x0s[-2] - x0s[-3]) / r1
        d1 = d1_0 + (r0 / (r0 + r1)) * (d1_0 - d1_1)
        d2 = (d1_0 - d1_1) / (r0 + r1)
        out = out + (a_t * (phi / h + 1)) * d1 - (a_t * ((phi + h) / h**2 - 0.5)) * d2
    return out


def _unipc_coefficients(rks: list[float], h: float, order: int) -> tuple[float, torch.Tensor, torch.Tensor]:
    """B(h) = e^{-h} - 1 (bh2), and the system R rho = b of UniPC-p for the given ratios (last ratio 1)."""
    hh = -h
    B = math.expm1(hh)
    g, fact = math.expm1(hh) / hh - 1, 1.0  # h phi_k(h) recursion, as in the UniPC paper
    rows, b = [], []
    for i in range(1, order + 1):
        rows.append([rk ** (i - 1) for rk in rks])
        b.append(g * fact / B)
        fact *= i + 1
        g = g / hh - 1 / fact
    return B, torch.tensor(rows, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)


def _unipc(
    x: torch.Tensor, x0s: list[torch.Tensor], lams: list[float], s_t: float, order: int, x0_t: torch.Tensor | None
) -> torch.Tensor:
    """UniPC's predictor (``x0_t`` None) or corrector (``x0_t`` the new point's x0_hat), bh2, data prediction."""
    s0 = 1 / (1 + math.exp(lams[-1]))
    h = _lam(s_t) - lams[-1]
    a_t = 1 - s_t
    k = order - 1  # previous points used beside the newest
    rks = [(lams[-1 - j] - lams[-1]) / h for j in range(1, k + 1)] + [1.0]
    diffs = [(x0s[-1 - j] - x0s[-1]) / rks[j - 1] for j in range(1, k + 1)]
    B, R, b = _unipc_coefficients(rks, h, order)
    out = (s_t / s0) * x - (a_t * math.expm1(-h)) * x0s[-1]
    if x0_t is None:  # predictor: rho solves the first k equations (order 2: rho = 1/2)
        if k == 0:
            return out
        rho = [0.5] if k == 1 else torch.linalg.solve(R[:k, :k], b[:k]).tolist()
        return out - (a_t * B) * sum(r * d for r, d in zip(rho, diffs, strict=True))
    rho = [0.5] if order == 1 else torch.linalg.solve(R, b).tolist()  # corrector: all equations
    corr = sum((r * d for r, d in zip(rho[:-1], diffs, strict=True)), torch.zeros_like(x))
    return out - (a_t * B) * (corr + rho[-1] * (x0_t - x0s[-1]))


def flow_multistep_sample(
    denoiser: Callable[..., torch.Tensor],
    latents: torch.Tensor,
    sigmas: torch.Tensor,
    *,
    solver: str = "dpmsolver++",
    solver_order: int | None = None,
    text: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Integrate a flow model's velocity from ``sigmas[0]`` to 0 with Euler, DPM-Solver++ or UniPC.

    One model call per sigma, as in diffusers; the state is kept in float64.

    :param denoiser: called as ``denoiser(latents, timesteps, text)`` with ``timesteps`` ``(B,)``
        holding :math:`1000\,\sigma` (a float: diffusers' multistep schedulers hand the model
        an integer, see the Lab 11 page); returns :math:`\hat v`.
    :param latents: :math:`x` at ``sigmas[0]``, ``(B, ...)``.
    :param sigmas: the :math:`N` levels to visit, strictly decreasing, in ``(0, 1)`` for the
        multistep solvers (``[0, 1]`` for Euler); the loop ends at 0.
    :param solver: one of :data:`SOLVERS`.
    :param solver_order: :math:`p` (see :func:`solver_orders`).
    :param text: passed to every call.
    :returns: the latent at :math:`\sigma = 0`, shape and dtype of ``latents``.

    >>> from infralens.nets import GaussianVelocity
    >>> field = GaussianVelocity(mean=0.5, std=0.6)
    >>> x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    >>> for solver in SOLVERS:
    ...     s = flow_solver_sigmas(8, solver=solver)
    ...     err = flow_multistep_sample(field, x, s, solver=solver) - field.exact_flow(x, s[0].item())
    ...     print(f"{solver:<12} RMS error {err.pow(2).mean().sqrt():.4f}")
    euler        RMS error 0.1022
    dpmsolver++  RMS error 0.0106
    unipc        RMS error 0.0013
    """
    name = _solver(solver)
    p = _order(name, solver_order)
    if not isinstance(latents, torch.Tensor) or latents.ndim < 1 or not latents.is_floating_point():
        raise ValueError(
            f"latents must be a floating-point tensor (B, ...), e.g. torch.randn(1, 16, 64, 64); got {latents!r}"
        )
    if not isinstance(sigmas, torch.Tensor) or sigmas.ndim != 1 or len(sigmas) == 0:
        raise ValueError(f"sigmas must be a 1-D tensor of N >= 1 values, e.g. flow_solver_sigmas(20, solver={name!r})")
    s = sigmas.detach().to("cpu", torch.float64).tolist()
    lo_ok = (lambda v: 0 <= v <= 1) if name == "euler" else (lambda v: 0 < v < 1)
    if any(not lo_ok(v) for v in s) or any(b >= a for a, b in itertools.pairwise(s)):
        where = "[0, 1]" if name == "euler" else "(0, 1) (lambda = log((1 - sigma) / sigma) is infinite at 0 and 1)"
        raise ValueError(
            f"sigmas must decrease strictly and lie in {where}, e.g. flow_solver_sigmas(20, solver={name!r}); got {s}"
        )
    N, B = len(s), latents.shape[0]
    orders = solver_orders(N, solver=name, solver_order=p)
    x = latents.to(torch.float64)
    x0s: list[torch.Tensor] = []
    lams: list[float] = []
    last_sample, last_order = None, 1
    for i, sigma in enumerate(s):
        timesteps = torch.full((B,), 1000.0 * sigma, device=latents.device)  # (B,) what the model reads
        with torch.no_grad():
            v = denoiser(x.to(latents.dtype), timesteps, text).to(torch.float64)  # (B, ...) the velocity
        sigma_next = s[i + 1] if i + 1 < N else 0.0
        if name == "euler":
            x = flow_euler_step(x, v, sigma, sigma_next)  # x + (sigma' - sigma) v
            continue
        x0 = x - sigma * v  # flow_prediction: the clean estimate
        if name == "unipc" and last_sample is not None:  # correct the point just reached, no extra call
            x = _unipc(last_sample, x0s, lams, sigma, last_order, x0)
        x0s, lams = [*x0s[-2:], x0], [*lams[-2:], _lam(sigma)]
        if sigma_next == 0.0:
            x = x0  # the last step lands on x0_hat (order 1 to sigma = 0)
        elif name == "dpmsolver++":
            x = _dpm_update(x, x0s, lams, sigma_next, orders[i])
        else:
            last_sample, last_order = x, orders[i]
            x = _unipc(x, x0s, lams, sigma_next, orders[i], None)
    return x.to(latents.dtype)
