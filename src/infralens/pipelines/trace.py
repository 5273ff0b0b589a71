r"""A tracer for pipeline runs: the shape, dtype and device of every tensor that crosses a boundary.

Two ways in, as in real debugging:

* **forward hooks** (:meth:`Tracer.watch`): every call of a watched module records
  its tensor arguments and its output, without touching the module's code;
* **explicit records** (:meth:`Tracer.record`): for boundaries that are not a
  module call, such as the initial noise, the guidance combination, a scheduler
  step or a dtype cast.

Rows are tagged with the current stage (:meth:`Tracer.stage`). The table
(:meth:`Tracer.table`) merges rows that repeat within a stage, so a loop of
eight DiT calls with identical inputs is one row with a count of eight.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class TraceRow:
    """One tensor at one boundary."""

    stage: str
    """The stage the run was in (``"load"``, ``"text encoding"``, ...)."""
    boundary: str
    """Where the tensor crossed, e.g. ``"dit in: latents"``."""
    shape: tuple[int, ...] | None
    """The tensor's shape; ``None`` for a module's weights."""
    dtype: torch.dtype
    device: torch.device
    note: str = ""
    """Anything else worth a column: a parameter count, a value range."""


class Tracer:
    """Collects :class:`TraceRow` rows; pass one to a pipeline run, then print :meth:`Tracer.table`.

    >>> tracer = Tracer()
    >>> with tracer.stage("demo"), tracer.watch(nn.Linear(4, 2), "linear") as lin:
    ...     _ = lin(torch.zeros(3, 4))
    ...     _ = lin(torch.zeros(3, 4))
    >>> [(r.boundary, r.shape) for r in tracer.rows]
    [('linear in: input', (3, 4)), ('linear out', (3, 2)), ('linear in: input', (3, 4)), ('linear out', (3, 2))]
    >>> print(tracer.table())
      boundary          shape   dtype    device  calls
    demo
      linear in: input  (3, 4)  float32  cpu         2
      linear out        (3, 2)  float32  cpu         2
    """

    def __init__(self) -> None:
        self.rows: list[TraceRow] = []
        self._stage = ""

    @contextmanager
    def stage(self, name: str) -> Iterator[Tracer]:
        """Tag the rows recorded inside the ``with`` block with stage ``name``."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, e.g. 'denoising loop'; got {name!r}")
        outer, self._stage = self._stage, name
        try:
            yield self
        finally:
            self._stage = outer

    def record(self, boundary: str, value: torch.Tensor | nn.Module, note: str = "") -> None:
        """Record a tensor (its shape, dtype, device) or a module (its weights' dtype, device and count).

        :param boundary: where the value crosses, e.g. ``"noise"``.
        :param value: a tensor, or a module with parameters.
        :param note: an extra column.
        """
        if not isinstance(boundary, str) or not boundary:
            raise ValueError(f"boundary must be a non-empty string, e.g. 'noise'; got {boundary!r}")
        if isinstance(value, torch.Tensor):
            row = TraceRow(self._stage, boundary, tuple(value.shape), value.dtype, value.device, note)
        elif isinstance(value, nn.Module) and any(True for _ in value.parameters()):
            first = next(value.parameters())
            count = sum(p.numel() for p in value.parameters())
            row = TraceRow(self._stage, boundary, None, first.dtype, first.device, note or f"{count:,} params")
        else:
            raise ValueError(
                f"value must be a torch.Tensor or an nn.Module with parameters, e.g. torch.zeros(2); "
                f"got {type(value).__name__}"
            )
        self.rows.append(row)

    @contextmanager
    def watch(self, module: nn.Module, name: str) -> Iterator[nn.Module]:
        """Record the tensor arguments and the output of every call of ``module`` inside the ``with`` block.

        :param module: the module to hook (its ``forward``; other methods are not seen).
        :param name: the prefix of its boundaries: ``"<name> in: <argument>"`` and ``"<name> out"``.
        :returns: the module itself, for convenience.
        """
        if not isinstance(module, nn.Module):
            raise ValueError(f"module must be an nn.Module, e.g. nn.Linear(4, 2); got {type(module).__name__}")
        names = _argument_names(module)

        def hook(_module, args, kwargs, output):
            for i, arg in enumerate(args):
                if isinstance(arg, torch.Tensor):
                    label = names[i] if i < len(names) else f"arg {i}"
                    self.record(f"{name} in: {label}", arg)
            for key, arg in kwargs.items():
                if isinstance(arg, torch.Tensor):
                    self.record(f"{name} in: {key}", arg)
            if isinstance(output, torch.Tensor):
                self.record(f"{name} out", output)

        handle = module.register_forward_hook(hook, with_kwargs=True)
        try:
            yield module
        finally:
            handle.remove()

    def table(self) -> str:
        """The rows as a text table under one heading per stage; repeats within a stage are merged into one row
        with a call count. A module's row shows its parameter count in the shape column."""
        merged: dict[TraceRow, int] = {}
        for row in self.rows:
            merged[row] = merged.get(row, 0) + 1
        head = ("boundary", "shape", "dtype", "device", "calls")
        cells = {
            row: (
                row.boundary,
                row.note if row.shape is None else str(row.shape),
                str(row.dtype).removeprefix("torch."),
                str(row.device),
                str(n),
            )
            for row, n in merged.items()
        }
        widths = [max(len(c[i]) for c in [head, *cells.values()]) for i in range(len(head))]

        def line(values: tuple[str, ...]) -> str:
            left = [v.ljust(w) for v, w in zip(values[:-1], widths, strict=False)]
            return "  " + "  ".join([*left, values[-1].rjust(widths[-1])])

        out, stage = [line(head)], None
        for row, values in cells.items():
            if row.stage != stage:
                stage = row.stage
                out.append(stage or "(no stage)")
            note = f"  {row.note}" if row.note and row.shape is not None else ""
            out.append(line(values) + note)
        return "\n".join(out)


def _argument_names(module: nn.Module) -> list[str]:
    """Positional parameter names of ``module.forward``, for readable boundaries (``latents``, not ``arg 0``)."""
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in kinds]
