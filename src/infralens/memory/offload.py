r"""Offload as a residency schedule: which weights are on the accelerator at each stage, and what was copied there.

A pipeline calls its components in a fixed order, for example the text encoder
once, the denoiser once or twice per step, the VAE once. :func:`plan_offload`
replays that schedule under one of four policies and reports, stage by stage,
the weight bytes resident on the device, the peak (weights plus the stage's
activations) and the bytes copied host-to-device:

``"resident"``
    everything is moved once, before the first stage, and stays
    (``pipe.to("cuda")``). Peak: the sum of all components.
``"model"``
    one whole component at a time: when the schedule switches component, the
    previous one leaves and the next one is copied in
    (diffusers' ``enable_model_cpu_offload``, DiffSynth-Studio's
    ``load_models_to_device`` without a per-layer limit). Peak: the largest component.
``"layer"``
    a planner, layer by layer. Without a budget nothing stays on the device:
    every layer is copied in for its forward and dropped after it (diffusers'
    ``enable_sequential_cpu_offload``). With a budget, layers stay resident in
    execution order while they fit beside room for the largest streamed layer,
    so the peak never exceeds the budget; the rest are streamed at every call.
``"diffsynth"``
    DiffSynth-Studio's ``vram_limit`` rule (:func:`diffsynth_residency`), which
    is not the planner's: at each forward a wrapped layer that is not resident
    becomes resident if the device's *used* memory is below the limit, with no
    room kept for anything else; ``budget=None`` (its ``vram_limit=None``, the
    default) makes every layer resident, and a budget of 0 keeps none. A
    switch to another component drops the residency, which is decided again.

The bytes moved per stage are the price: for a component called every step it
is paid every step,

.. math:: \text{moved per call} = \sum_{\ell \in \text{streamed}} \text{bytes}(\ell),
   \qquad \text{peak} = \sum_{\ell \in \text{persistent}} \text{bytes}(\ell)
   + \max_{\ell \in \text{streamed}} \text{bytes}(\ell) + \text{activations}.

Only host-to-device copies are counted: dropping a layer costs nothing if the
host keeps a copy (accelerate's sequential offload), and a device-to-host copy of
the same size if the implementation moves the module back (``module.to("cpu")``,
which DiffSynth-Studio's ``offload`` does at every stage switch).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STRATEGIES = ("resident", "model", "layer")
"""The planner's residency policies (what a pipeline config's ``runtime.offload`` may name)."""

_ALL = (*STRATEGIES, "diffsynth")  # plan_offload also replays DiffSynth-Studio's vram_limit rule


def _nonneg_int(name: str, value: object, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number of bytes >= 0, e.g. {name}={example}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Component:
    """A pipeline component as offload sees it: a name and the bytes of its layers, in execution order.

    ``layer_bytes`` may be one number (the component moves as one piece).

    >>> Component("dit", (10, 30, 30)).total_bytes
    70
    """

    name: str
    layer_bytes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, e.g. name='dit'; got {self.name!r}")
        raw = self.layer_bytes
        layers = tuple(raw) if isinstance(raw, tuple | list) else (raw,)
        if not layers:
            raise ValueError(f"layer_bytes of {self.name!r} must list at least one layer, e.g. (1024,); got ()")
        for b in layers:
            if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1:
                raise ValueError(
                    f"layer_bytes of {self.name!r} must be whole numbers of bytes >= 1, e.g. (1024, 2048); got {b!r}"
                )
        object.__setattr__(self, "layer_bytes", tuple(int(b) for b in layers))

    @property
    def total_bytes(self) -> int:
        """Bytes of all layers."""
        return sum(self.layer_bytes)


@dataclass(frozen=True)
class StageResidency:
    """One stage of the schedule: a call of one component."""

    component: str
    """The component called."""
    weight_bytes: int
    """Weight bytes on the device at the stage's peak (persistent plus one streamed layer)."""
    peak_bytes: int
    """``weight_bytes`` plus the stage's activations."""
    moved_bytes: int
    """Host-to-device bytes copied for this stage."""


@dataclass(frozen=True)
class OffloadPlan:
    """A replayed schedule: what each stage kept on the device and copied to it."""

    strategy: str
    budget: int | None
    """Device bytes available, or ``None`` for no limit (for ``"diffsynth"``: ``vram_limit`` in bytes)."""
    stages: tuple[StageResidency, ...]

    @property
    def peak_bytes(self) -> int:
        """The largest stage peak."""
        return max(s.peak_bytes for s in self.stages)

    @property
    def moved_bytes(self) -> int:
        """Host-to-device bytes over the whole schedule."""
        return sum(s.moved_bytes for s in self.stages)

    @property
    def fits(self) -> bool:
        """Whether the peak stays within the budget (always, without one)."""
        return self.budget is None or self.peak_bytes <= self.budget

    def calls(self, component: str) -> int:
        """How many stages call ``component``."""
        return sum(s.component == component for s in self.stages)

    def moved_per_call(self, component: str) -> int:
        """Bytes copied for the last call of ``component``: the steady-state price of calling it again."""
        for s in reversed(self.stages):
            if s.component == component:
                return s.moved_bytes
        raise ValueError(
            f"component must be one the schedule calls, e.g. {self.stages[0].component!r}; got {component!r}"
        )


def plan_offload(
    components: Sequence[Component],
    schedule: Sequence[str],
    *,
    strategy: str,
    budget: int | None = None,
    activation_bytes: Mapping[str, int] | None = None,
) -> OffloadPlan:
    r"""Replay ``schedule`` under a residency ``strategy``: per stage, bytes resident, peak, and bytes moved.

    :param components: the pipeline's components (unique names), each with its layers' bytes.
    :param schedule: component names in call order, e.g. ``["text_encoder"] + ["dit"] * 50 + ["vae"]``.
    :param strategy: ``"resident"``, ``"model"``, ``"layer"`` or ``"diffsynth"`` (see the module docstring).
    :param budget: device bytes; for ``"layer"`` it decides which layers stay resident (``None``: none stay),
        for ``"diffsynth"`` it is ``vram_limit`` in bytes (``None``: all stay), for the other strategies it only
        sets :attr:`OffloadPlan.fits`.
    :param activation_bytes: bytes of activations while each component runs (default 0); ``"diffsynth"`` counts
        them as memory in use when it decides.
    :returns: an :class:`OffloadPlan`.

    A component of three layers called twice, then a second component:

    >>> parts = [Component("dit", (10, 30, 30)), Component("vae", 20)]
    >>> for strategy, budget in [("resident", None), ("model", None), ("layer", None), ("layer", 50)]:
    ...     plan = plan_offload(parts, ["dit", "dit", "vae"], strategy=strategy, budget=budget)
    ...     print(strategy, budget, plan.peak_bytes, [s.moved_bytes for s in plan.stages])
    resident None 90 [90, 0, 0]
    model None 70 [70, 0, 20]
    layer None 30 [70, 70, 20]
    layer 50 40 [70, 60, 20]
    >>> plan = plan_offload(parts, ["dit", "dit", "vae"], strategy="diffsynth", budget=50)
    >>> plan.peak_bytes, [s.moved_bytes for s in plan.stages]     # 0, 10, 40 in use before each: all kept
    (70, [70, 0, 20])
    """
    comps = list(components)
    if not comps or not all(isinstance(c, Component) for c in comps):
        raise ValueError("components must be a non-empty list of Component, e.g. [Component('dit', (1024, 1024))]")
    by_name = {c.name: c for c in comps}
    if len(by_name) != len(comps):
        raise ValueError(f"components must have unique names; got {[c.name for c in comps]}")
    calls = list(schedule)
    if not calls:
        raise ValueError(f"schedule must call at least one component, e.g. schedule=[{comps[0].name!r}]; got []")
    for name in calls:
        if name not in by_name:
            raise ValueError(f"schedule names a component that is not given: {name!r}; known: {sorted(by_name)}")
    if strategy not in _ALL:
        raise ValueError(f"strategy must be one of {', '.join(_ALL)}, e.g. strategy='model'; got {strategy!r}")
    if budget is not None:
        budget = _nonneg_int("budget", budget, 24 * 2**30)
    act = {name: 0 for name in by_name}
    for name, value in (activation_bytes or {}).items():
        if name not in by_name:
            raise ValueError(
                f"activation_bytes names a component that is not given: {name!r}; known: {sorted(by_name)}"
            )
        act[name] = _nonneg_int(f"activation_bytes[{name!r}]", value, 2**30)

    stages: list[StageResidency] = []
    if strategy == "resident":
        everything = sum(c.total_bytes for c in comps)
        for k, name in enumerate(calls):
            stages.append(StageResidency(name, everything, everything + act[name], everything if k == 0 else 0))
    elif strategy == "model":
        on_device = None
        for name in calls:
            weights = by_name[name].total_bytes
            moved = 0 if name == on_device else weights  # switching component: copy the next one in whole
            on_device = name
            stages.append(StageResidency(name, weights, weights + act[name], moved))
    elif strategy == "layer":
        on_device = None
        for name in calls:
            persistent, streamed = _split_layers(by_name[name], budget, act[name])
            weights = sum(persistent) + max(streamed, default=0)
            moved = sum(streamed) + (0 if name == on_device else sum(persistent))
            on_device = name
            stages.append(StageResidency(name, weights, weights + act[name], moved))
    else:  # "diffsynth": the rule at each forward, residency dropped at a switch (load_models_to_device)
        on_device, resident = None, ()
        for name in calls:
            layers = by_name[name].layer_bytes
            before = resident if name == on_device else (False,) * len(layers)
            limit = None if budget is None else budget / GiB
            resident = diffsynth_residency(layers, vram_limit=limit, used_bytes=act[name], resident=before)
            kept = [b for b, r in zip(layers, resident, strict=True) if r]
            streamed = [b for b, r in zip(layers, resident, strict=True) if not r]
            weights = sum(kept) + max(streamed, default=0)  # a streamed layer's temporary copy, one at a time
            became = sum(b for b, r, was in zip(layers, resident, before, strict=True) if r and not was)
            on_device = name
            stages.append(StageResidency(name, weights, weights + act[name], sum(streamed) + became))
    return OffloadPlan(strategy, budget, tuple(stages))


GiB = 2**30
"""Bytes per GiB: DiffSynth-Studio states ``vram_limit`` and its used memory in GiB (``1024**3`` bytes)."""


def diffsynth_residency(
    layer_bytes: Sequence[int],
    *,
    vram_limit: float | None,
    used_bytes: int = 0,
    resident: Sequence[bool] | None = None,
) -> tuple[bool, ...]:
    r"""Which layers DiffSynth-Studio's VRAM wrappers hold on the device after one forward of a component.

    Each wrapped layer (``AutoWrappedLinear``, ``AutoWrappedModule`` in
    ``diffsynth/core/vram/layers.py``) checks at *every* forward, in execution
    order, if it is not resident yet:

    .. math:: \ell \text{ becomes resident} \iff \text{vram\_limit is None} \;\lor\;
       \frac{\text{used}}{2^{30}} < \text{vram\_limit}

    where "used" is the whole device's memory in use at that moment
    (``total - free`` from ``mem_get_info``): here ``used_bytes`` (activations,
    other components, other processes, the allocator's cache) plus every layer
    already resident. Nothing is reserved for the layer itself, so the resident
    set can end above the limit. A layer that is not resident runs on a
    temporary copy and asks again at its next forward.

    :param layer_bytes: bytes of the wrapped layers, in execution order.
    :param vram_limit: the limit in GiB, or ``None`` (DiffSynth's default: every layer becomes resident).
    :param used_bytes: device bytes in use by everything other than these layers.
    :param resident: residency before this forward (``None``: none, as after ``load_models_to_device``).
    :returns: one bool per layer, True if resident after the forward.

    >>> GiB = 2**30
    >>> sizes = [1 * GiB, 3 * GiB, 3 * GiB, GiB // 2]
    >>> diffsynth_residency(sizes, vram_limit=5)          # 0, 1, 4 GiB used before each: 7 GiB kept
    (True, True, True, False)
    >>> diffsynth_residency(sizes, vram_limit=None), diffsynth_residency(sizes, vram_limit=0)
    ((True, True, True, True), (False, False, False, False))
    """
    layers = list(layer_bytes)
    for b in layers:
        _nonneg_int("layer_bytes", b, 2**30)
    if vram_limit is not None and (
        isinstance(vram_limit, bool) or not isinstance(vram_limit, numbers.Real) or vram_limit < 0
    ):
        raise ValueError(f"vram_limit must be a number of GiB >= 0 or None, e.g. vram_limit=20; got {vram_limit!r}")
    used = _nonneg_int("used_bytes", used_bytes, 2**30)
    state = [False] * len(layers) if resident is None else [bool(r) for r in resident]
    if len(state) != len(layers):
        raise ValueError(f"resident must give one flag per layer ({len(layers)}); got {len(state)}")
    for i in range(len(layers)):
        in_use = used + sum(c for c, r in zip(layers, state, strict=True) if r)  # the device, right now
        if not state[i] and (vram_limit is None or in_use / GiB < vram_limit):
            state[i] = True
    return tuple(state)


def _split_layers(component: Component, budget: int | None, activations: int) -> tuple[list[int], list[int]]:
    """Layers that stay on the device and layers streamed at every call, for one component under a budget."""
    layers = component.layer_bytes
    if budget is None:
        return [], list(layers)  # sequential offload: nothing stays
    if component.total_bytes + activations <= budget:
        return list(layers), []
    reserve = max(layers)  # room to stream the largest layer through
    if reserve + activations > budget:
        raise ValueError(
            f"budget must hold the largest layer of {component.name!r} plus its activations, "
            f"budget >= {reserve + activations}; got {budget}"
        )
    persistent: list[int] = []
    streamed: list[int] = []
    for b in layers:  # in execution order, keeping room for the largest streamed layer (unlike DiffSynth)
        if sum(persistent) + b + reserve + activations <= budget:
            persistent.append(b)
        else:
            streamed.append(b)
    return persistent, streamed
