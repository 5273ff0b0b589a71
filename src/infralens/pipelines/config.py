r"""A pipeline config: the family, the components and the runtime choices, read and checked before any code runs.

A text-to-video pipeline in the style of Wan 2.1 is fully described by three
blocks of YAML:

``family``
    the latent contract (a video family of :data:`~infralens.diffusion.LATENT_FAMILIES`);
``components``
    ``text_encoder``, ``dit`` and ``vae``, each with the ``loader`` that builds it,
    the ``dtype`` and ``device`` of its weights and the ``params`` (sizes) it is built with;
``runtime``
    the request and how it runs: the ``dtype`` and ``device`` of latents and other
    intermediates, the ``offload`` strategy, ``height``, ``width``, ``num_frames``,
    ``num_inference_steps``, ``guidance_scale``, ``shift`` and ``seed``.

Every key is required: a config that leaves a choice out would leave it to a
default hidden in code. :func:`load_config` refuses unknown keys, missing
components, dtype and device names torch does not know, and sizes the family's
VAE or the DiT's :math:`(1, 2, 2)` patches cannot represent; every message
names the key path (``runtime.num_frames``), the rule and a valid value.
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

import torch
import yaml

from infralens.diffusion import LATENT_FAMILIES, latent_shape
from infralens.memory import STRATEGIES

DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
    {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
)
"""The dtype names a config may use, as torch spells them, and the torch dtypes they mean."""

_DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}

COMPONENTS: tuple[str, ...] = ("text_encoder", "dit", "vae")
"""The components of a text-to-video pipeline, in the order a run calls them."""

PATCH_SIZE: tuple[int, int, int] = (1, 2, 2)
"""Latent cells per DiT token along (frames, height, width), as in Wan."""

DIFFSYNTH_WAN_DEFAULTS: Mapping[str, object] = MappingProxyType(
    {
        "height": 480,
        "width": 832,
        "num_frames": 81,
        "num_inference_steps": 50,
        "cfg_scale": 5.0,
        "sigma_shift": 5.0,
        "seed": None,
        "tiled": True,
    }
)
"""What ``WanVideoPipeline.__call__(prompt=...)`` uses when a demo call leaves them out (DiffSynth-Studio 2.1.12).

``seed=None`` draws fresh noise on every call. ``tox -e upstream`` reads the
installed signature and compares.
"""

_COMPONENT_KEYS = ("loader", "dtype", "device", "params")
_RUNTIME_KEYS = (
    "dtype",
    "device",
    "offload",
    "height",
    "width",
    "num_frames",
    "num_inference_steps",
    "guidance_scale",
    "shift",
    "seed",
)
_EXAMPLES = {  # a valid value for every key, used in messages
    "family": "wan2.1",
    "loader": "tiny_video_dit",
    "dtype": "bfloat16",
    "device": "cpu",
    "params": "{dim: 32}",
    "offload": "model",
    "height": 480,
    "width": 832,
    "num_frames": 81,
    "num_inference_steps": 50,
    "guidance_scale": 5.0,
    "shift": 5.0,
    "seed": 0,
}


@dataclass(frozen=True)
class ComponentSpec:
    """One component as the config names it (under its role, e.g. ``components.dit``): how to build it and where
    its weights live."""

    loader: str
    """The registry name of the function that builds it (see :func:`~infralens.pipelines.load_component`)."""
    dtype: torch.dtype
    """The dtype of its weights."""
    device: torch.device
    """The device it computes on."""
    params: Mapping[str, object]
    """Sizes and options passed to the loader, read-only."""


@dataclass(frozen=True)
class RuntimeSpec:
    """The request and how it runs."""

    dtype: torch.dtype
    """The dtype of latents and intermediates (DiffSynth-Studio's ``torch_dtype``)."""
    device: torch.device
    """The device latents live on."""
    offload: str
    """A residency strategy of :data:`~infralens.memory.STRATEGIES`: ``"resident"``, ``"model"`` or ``"layer"``."""
    height: int
    width: int
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    """:math:`w` of classifier-free guidance; 1 turns guidance off (one denoiser call per step)."""
    shift: float
    """The sigma shift :math:`s` of the flow-matching schedule."""
    seed: int


@dataclass(frozen=True)
class PipelineConfig:
    """A checked config: build it with :func:`load_config`."""

    family: str
    components: Mapping[str, ComponentSpec]
    """By role, in the order of :data:`COMPONENTS`, read-only."""
    runtime: RuntimeSpec

    @property
    def latent_shape(self) -> tuple[int, int, int, int, int]:
        """The loop state ``(B, C, F', H', W')`` the request becomes (batch 1), by the family's rules."""
        r = self.runtime
        return latent_shape(self.family, height=r.height, width=r.width, frames=r.num_frames)

    @property
    def denoiser_calls(self) -> int:
        """DiT calls of one run: one per step, two with guidance (``guidance_scale != 1``)."""
        per_step = 1 if self.runtime.guidance_scale == 1 else 2
        return self.runtime.num_inference_steps * per_step


# --- reading YAML -------------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.safe_load`` that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[object, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            if key in seen:
                raise ValueError(
                    f"duplicate key {key!r} on line {line} (first on line {seen[key]}): YAML would keep only "
                    "the last value; remove one of them"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _read(path_or_text: str | os.PathLike | Mapping) -> object:
    if isinstance(path_or_text, Mapping):
        return path_or_text
    if isinstance(path_or_text, os.PathLike) or (
        isinstance(path_or_text, str) and "\n" not in path_or_text and path_or_text.endswith((".yaml", ".yml"))
    ):
        path = Path(path_or_text)
        if not path.is_file():
            raise ValueError(
                f"path_or_text names a file that does not exist: {str(path)!r}; e.g. 'pipeline_config.yaml'"
            )
        text = path.read_text(encoding="utf-8")
    elif isinstance(path_or_text, str):
        text = path_or_text
    else:
        raise ValueError(
            "path_or_text must be a path to a .yaml file, YAML text or a mapping, "
            f"e.g. 'pipeline_config.yaml'; got {type(path_or_text).__name__}"
        )
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: plain data only
    except yaml.YAMLError as err:
        raise ValueError(f"the config is not valid YAML: {err}") from None


# --- checking -----------------------------------------------------------------------------------------------


def _mapping(path: str, value: object, example: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a mapping (key: value lines), e.g. {example}; got {value!r}")
    return value


def _keys(path: str, block: Mapping, allowed: tuple[str, ...]) -> None:
    """Refuse unknown keys (with the closest known one) and missing keys; both named by their full path."""
    prefix = f"{path}." if path else ""
    for key in block:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {prefix}{close[0]}? " if close else ""
            raise ValueError(f"unknown key {prefix}{key}; {hint}{path or 'the config'} takes: {', '.join(allowed)}")
    for key in allowed:
        if key not in block:
            raise ValueError(
                f"{prefix}{key} is missing: every choice is written in the config, none is a hidden default; "
                f"e.g. {key}: {_EXAMPLES[key]}"
            )


def _dtype(path: str, value: object) -> torch.dtype:
    if isinstance(value, str) and value in DTYPES:
        return DTYPES[value]
    alias = _DTYPE_ALIASES.get(value) if isinstance(value, str) else None
    hint = f" (did you mean {alias}?)" if alias else ""
    raise ValueError(f"{path} must be one of {', '.join(DTYPES)}, e.g. {path}: bfloat16; got {value!r}{hint}")


def _device(path: str, value: object) -> torch.device:
    try:
        if not isinstance(value, str):
            raise TypeError
        return torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{path} must be a torch device name such as cpu, cuda or cuda:0; got {value!r}") from None


def _whole(path: str, value: object, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        key = path.rsplit(".", 1)[-1]
        raise ValueError(f"{path} must be a whole number >= {low}, e.g. {key}: {_EXAMPLES[key]}; got {value!r}")
    return int(value)


def _real(path: str, value: object, *, low: float, strict: bool, why: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and (value > low if strict else value >= low)
    if not ok:
        key = path.rsplit(".", 1)[-1]
        rule = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{path} must be a number {rule} ({why}), e.g. {key}: {_EXAMPLES[key]}; got {value!r}")
    return float(value)


def _family(value: object) -> str:
    videos = [name for name, fam in LATENT_FAMILIES.items() if fam.is_video]
    if isinstance(value, str) and value in videos:
        return value
    kind = "an image family" if isinstance(value, str) and value in LATENT_FAMILIES else "not a known family"
    raise ValueError(
        f"family {value!r} is {kind}; a text-to-video config needs a video family: "
        f"{', '.join(videos)}, e.g. family: wan2.1"
    )


def _component(name: str, block: object) -> ComponentSpec:
    path = f"components.{name}"
    block = _mapping(path, block, "{loader: tiny_video_dit, dtype: float32, device: cpu, params: {}}")
    _keys(path, block, _COMPONENT_KEYS)
    loader = block["loader"]
    if not isinstance(loader, str) or not loader:
        raise ValueError(f"{path}.loader must be a registry name, e.g. loader: tiny_video_dit; got {loader!r}")
    params = _mapping(f"{path}.params", block["params"], "params: {dim: 32}")
    for key, value in params.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{path}.params keys must be argument names, e.g. num_layers; got {key!r}")
        if not isinstance(value, bool | numbers.Real | str):
            raise ValueError(f"{path}.params.{key} must be a number, a boolean or a string, e.g. 32; got {value!r}")
    return ComponentSpec(
        loader=loader,
        dtype=_dtype(f"{path}.dtype", block["dtype"]),
        device=_device(f"{path}.device", block["device"]),
        params=MappingProxyType(dict(params)),
    )


def _offload(value: object) -> str:
    if isinstance(value, str) and value in STRATEGIES:
        return value
    hint = " (YAML reads unquoted no/off/false as a boolean: quote it)" if isinstance(value, bool) else ""
    raise ValueError(
        f"runtime.offload must be one of {', '.join(STRATEGIES)}, e.g. runtime.offload: model; got {value!r}{hint}"
    )


def _sizes(family: str, height: int, width: int, num_frames: int) -> None:
    """The family's VAE rules (via latent_shape), then the DiT's 2x2 patches on the latent grid."""
    try:
        shape = latent_shape(family, height=height, width=width, frames=num_frames)
    except ValueError as err:
        arg = str(err).split("=", 1)[0]  # latent_shape's messages start with the argument: "frames=80 ..."
        key = {"frames": "runtime.num_frames", "height": "runtime.height", "width": "runtime.width"}.get(arg)
        raise ValueError(f"{key}: {err}" if key else str(err)) from None
    s = LATENT_FAMILIES[family].spatial_factor
    for key, pixels, cells, patch in (
        ("height", height, shape[3], PATCH_SIZE[1]),
        ("width", width, shape[4], PATCH_SIZE[2]),
    ):
        if cells % patch:
            step = s * patch
            lo = pixels // step * step
            near = f"{lo} or {lo + step}" if lo else f"{step}"
            raise ValueError(
                f"runtime.{key}={pixels} gives a latent {key} of {cells} cells, which the DiT's {patch}x{patch} "
                f"patches cannot split: {key} must be a multiple of {step} ({s} per latent cell x {patch} per "
                f"patch); nearest valid: {near}"
            )


def load_config(path_or_text: str | os.PathLike | Mapping) -> PipelineConfig:
    r"""Read a text-to-video pipeline config and check every key, or raise ``ValueError`` naming the key path.

    :param path_or_text: a path to a ``.yaml`` file (a ``pathlib.Path``, or a
        string ending in ``.yaml``/``.yml``), YAML text, or an already parsed mapping.
    :returns: a :class:`PipelineConfig` whose dtypes are torch dtypes, devices torch
        devices, and whose sizes the family's VAE and the DiT's patches can represent.

    >>> cfg = load_config('''
    ... family: wan2.1
    ... components:
    ...   text_encoder: {loader: tiny_text_encoder, dtype: bfloat16, device: cpu, params: {}}
    ...   dit: {loader: tiny_video_dit, dtype: float32, device: cpu, params: {}}
    ...   vae: {loader: tiny_causal_video_vae, dtype: float32, device: cpu, params: {}}
    ... runtime: {dtype: float32, device: cpu, offload: model, height: 480, width: 832,
    ...   num_frames: 81, num_inference_steps: 50, guidance_scale: 5.0, shift: 5.0, seed: 0}
    ... ''')
    >>> cfg.latent_shape, cfg.denoiser_calls, cfg.components["text_encoder"].dtype
    ((1, 16, 21, 60, 104), 100, torch.bfloat16)
    """
    data = _read(path_or_text)
    top = _mapping("the config", data, "family: wan2.1, components: ..., runtime: ...")
    _keys("", top, ("family", "components", "runtime"))
    family = _family(top["family"])

    blocks = _mapping("components", top["components"], "components: {text_encoder: ..., dit: ..., vae: ...}")
    for name in blocks:
        if name not in COMPONENTS:
            close = difflib.get_close_matches(str(name), COMPONENTS, n=1)
            hint = f"did you mean components.{close[0]}? " if close else ""
            raise ValueError(
                f"unknown component components.{name}; {hint}a text-to-video pipeline has: {', '.join(COMPONENTS)}"
            )
    for name in COMPONENTS:
        if name not in blocks:
            raise ValueError(
                f"components.{name} is missing: a text-to-video pipeline needs {', '.join(COMPONENTS)}; e.g. "
                f"components.{name}: {{loader: ..., dtype: float32, device: cpu, params: {{}}}}"
            )
    components = {name: _component(name, blocks[name]) for name in COMPONENTS}

    rt = _mapping("runtime", top["runtime"], "runtime: {dtype: bfloat16, ...}")
    _keys("runtime", rt, _RUNTIME_KEYS)
    height = _whole("runtime.height", rt["height"], low=1)
    width = _whole("runtime.width", rt["width"], low=1)
    num_frames = _whole("runtime.num_frames", rt["num_frames"], low=1)
    _sizes(family, height, width, num_frames)
    runtime = RuntimeSpec(
        dtype=_dtype("runtime.dtype", rt["dtype"]),
        device=_device("runtime.device", rt["device"]),
        offload=_offload(rt["offload"]),
        height=height,
        width=width,
        num_frames=num_frames,
        num_inference_steps=_whole("runtime.num_inference_steps", rt["num_inference_steps"], low=1),
        guidance_scale=_real(
            "runtime.guidance_scale", rt["guidance_scale"], low=1.0, strict=False, why="1 turns guidance off"
        ),
        shift=_real("runtime.shift", rt["shift"], low=0.0, strict=True, why="1 leaves the sigmas unshifted"),
        seed=_whole("runtime.seed", rt["seed"], low=0),
    )
    return PipelineConfig(family=family, components=MappingProxyType(components), runtime=runtime)
