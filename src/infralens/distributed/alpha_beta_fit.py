r"""Alpha and beta fitted from measured collective times, and how far the model is from each measurement.

Every measurement of a collective of :math:`n` bytes over :math:`N` ranks is
one linear equation in the two unknowns,

.. math:: T_i \approx s_i\,\alpha + v_i n_i\,\beta

(:func:`~infralens.distributed.collective_terms` gives :math:`s_i` and
:math:`v_i`). The fit minimises the *relative* squared error, each equation
divided by its :math:`T_i`, so that microsecond messages count as much as
millisecond ones; neither unknown may be negative.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .collective_cost import collective_terms


@dataclass(frozen=True)
class Sample:
    """One measured collective: what ran, on how many bytes, and the seconds it took (a median of repeats)."""

    collective: str
    nbytes: int
    seconds: float


@dataclass(frozen=True)
class AlphaBetaFit:
    """Fitted :math:`\\alpha` and :math:`\\beta`, with the model's prediction and error for every sample."""

    alpha: float
    """Seconds per step."""
    beta: float
    """Seconds per byte."""
    world_size: int
    samples: tuple[Sample, ...]
    predicted: tuple[float, ...]
    """Model seconds, one per sample."""

    @property
    def bandwidth(self) -> float:
        """Bytes per second, :math:`1/\\beta`."""
        return math.inf if self.beta == 0 else 1.0 / self.beta

    @property
    def relative_errors(self) -> tuple[float, ...]:
        """:math:`(T_\\text{model} - T_\\text{measured}) / T_\\text{measured}`, one per sample."""
        return tuple((p - s.seconds) / s.seconds for p, s in zip(self.predicted, self.samples, strict=True))

    @property
    def median_abs_error(self) -> float:
        """The median of the absolute relative errors."""
        return statistics.median(abs(e) for e in self.relative_errors)

    @property
    def max_abs_error(self) -> float:
        """The largest absolute relative error."""
        return max(abs(e) for e in self.relative_errors)


def fit_alpha_beta(samples: Sequence[Sample], world_size: int) -> AlphaBetaFit:
    r"""Least-squares :math:`\alpha, \beta \ge 0` of :math:`T = s\alpha + vn\beta` in relative error.

    Exact data give back the parameters they were made with:

    >>> made = [Sample("all_reduce", n, collective_terms("all_reduce", 2).time(n, alpha=5e-5, beta=1e-9))
    ...         for n in (16, 4096, 1 << 20)]
    >>> fit = fit_alpha_beta(made, 2)
    >>> round(fit.alpha * 1e6, 3), round(fit.bandwidth / 1e9, 3), fit.max_abs_error < 1e-9
    (50.0, 1.0, True)
    """
    if len(samples) < 2:
        raise ValueError(f"samples must hold at least 2 measurements (two unknowns), e.g. 10 sizes; got {len(samples)}")
    rows, times = [], []
    for s in samples:
        if not (isinstance(s.seconds, int | float) and math.isfinite(s.seconds) and s.seconds > 0):
            raise ValueError(f"every sample needs seconds > 0, e.g. Sample('all_reduce', 1024, 2e-5); got {s!r}")
        t = collective_terms(s.collective, world_size)
        rows.append([t.steps / s.seconds, t.volume * s.nbytes / s.seconds])  # equation / T_i
        times.append(1.0)
    A = torch.tensor(rows, dtype=torch.float64)  # (samples, 2)
    y = torch.tensor(times, dtype=torch.float64)  # (samples,)
    alpha, beta = torch.linalg.lstsq(A, y.unsqueeze(1)).solution.squeeze(1).tolist()
    if alpha < 0 or beta < 0:  # the best fit with the offending unknown at 0
        keep = 1 if alpha < 0 else 0
        col = A[:, keep]
        value = max(float(col @ y / (col @ col)), 0.0)
        alpha, beta = (0.0, value) if keep == 1 else (value, 0.0)
    predicted = tuple(
        collective_terms(s.collective, world_size).time(s.nbytes, alpha=alpha, beta=beta) for s in samples
    )
    return AlphaBetaFit(alpha, beta, world_size, tuple(samples), predicted)
