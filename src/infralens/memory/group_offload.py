r"""Group offloading, block by block: which weights move together, and when.

diffusers' ``enable_group_offload(offload_type="block_level", num_blocks_per_group=k)``
(``hooks/group_offloading.py``) splits every ``nn.ModuleList`` or ``nn.Sequential``
child of a model into groups of :math:`k` consecutive modules. A group is copied
to the compute device when its *first* module is called and back when its *last*
module returns; everything else (embeddings, the output head, parameters that
belong to no group) forms one more group that arrives when the model is called and
leaves when it returns. So the device holds that group plus one block group at a
time, and every call of the model copies every group on and off once.

:class:`GroupOffload` does the same with forward hooks and records the events, so
the schedule can be read on a machine with one device (where the copies are no-ops).

**Streams.** On a GPU, ``use_stream=True`` copies the *next* group on a side stream
while the current one computes (diffusers forces :math:`k = 1` then, and refuses a
CPU onload device). :func:`offload_timeline` models what that overlap buys: without
it a group's copy and its compute add up, with it the wait for group :math:`i+1` is
only the part of its copy that the compute of group :math:`i` did not cover,

.. math:: T_\text{serial} = \sum_i (t_i + c_i), \qquad
   T_\text{prefetch} = t_0 + \sum_i \max(c_i,\ t_{i+1}), \quad t_n = 0
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from infralens.core import positive_int

TOP_LEVEL = "top-level"
"""The name of the group of everything outside the block lists."""


@dataclass(frozen=True)
class OffloadEvent:
    """One thing that happened during a forward: a group moved, or a grouped module ran."""

    action: str
    """``"onload"``, ``"offload"`` or ``"compute"``."""
    name: str
    """The group (``"blocks_0_1"``, diffusers' naming) or, for ``"compute"``, the module (``"blocks.0"``)."""
    nbytes: int
    """Bytes moved (0 for ``"compute"``)."""


def _tensor_bytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class GroupOffload:
    r"""Block-level group offloading of ``model``, recorded.

    :param model: a module whose ``nn.ModuleList`` / ``nn.Sequential`` children are the blocks.
    :param num_blocks_per_group: :math:`k`, consecutive modules that move together.
    :param onload_device: where a group computes.
    :param offload_device: where it waits.

    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.embed = nn.Linear(4, 8)
    ...         self.blocks = nn.ModuleList(nn.Linear(8, 8) for _ in range(3))
    ...     def forward(self, x):
    ...         x = self.embed(x)
    ...         for block in self.blocks:
    ...             x = block(x)
    ...         return x
    >>> off = GroupOffload(Net(), num_blocks_per_group=2)
    >>> [name for name, _ in off.groups]
    ['blocks_0_1', 'blocks_2_2', 'top-level']
    >>> _ = off.model(torch.randn(1, 4))
    >>> [f"{e.action} {e.name}" for e in off.events]  # doctest: +NORMALIZE_WHITESPACE
    ['onload top-level', 'onload blocks_0_1', 'compute blocks.0', 'compute blocks.1', 'offload blocks_0_1',
     'onload blocks_2_2', 'compute blocks.2', 'offload blocks_2_2', 'offload top-level']
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        num_blocks_per_group: int,
        onload_device: str | torch.device = "cpu",
        offload_device: str | torch.device = "cpu",
    ):
        if not isinstance(model, nn.Module):
            raise ValueError(f"model must be an nn.Module, e.g. TinyDiT(); got {type(model).__name__}")
        k = positive_int("num_blocks_per_group", num_blocks_per_group, example=1)
        self.model, self.onload, self.offload = model, torch.device(onload_device), torch.device(offload_device)
        self.events: list[OffloadEvent] = []
        self.groups: list[tuple[str, list[nn.Module]]] = []
        grouped: set[int] = set()
        for name, child in model.named_children():
            if isinstance(child, (nn.ModuleList, nn.Sequential)):
                for i in range(0, len(child), k):
                    members = list(child[i : i + k])
                    self.groups.append((f"{name}_{i}_{i + len(members) - 1}", members))
                    grouped.update(id(m) for m in members)
        if not self.groups:
            raise ValueError(
                "model has no nn.ModuleList or nn.Sequential child to group; block-level offloading needs one, "
                "e.g. model.blocks"
            )
        self._top_modules = [c for _, c in model.named_children() if not isinstance(c, (nn.ModuleList, nn.Sequential))]
        # the model's own parameters and buffers (a scale_shift_table), which no child module owns
        self._top_tensors = [*model.parameters(recurse=False), *model.buffers(recurse=False)]
        self.groups.append((TOP_LEVEL, self._top_modules))
        self._handles = []
        for name, members in self.groups[:-1]:
            self._handles.append(members[0].register_forward_pre_hook(self._mover("onload", name, members)))
            for j, m in enumerate(members):
                path = self._path(m)
                self._handles.append(m.register_forward_pre_hook(self._ran(path)))
                if j == len(members) - 1:
                    self._handles.append(m.register_forward_hook(self._mover("offload", name, members)))
        self._handles.append(model.register_forward_pre_hook(self._mover("onload", TOP_LEVEL, self._top_modules)))
        self._handles.append(model.register_forward_hook(self._mover("offload", TOP_LEVEL, self._top_modules)))
        for name, members in self.groups:  # everything starts on the offload device, as in diffusers
            self._move(name, members, self.offload)

    def group_bytes(self) -> dict[str, int]:
        """Bytes of each group's parameters and buffers."""
        return {name: self._bytes(name, members) for name, members in self.groups}

    def peak_resident_bytes(self) -> int:
        """The most bytes on the onload device at once during the recorded forwards."""
        live, peak = 0, 0
        for e in self.events:
            live += e.nbytes if e.action == "onload" else -e.nbytes if e.action == "offload" else 0
            peak = max(peak, live)
        return peak

    def remove(self) -> None:
        """Remove the hooks (the weights stay where they are)."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # -- moving ----------------------------------------------------------------------------------

    def _path(self, module: nn.Module) -> str:
        return next(n for n, m in self.model.named_modules() if m is module)

    def _bytes(self, name: str, members: list[nn.Module]) -> int:
        tensors = [t for m in members for t in [*m.parameters(), *m.buffers()]]
        return _tensor_bytes(tensors + (self._top_tensors if name == TOP_LEVEL else []))

    def _move(self, name: str, members: list[nn.Module], device: torch.device) -> None:
        for m in members:
            m.to(device)
        if name == TOP_LEVEL:  # parameters of the model itself, outside every child (a scale_shift_table)
            for t in self._top_tensors:
                t.data = t.data.to(device)

    def _mover(self, action: str, name: str, members: list[nn.Module]):
        device = self.onload if action == "onload" else self.offload

        def hook(module, *args):
            self._move(name, members, device)
            self.events.append(OffloadEvent(action, name, self._bytes(name, members)))

        return hook

    def _ran(self, path: str):
        def hook(module, args):
            self.events.append(OffloadEvent("compute", path, 0))

        return hook


def offload_timeline(
    compute_s: Sequence[float], transfer_s: Sequence[float], *, prefetch: bool
) -> tuple[float, tuple[float, ...]]:
    r"""Time of one pass over :math:`n` groups, and the wait before each group's compute (a model).

    :param compute_s: :math:`c_i`, seconds of compute per group, in order.
    :param transfer_s: :math:`t_i`, seconds to copy each group to the device.
    :param prefetch: copy group :math:`i+1` while group :math:`i` computes (streams), or not.
    :returns: ``(total, waits)``: :math:`T` and the seconds each group's compute waited for its copy.

    >>> offload_timeline([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], prefetch=False)
    (9.0, (1.0, 1.0, 1.0))
    >>> offload_timeline([2.0, 2.0, 2.0], [1.0, 1.0, 1.0], prefetch=True)    # copies hidden but the first
    (7.0, (1.0, 0.0, 0.0))
    >>> offload_timeline([1.0, 1.0, 1.0], [3.0, 3.0, 3.0], prefetch=True)    # transfer-bound: waits remain
    (10.0, (3.0, 2.0, 2.0))
    """
    c, t = list(compute_s), list(transfer_s)
    if not c or len(c) != len(t):
        raise ValueError(
            f"compute_s and transfer_s must have one value per group, the same number (>= 1), "
            f"e.g. [0.1, 0.1] and [0.05, 0.05]; got {len(c)} and {len(t)}"
        )
    for name, values in (("compute_s", c), ("transfer_s", t)):
        if any(isinstance(v, bool) or not isinstance(v, numbers.Real) or v < 0 for v in values):
            raise ValueError(f"{name} must be seconds >= 0, e.g. [0.1, 0.1]; got {values}")
    if not prefetch:
        return float(sum(c) + sum(t)), tuple(float(v) for v in t)
    waits = [float(t[0])]
    for i in range(1, len(c)):
        waits.append(float(max(0.0, t[i] - c[i - 1])))  # copied during the previous compute
    # T = t_0 + sum_i max(c_i, t_{i+1}), t_n = 0
    return float(t[0] + sum(max(c[i], t[i + 1] if i + 1 < len(t) else 0.0) for i in range(len(c)))), tuple(waits)
