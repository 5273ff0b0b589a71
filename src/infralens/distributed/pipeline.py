r"""Pipeline parallelism: the GPipe and 1F1B schedules simulated, and the bubble in its two conventions.

:math:`p` stages each hold a slice of the layers; a step's batch is cut into
:math:`m` micro-batches. A stage runs the forward of micro-batch :math:`i` after
the stage before it has, and its backward after the stage after it has.
:func:`simulate_pipeline` places every forward and backward in time under these
two rules, each stage running its operations in the order its schedule fixes:

* **GPipe**: all :math:`m` forwards, then all :math:`m` backwards;
* **1F1B**: stage :math:`s` runs :math:`\min(m, p - s)` forwards, then alternates
  one backward and one forward, then finishes the backwards (torch's
  ``Schedule1F1B`` warm-up; Narayanan et al. 2021).

With uniform times both schedules leave every stage idle for :math:`p - 1`
forward-plus-backward slots of the :math:`m + p - 1` a step takes. Two ratios are
quoted for that same idle time, and they are not the same number:

.. math:: \text{bubble}_\text{wall} = \frac{p - 1}{m + p - 1}, \qquad
   \text{bubble}_\text{ideal} = \frac{p - 1}{m}

The first is the share of a stage's wall time spent idle (the GPipe paper's
:math:`O((K-1)/(M+K-1))`); the second is the idle time relative to the useful
compute (the Megatron-LM paper's convention, an overhead on top of ideal time). What differs between the
schedules is memory: a stage keeps a micro-batch's activations from its forward
to its backward, so GPipe's stages each hold all :math:`m`, while 1F1B's stage
:math:`s` holds at most :math:`p - s`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from infralens.core import positive_int

BUBBLE_CONVENTIONS = ("wall", "ideal")
PIPELINE_SCHEDULES = ("gpipe", "1f1b")


def pipeline_bubble(stages: int, microbatches: int, *, relative_to: str = "wall") -> float:
    r"""The idle share of a synchronous pipeline: :math:`(p-1)/(m+p-1)` of wall time, or :math:`(p-1)/m` of ideal.

    :param stages: :math:`p`, pipeline stages.
    :param microbatches: :math:`m`, micro-batches per step.
    :param relative_to: ``"wall"`` (idle / total time) or ``"ideal"`` (idle / compute time).
    :returns: a ratio (0 with one stage).

    >>> round(pipeline_bubble(4, 16), 4), pipeline_bubble(4, 16, relative_to="ideal")
    (0.1579, 0.1875)
    """
    p = positive_int("stages", stages, example=4)
    m = positive_int("microbatches", microbatches, example=16)
    if relative_to == "wall":
        return (p - 1) / (m + p - 1)  # idle / (idle + compute)
    if relative_to == "ideal":
        return (p - 1) / m  # idle / compute
    raise ValueError(
        f"relative_to must be 'wall' (share of wall time) or 'ideal' (relative to compute time), "
        f"e.g. relative_to='wall'; got {relative_to!r}"
    )


def schedule_order(schedule: str, stages: int, microbatches: int) -> list[list[tuple[str, int]]]:
    """The order in which each stage runs its forwards ``("F", i)`` and backwards ``("B", i)``.

    >>> schedule_order("1f1b", 2, 4)[0]
    [('F', 0), ('F', 1), ('B', 0), ('F', 2), ('B', 1), ('F', 3), ('B', 2), ('B', 3)]
    """
    if schedule not in PIPELINE_SCHEDULES:
        raise ValueError(f"schedule must be 'gpipe' or '1f1b', e.g. schedule='1f1b'; got {schedule!r}")
    p = positive_int("stages", stages, example=4)
    m = positive_int("microbatches", microbatches, example=16)
    orders = []
    for s in range(p):
        if schedule == "gpipe":
            orders.append([("F", i) for i in range(m)] + [("B", i) for i in range(m)])
            continue
        warmup = min(m, p - s)  # stage s starts p - s micro-batches before its first backward
        order = [("F", i) for i in range(warmup)]
        for i in range(m - warmup):  # steady state: one backward, one forward
            order += [("B", i), ("F", warmup + i)]
        order += [("B", i) for i in range(m - warmup, m)]  # cool-down
        orders.append(order)
    return orders


class PipelineOp(NamedTuple):
    """One forward (``"F"``) or backward (``"B"``) of one micro-batch on one stage, placed in time."""

    stage: int
    kind: str
    microbatch: int
    start: float
    end: float


@dataclass(frozen=True)
class PipelineTimeline:
    """Every operation of one step of a pipeline schedule, with the measures the lab reads off it."""

    schedule: str
    stages: int
    microbatches: int
    ops: tuple[PipelineOp, ...]

    @property
    def makespan(self) -> float:
        """Time from the first forward to the last backward."""
        return max(op.end for op in self.ops)

    def busy(self, stage: int) -> float:
        """Time ``stage`` spends computing."""
        return sum(op.end - op.start for op in self.ops if op.stage == stage)

    def bubble(self, *, relative_to: str = "wall") -> float:
        """Idle time of the stages, as a share of wall time (``"wall"``) or of compute time (``"ideal"``)."""
        idle = sum(self.makespan - self.busy(s) for s in range(self.stages))
        work = sum(self.busy(s) for s in range(self.stages))
        if relative_to == "wall":
            return idle / (idle + work)
        if relative_to == "ideal":
            return idle / work
        raise ValueError(f"relative_to must be 'wall' or 'ideal', e.g. relative_to='wall'; got {relative_to!r}")

    def peak_activations(self) -> list[int]:
        """Per stage, the most micro-batches whose activations are held at once (forward done, backward not)."""
        peaks = []
        for s in range(self.stages):
            events = sorted(
                [(op.start, 1) for op in self.ops if op.stage == s and op.kind == "F"]
                + [(op.end, -1) for op in self.ops if op.stage == s and op.kind == "B"]
            )  # at equal times a freed micro-batch (-1) counts before a new one (+1)
            held, peak = 0, 0
            for _, change in events:
                held += change
                peak = max(peak, held)
            peaks.append(peak)
        return peaks

    def grid(self) -> list[list[str]]:
        """One row per stage, one cell per time unit: ``"F3"``, ``"B0"`` or ``""`` (idle); integer times only."""
        cells = [[""] * int(self.makespan) for _ in range(self.stages)]
        for op in self.ops:
            for t in range(int(op.start), int(op.end)):
                cells[op.stage][t] = f"{op.kind}{op.microbatch}"
        return cells


def simulate_pipeline(
    schedule: str,
    stages: int,
    microbatches: int,
    *,
    forward_time: float = 1.0,
    backward_time: float = 1.0,
) -> PipelineTimeline:
    """Place every operation of one step in time: as early as its stage and its data allow, in schedule order.

    A forward of micro-batch :math:`i` on stage :math:`s` waits for stage
    :math:`s - 1`'s forward of :math:`i`; a backward waits for stage :math:`s + 1`'s
    backward of :math:`i` (the last stage's, for its own forward: the loss).
    Communication is taken as free.

    :param schedule: ``"gpipe"`` or ``"1f1b"``.
    :param stages: :math:`p`.
    :param microbatches: :math:`m`.
    :param forward_time: time of one micro-batch's forward on one stage.
    :param backward_time: time of its backward (about twice the forward in practice).
    :returns: the :class:`PipelineTimeline`.

    >>> t = simulate_pipeline("gpipe", 4, 16)
    >>> t.makespan, round(t.bubble(), 4), t.peak_activations()
    (38.0, 0.1579, [16, 16, 16, 16])
    """
    orders = schedule_order(schedule, stages, microbatches)
    p = len(orders)
    tf, tb = (_positive_time(n, v) for n, v in (("forward_time", forward_time), ("backward_time", backward_time)))
    done: dict[tuple[str, int, int], float] = {}  # (kind, stage, microbatch) -> end time
    free = [0.0] * p  # when each stage is next idle
    nxt = [0] * p  # index of each stage's next operation
    ops = []
    while any(nxt[s] < len(orders[s]) for s in range(p)):
        progressed = False
        for s in range(p):
            if nxt[s] == len(orders[s]):
                continue
            kind, i = orders[s][nxt[s]]
            if kind == "F":
                dep = ("F", s - 1, i) if s > 0 else None  # the activation from the stage before
            else:
                dep = ("B", s + 1, i) if s < p - 1 else ("F", s, i)  # the gradient from the stage after
            if dep is not None and dep not in done:
                continue
            start = max(free[s], done[dep] if dep else 0.0)
            end = start + (tf if kind == "F" else tb)
            done[(kind, s, i)] = free[s] = end
            ops.append(PipelineOp(s, kind, i, start, end))
            nxt[s] += 1
            progressed = True
        if not progressed:  # pragma: no cover - the two schedules never deadlock
            raise RuntimeError("the schedule deadlocks")
    return PipelineTimeline(schedule, p, microbatches, tuple(sorted(ops, key=lambda o: (o.start, o.stage))))


def _positive_time(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, e.g. {name}=1.0; got {value!r}")
    return float(value)
