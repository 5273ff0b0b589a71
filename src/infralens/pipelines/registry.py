r"""From config names to modules: a registry of loaders, and :func:`load_component`, the boundary between them.

A config says ``loader: tiny_video_dit`` and ``params: {dim: 32, ...}``; code
needs an ``nn.Module`` with its weights in the right dtype on the right device.
:func:`load_component` is the one place where the first becomes the second:

1. look the loader name up in :data:`LOADERS` (a name to class mapping, like
   DiffSynth-Studio's ``model_class`` entries);
2. check every param against the loader's signature;
3. build the module (``loader(**params)``, like DiffSynth's
   ``model_class(**extra_kwargs)``);
4. move it to the component's dtype and device, switch off gradients.

The tiny loaders build random weights fixed by a seed; a real loader would read
a state dict at step 3. :func:`load_components` loads all three components of a
config and then checks that they fit together: latent channels, the text width
the DiT expects, and the VAE's factors against the family.
"""

from __future__ import annotations

import difflib
import hashlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch
from torch import nn

from infralens.diffusion import LATENT_FAMILIES
from infralens.nets import TinyCausalVideoVAE, TinyTextEncoder, TinyVideoDiT

from .config import COMPONENTS, DTYPES, ComponentSpec, PipelineConfig

_LOADERS: dict[str, Callable[..., nn.Module]] = {
    "tiny_text_encoder": TinyTextEncoder,
    "tiny_video_dit": TinyVideoDiT,
    "tiny_causal_video_vae": TinyCausalVideoVAE,
}
LOADERS: Mapping[str, Callable[..., nn.Module]] = MappingProxyType(_LOADERS)
"""Registered loaders by config name, each a module class or a function taking the params as keyword arguments
(read-only view; add with :func:`register_loader`)."""


def register_loader(name: str, loader: Callable[..., nn.Module]) -> None:
    """Make ``loader`` available to configs as ``loader: <name>``; a name can be registered once.

    :param name: the config name, a non-empty string not yet in :data:`LOADERS`.
    :param loader: a callable taking the component's params as keyword arguments and returning an ``nn.Module``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, e.g. name='my_dit'; got {name!r}")
    if name in _LOADERS:
        raise ValueError(f"name {name!r} is already registered (to {_LOADERS[name].__name__}); choose another name")
    if not callable(loader):
        raise ValueError(f"loader must be callable (a module class or a function); got {type(loader).__name__}")
    _LOADERS[name] = loader


def _accepted(loader: Callable[..., nn.Module]) -> list[str]:
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in inspect.signature(loader).parameters.values() if p.kind in kinds]


def load_component(name: str, spec: ComponentSpec) -> nn.Module:
    r"""Build the module a config block describes, in its dtype on its device, ready for inference.

    :param name: the component's role, the key of its block (``"dit"`` for ``components.dit``); used in messages.
    :param spec: the block, as :func:`~infralens.pipelines.load_config` checked it.
    :returns: the module, in eval mode with ``requires_grad`` off.

    >>> from infralens.pipelines import ComponentSpec
    >>> spec = ComponentSpec("tiny_video_dit", torch.bfloat16, torch.device("cpu"), {"dim": 32})
    >>> dit = load_component("dit", spec)
    >>> type(dit).__name__, next(dit.parameters()).dtype, dit.training
    ('TinyVideoDiT', torch.bfloat16, False)
    """
    path = f"components.{name}"
    if not isinstance(spec, ComponentSpec):
        raise ValueError(f"spec must be a ComponentSpec, e.g. load_config(...).components[{name!r}]; got {spec!r}")
    loader = _LOADERS.get(spec.loader)
    if loader is None:
        close = difflib.get_close_matches(spec.loader, list(_LOADERS), n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        raise ValueError(
            f"{path}.loader: no loader is registered as {spec.loader!r}; {hint}registered: {', '.join(_LOADERS)}"
        )
    accepted = _accepted(loader)
    for key in spec.params:
        if key not in accepted:
            close = difflib.get_close_matches(key, accepted, n=1)
            hint = f"did you mean {path}.params.{close[0]}? " if close else ""
            raise ValueError(f"unknown key {path}.params.{key}; {hint}{spec.loader} takes: {', '.join(accepted)}")
    try:
        module = loader(**spec.params)
    except ValueError as err:  # the loader's own check, e.g. "num_heads must divide dim=32 ..."
        arg = str(err).split(None, 1)[0].split("=", 1)[0]
        where = f"{path}.params.{arg}" if arg in spec.params else f"{path}.params"
        raise ValueError(f"{where}: {err}") from None
    if not isinstance(module, nn.Module):
        raise ValueError(f"{path}.loader: {spec.loader!r} returned {type(module).__name__}, not a torch.nn.Module")
    if spec.device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{path}.device is {spec.device}, but this machine has no CUDA device; e.g. device: cpu")
    try:
        module = module.to(device=spec.device, dtype=spec.dtype)
    except (RuntimeError, AssertionError) as err:
        raise ValueError(
            f"{path}.device is {spec.device}, which torch cannot use here: {err}; e.g. device: cpu"
        ) from None
    return module.requires_grad_(False).eval()


def _attribute(name: str, module: nn.Module, attr: str) -> int:
    if not hasattr(module, attr):
        raise ValueError(
            f"components.{name}: {type(module).__name__} has no attribute {attr!r}, which a pipeline's {name} "
            "must expose so the components can be wired together"
        )
    return getattr(module, attr)


def load_components(config: PipelineConfig) -> dict[str, nn.Module]:
    """Load every component of ``config`` and check that they fit the family and each other.

    :param config: a config from :func:`~infralens.pipelines.load_config`.
    :returns: ``{"text_encoder": ..., "dit": ..., "vae": ...}``, in call order.
    """
    if not isinstance(config, PipelineConfig):
        raise ValueError(f"config must be a PipelineConfig, e.g. load_config('pipeline_config.yaml'); got {config!r}")
    modules = {name: load_component(name, config.components[name]) for name in COMPONENTS}
    fam = LATENT_FAMILIES[config.family]
    te, dit, vae = (modules[name] for name in COMPONENTS)
    for name, module in (("vae", vae), ("dit", dit)):
        channels = _attribute(name, module, "latent_channels")
        if channels != fam.channels:
            raise ValueError(
                f"components.{name}.params.latent_channels={channels} does not match family {config.family!r}, "
                f"whose latents have {fam.channels} channels; e.g. latent_channels: {fam.channels}"
            )
    text_dim, width = _attribute("dit", dit, "text_dim"), _attribute("text_encoder", te, "dim")
    if text_dim != width:
        raise ValueError(
            f"components.dit.params.text_dim={text_dim} must equal the text encoder's output width, "
            f"components.text_encoder.params.dim={width}; e.g. text_dim: {width}"
        )
    factors = (_attribute("vae", vae, "spatial_factor"), _attribute("vae", vae, "temporal_factor"))
    if factors != (fam.spatial_factor, fam.temporal_factor):
        videos = [n for n, f in LATENT_FAMILIES.items() if (f.spatial_factor, f.temporal_factor) == factors]
        raise ValueError(
            f"components.vae: {config.components['vae'].loader} builds a VAE with spatial factor {factors[0]} "
            f"and temporal factor {factors[1]}, but family {config.family!r} needs {fam.spatial_factor} and "
            f"{fam.temporal_factor}; e.g. family: {videos[0] if videos else 'wan2.1'}"
        )
    return modules


@dataclass(frozen=True)
class ComponentStats:
    """What a loaded component weighs and where it is."""

    class_name: str
    parameters: int
    """Number of parameter values."""
    bytes: int
    """Bytes of those values in their current dtype(s)."""
    dtype: torch.dtype | None
    """The parameters' dtype, or ``None`` if they are mixed."""
    device: torch.device | None
    """The parameters' device, or ``None`` if they are spread over several."""

    @property
    def bytes_by_dtype(self) -> dict[str, int]:
        """What the same parameters would weigh in each dtype of :data:`~infralens.pipelines.DTYPES`."""
        return {name: self.parameters * dtype.itemsize for name, dtype in DTYPES.items()}


def component_stats(module: nn.Module) -> ComponentStats:
    """Parameter count, bytes, dtype and device of a module.

    :param module: any ``nn.Module`` with parameters.
    :returns: a :class:`ComponentStats`.

    >>> stats = component_stats(nn.Linear(4, 2).to(torch.bfloat16))
    >>> stats.parameters, stats.bytes, stats.dtype, stats.bytes_by_dtype["float32"]
    (10, 20, torch.bfloat16, 40)
    """
    params = list(module.parameters()) if isinstance(module, nn.Module) else []
    if not params:
        raise ValueError(f"module must be a torch.nn.Module with parameters, e.g. nn.Linear(4, 2); got {module!r}")
    dtypes = {p.dtype for p in params}
    devices = {p.device for p in params}
    return ComponentStats(
        class_name=type(module).__name__,
        parameters=sum(p.numel() for p in params),
        bytes=sum(p.numel() * p.element_size() for p in params),
        dtype=dtypes.pop() if len(dtypes) == 1 else None,
        device=devices.pop() if len(devices) == 1 else None,
    )


def architecture_fingerprint(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    r"""A short hash of a state dict's key names and shapes, not its values: the architecture, whatever the weights.

    Two checkpoints of one architecture (different seeds, fine-tunes) share it;
    a different depth or width changes it. DiffSynth-Studio identifies a weight
    file this way instead of reading a class name from a config (an md5 over the
    sorted key names with their shapes, looked up in its table of known models);
    this function hashes the same information in its own format.

    :param weights: a module, or its ``state_dict()``.
    :returns: 16 hex digits.

    >>> a, b = nn.Linear(4, 2), nn.Linear(4, 2)
    >>> architecture_fingerprint(a) == architecture_fingerprint(b.state_dict())
    True
    >>> architecture_fingerprint(a) == architecture_fingerprint(nn.Linear(4, 3))
    False
    """
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"weights must be a module or a state dict of tensors, e.g. nn.Linear(4, 2); got {weights!r}")
    lines = sorted(f"{key}:{tuple(value.shape)}" for key, value in state.items())  # names and shapes, no values
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()[:16]
