r"""A pipeline config: the family, the components and the runtime choices, read and checked before any code runs.

A text-to-video pipeline in the style of Wan 2.1 is fully described by three
blocks of YAML:

``family``
    the latent contract (a video family of :data:`~infralens.families.LATENT_FAMILIES`);
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

The config's shape is the three dataclasses :class:`PipelineConfig`,
:class:`ComponentSpec` and :class:`RuntimeSpec`; one table gives each of their
keys the rule its value must pass and a valid example, and one short checker
walks the dataclasses' fields through it. The only rule across keys (sizes
against the family and the patches) runs after.
"""

from __future__ import annotations

import difflib
import numbers
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch
import yaml

from infralens.core import exact_keys, torch_dtype
from infralens.diffusion import LATENT_FAMILIES, latent_shape
from infralens.memory import STRATEGIES

DTYPES: Mapping[str, torch.dtype] = MappingProxyType(
    {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
)
"""The dtypes a config's components and runtime may use, by torch's name; the short names of
:data:`~infralens.core.DTYPE_BYTES` (``bf16``) mean the same (one vocabulary, see the glossary)."""

COMPONENTS: tuple[str, ...] = ("text_encoder", "dit", "vae")
"""The components of a text-to-video pipeline, in the order a run calls them."""

PATCH_SIZE: tuple[int, int, int] = LATENT_FAMILIES["wan2.1"].patch
"""Latent cells per DiT token along (frames, height, width), as in Wan (from the family record)."""

DIFFSYNTH_WAN_DEFAULTS: Mapping[str, object] = LATENT_FAMILIES["wan2.1"].pipeline_defaults
"""What ``WanVideoPipeline.__call__(prompt=...)`` uses when a demo call leaves them out (DiffSynth-Studio 2.1.12).

A view of the ``wan2.1`` family record. ``seed=None`` draws fresh noise on every
call. ``tox -e upstream`` runs a bare ``__call__`` on a tiny DiT and compares what it
does (latent shape, DiT calls, decoder tiling) with these values.
"""

# --- the config's shape -------------------------------------------------------------------------------------


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
    """The dtype of latents and intermediates. DiffSynth-Studio's ``torch_dtype`` is that and, unless a
    model's ``ModelConfig`` sets ``computation_dtype``, also every model's weight dtype; here the weights'
    dtypes are the components' own."""
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


# --- the rules a key's value must pass -----------------------------------------------------------------------
# Each takes the key path, the value read and a valid example; it returns the value as the config holds it.


def _mapping(path: str, value: object, example: str) -> Mapping:
    if not isinstance(value, Mapping):
        raise ValueError(f"{path} must be a mapping (key: value lines), e.g. {example}; got {value!r}")
    return value


def _last(path: str) -> str:
    return path.rsplit(".", 1)[-1]


def _dtype(path: str, value: object, example: str) -> torch.dtype:
    try:
        dtype = torch_dtype(value)
    except ValueError:
        dtype = None
    if dtype in DTYPES.values():
        return dtype
    raise ValueError(
        f"{path} must be one of {', '.join(DTYPES)} (or bf16, fp16, fp32), e.g. {path}: {example}; got {value!r}"
    )


def _device(path: str, value: object, example: str) -> torch.device:
    try:
        if not isinstance(value, str):
            raise TypeError
        return torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(f"{path} must be a torch device name such as cpu, cuda or cuda:0; got {value!r}") from None


def _whole(path: str, value: object, example: int, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{path} must be a whole number >= {low}, e.g. {_last(path)}: {example}; got {value!r}")
    return int(value)


def _number(path: str, value: object, example: float, *, low: float, strict: bool, why: str) -> float:
    ok = not isinstance(value, bool) and isinstance(value, numbers.Real) and (value > low if strict else value >= low)
    if not ok:
        rule = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{path} must be a number {rule} ({why}), e.g. {_last(path)}: {example}; got {value!r}")
    return float(value)


def _offload(path: str, value: object, example: str) -> str:
    if isinstance(value, str) and value in STRATEGIES:
        return value
    hint = " (YAML reads unquoted no/off/false as a boolean: quote it)" if isinstance(value, bool) else ""
    raise ValueError(f"{path} must be one of {', '.join(STRATEGIES)}, e.g. {path}: {example}; got {value!r}{hint}")


def _loader(path: str, value: object, example: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{path} must be a registry name, e.g. loader: {example}; got {value!r}")
    return value


def _params(path: str, value: object, example: str) -> Mapping[str, object]:
    params = _mapping(path, value, f"params: {example}")
    for key, item in params.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise ValueError(f"{path} keys must be argument names, e.g. num_layers; got {key!r}")
        if not isinstance(item, bool | numbers.Real | str):
            raise ValueError(f"{path}.{key} must be a number, a boolean or a string, e.g. 32; got {item!r}")
    return MappingProxyType(dict(params))


def _family(path: str, value: object, example: str) -> str:
    videos = [name for name, fam in LATENT_FAMILIES.items() if fam.is_video]
    if isinstance(value, str) and value in videos:
        return value
    kind = "an image family" if isinstance(value, str) and value in LATENT_FAMILIES else "not a known family"
    raise ValueError(
        f"family {value!r} is {kind}; a text-to-video config needs a video family: "
        f"{', '.join(videos)}, e.g. {path}: {example}"
    )


def _components(path: str, value: object, example: str) -> Mapping[str, ComponentSpec]:
    blocks = _mapping(path, value, f"{path}: {example}")
    for name in blocks:
        if name not in COMPONENTS:
            close = difflib.get_close_matches(str(name), COMPONENTS, n=1)
            hint = f"did you mean {path}.{close[0]}? " if close else ""
            raise ValueError(
                f"unknown component {path}.{name}; {hint}a text-to-video pipeline has: {', '.join(COMPONENTS)}"
            )
    for name in COMPONENTS:
        if name not in blocks:
            raise ValueError(
                f"{path}.{name} is missing: a text-to-video pipeline needs {', '.join(COMPONENTS)}; e.g. "
                f"{path}.{name}: {{loader: ..., dtype: float32, device: cpu, params: {{}}}}"
            )
    example = "{loader: tiny_video_dit, dtype: float32, device: cpu, params: {}}"
    return MappingProxyType(
        {name: _check(ComponentSpec, f"{path}.{name}", blocks[name], example) for name in COMPONENTS}
    )


def _runtime(path: str, value: object, example: str) -> RuntimeSpec:
    return _check(RuntimeSpec, path, value, f"{path}: {example}")


_RULES: Mapping[str, tuple[Callable[[str, object, object], object], object]] = {
    # every key of the three dataclasses: the rule its value must pass, and a valid example for messages
    "family": (_family, "wan2.1"),
    "components": (_components, "{text_encoder: ..., dit: ..., vae: ...}"),
    "runtime": (_runtime, "{dtype: bfloat16, ...}"),
    "loader": (_loader, "tiny_video_dit"),
    "dtype": (_dtype, "bfloat16"),
    "device": (_device, "cpu"),
    "params": (_params, "{dim: 32}"),
    "offload": (_offload, "model"),
    "height": (partial(_whole, low=1), 480),
    "width": (partial(_whole, low=1), 832),
    "num_frames": (partial(_whole, low=1), 81),
    "num_inference_steps": (partial(_whole, low=1), 50),
    "guidance_scale": (partial(_number, low=1.0, strict=False, why="1 turns guidance off"), 5.0),
    "shift": (partial(_number, low=0.0, strict=True, why="1 leaves the sigmas unshifted"), 5.0),
    "seed": (partial(_whole, low=0), 0),
}


# --- the checker --------------------------------------------------------------------------------------------


def _check(spec: type, path: str, value: object, example: str) -> Any:
    """A ``spec`` from the mapping at ``path``: exactly its fields as keys, each value passed through its rule."""
    block = _mapping(path or "the config", value, example)
    keys = [f.name for f in fields(spec)]
    why = "every choice is written in the config, none is a hidden default"
    examples = {key: _RULES[key][1] for key in keys}
    exact_keys(block, keys, path=path, owner=path or "the config", why=why, examples=examples)
    checked = {}
    for key in keys:
        rule, example = _RULES[key]
        checked[key] = rule(f"{path}.{key}" if path else key, block[key], example)
    return spec(**checked)


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


# --- across keys ----------------------------------------------------------------------------------------------


def _sizes(family: str, runtime: RuntimeSpec) -> None:
    """The family's VAE rules (via latent_shape), then the DiT's 2x2 patches on the latent grid."""
    height, width, num_frames = runtime.height, runtime.width, runtime.num_frames
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
    config = _check(PipelineConfig, "", _read(path_or_text), "family: wan2.1, components: ..., runtime: ...")
    _sizes(config.family, config.runtime)  # a rule across keys: the family's VAE and the DiT's patches
    return config
