r"""Which components are on the compute device in each stage of a run, and what loading them there costs.

A text-to-video run has three stages, each calling one component:

========================  ==================  =====================================
stage                     component           calls
========================  ==================  =====================================
text encoding             ``text_encoder``    1, or 2 with guidance (the negative prompt)
denoising loop            ``dit``             :math:`N`, or :math:`2N` with guidance
decoding                  ``vae``             1
========================  ==================  =====================================

The config's ``runtime.offload`` strategy decides what is resident during each
stage (:func:`~infralens.memory.plan_offload` replays the calls): ``"resident"``
keeps all three on the device for the whole run, ``"model"`` keeps only the
component being called (DiffSynth-Studio's ``load_models_to_device`` per unit),
``"layer"`` streams the called component one layer at a time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import nn

from infralens.memory import Component, plan_offload

from .config import COMPONENTS, PipelineConfig

STAGES: tuple[tuple[str, str], ...] = (
    ("text encoding", "text_encoder"),
    ("denoising loop", "dit"),
    ("decoding", "vae"),
)
"""The stages of a text-to-video run and the component each one calls, in order."""


def layer_bytes(module: nn.Module) -> tuple[int, ...]:
    """Bytes of a module's offload units: its own parameters, then each child's (the blocks of a ``ModuleList`` one
    by one), skipping units without parameters.

    :param module: an ``nn.Module`` with parameters.
    :returns: bytes per unit; they sum to the module's parameter bytes.

    >>> m = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> layer_bytes(m), sum(p.numel() * 4 for p in m.parameters())
    ((80, 40), 120)
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be a torch.nn.Module, e.g. nn.Linear(4, 2); got {type(module).__name__}")

    def size(params) -> int:
        return sum(p.numel() * p.element_size() for p in params)

    units = [size(module.parameters(recurse=False))]
    for child in module.children():
        parts = list(child) if isinstance(child, nn.ModuleList) else [child]
        units.extend(size(part.parameters()) for part in parts)
    units = tuple(u for u in units if u)
    if not units:
        raise ValueError(f"module must have parameters to place on a device; {type(module).__name__} has none")
    return units


@dataclass(frozen=True)
class PipelineStage:
    """One stage of a run under the config's offload strategy."""

    stage: str
    """``"text encoding"``, ``"denoising loop"`` or ``"decoding"``."""
    component: str
    """The component the stage calls."""
    calls: int
    """How many times it is called."""
    on_device: tuple[str, ...]
    """Components with weights on the compute device during the stage (for ``"layer"``: the one being streamed)."""
    weight_bytes: int
    """Largest weight bytes on the device at any call of the stage."""
    moved_bytes: int
    """Host-to-device bytes copied over the stage."""


def stage_calls(config: PipelineConfig) -> dict[str, int]:
    """Calls per component in one run: the text encoder and the DiT run twice per use with guidance.

    >>> from infralens.pipelines import load_config
    >>> import infralens, pathlib
    >>> root = pathlib.Path(infralens.__file__).parents[2]
    >>> cfg = load_config(root / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml")
    >>> stage_calls(cfg)
    {'text_encoder': 2, 'dit': 8, 'vae': 1}
    """
    guided = config.runtime.guidance_scale != 1
    return {"text_encoder": 2 if guided else 1, "dit": config.denoiser_calls, "vae": 1}


def stage_residency(config: PipelineConfig, modules: Mapping[str, nn.Module]) -> tuple[PipelineStage, ...]:
    r"""The three stages of a run with what is on the device and what is copied there, under ``runtime.offload``.

    :param config: the run's config (its offload strategy and call counts).
    :param modules: the loaded components by role, e.g. from :func:`~infralens.pipelines.load_components`.
    :returns: one :class:`PipelineStage` per stage of :data:`STAGES`.
    """
    if not isinstance(config, PipelineConfig):
        raise ValueError(f"config must be a PipelineConfig, e.g. load_config('pipeline_config.yaml'); got {config!r}")
    missing = [name for name in COMPONENTS if name not in modules]
    if missing:
        raise ValueError(f"modules must hold every component, {', '.join(COMPONENTS)}; missing: {', '.join(missing)}")
    calls = stage_calls(config)
    parts = [Component(name, layer_bytes(modules[name])) for name in COMPONENTS]
    schedule = [name for name in COMPONENTS for _ in range(calls[name])]
    plan = plan_offload(parts, schedule, strategy=config.runtime.offload)
    rows, start = [], 0
    for stage, name in STAGES:
        mine = plan.stages[start : start + calls[name]]
        start += calls[name]
        on_device = COMPONENTS if config.runtime.offload == "resident" else (name,)
        rows.append(
            PipelineStage(
                stage=stage,
                component=name,
                calls=calls[name],
                on_device=on_device,
                weight_bytes=max(s.weight_bytes for s in mine),
                moved_bytes=sum(s.moved_bytes for s in mine),
            )
        )
    return tuple(rows)
