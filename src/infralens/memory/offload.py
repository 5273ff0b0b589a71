r"""Offload as a residency schedule: which weights are on the accelerator at each stage, and what was copied there.

A pipeline calls its components in a fixed order, for example the text encoder
once, the denoiser once or twice per step, the VAE once. :func:`plan_offload`
replays that schedule under one of three policies and reports, stage by stage,
the weight bytes resident on the device, the peak (weights plus the stage's
activations) and the bytes copied host-to-device:

``"resident"``
    everything is moved once, before the first stage, and stays
    (``pipe.to("cuda")``). Peak: the sum of all components.
``"model"``
    one whole component at a time: when the schedule switches component, the
    previous one leaves and the next one is copied in
    (diffusers' ``enable_model_cpu_offload``, DiffSynth-Studio's
    ``load_models_to_device``). Peak: the largest component.
``"layer"``
    layer by layer. Without a budget nothing stays on the device: every layer is
    copied in for its forward and dropped after it (diffusers'
    ``enable_sequential_cpu_offload``). With a budget, layers stay resident in
    execution order while they fit, keeping room for one streamed layer, and the
    rest are streamed at every call (DiffSynth-Studio's ``vram_limit``).

The bytes moved per stage are the price: for a component called every step it
is paid every step,

.. math:: \text{moved per call} = \sum_{\ell \in \text{streamed}} \text{bytes}(\ell),
   \qquad \text{peak} = \sum_{\ell \in \text{persistent}} \text{bytes}(\ell)
   + \max_{\ell \in \text{streamed}} \text{bytes}(\ell) + \text{activations}.

Only host-to-device copies are counted: dropping a layer costs nothing if the
host keeps a copy (accelerate's sequential offload), and a device-to-host copy of
the same size if the implementation moves the module back (``module.to("cpu")``).
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

STRATEGIES = ("resident", "model", "layer")
"""The residency policies :func:`plan_offload` knows."""


def _nonneg_int(name: str, value: object, example: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be a whole number of bytes >= 0, e.g. {name}={example}; got {value!r}")
    return int(value)


@dataclass(frozen=True)
class Component:
    """A pipeline component as offload sees it: a name and the bytes of its layers, in execution order.

    ``layer_bytes`` may be one number (the component moves as one piece).

    >>> Component("transformer", (10, 30, 30)).total_bytes
    70
    """

    name: str
    layer_bytes: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"name must be a non-empty string, e.g. name='transformer'; got {self.name!r}")
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
    """Device bytes available, or ``None`` for no limit."""
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
    :param schedule: component names in call order, e.g. ``["text_encoder"] + ["transformer"] * 50 + ["vae"]``.
    :param strategy: ``"resident"``, ``"model"`` or ``"layer"`` (see the module docstring).
    :param budget: device bytes; for ``"layer"`` it decides which layers stay resident (``None``: none stay),
        for the other strategies it only sets :attr:`OffloadPlan.fits`.
    :param activation_bytes: bytes of activations while each component runs (default 0).
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
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, e.g. strategy='model'; got {strategy!r}")
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
    else:  # "layer"
        on_device = None
        for name in calls:
            persistent, streamed = _split_layers(by_name[name], budget, act[name])
            weights = sum(persistent) + max(streamed, default=0)
            moved = sum(streamed) + (0 if name == on_device else sum(persistent))
            on_device = name
            stages.append(StageResidency(name, weights, weights + act[name], moved))
    return OffloadPlan(strategy, budget, tuple(stages))


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
    for b in layers:  # in execution order, like DiffSynth-Studio's check at each layer's first forward
        if sum(persistent) + b + reserve + activations <= budget:
            persistent.append(b)
        else:
            streamed.append(b)
    return persistent, streamed
