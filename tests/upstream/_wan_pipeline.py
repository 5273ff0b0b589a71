"""Run DiffSynth-Studio's own ``WanVideoPipeline`` on tiny modules: loading, units, loop, scheduler.

What runs is DiffSynth-Studio's code: ``WanVideoPipeline.from_pretrained`` with its
``ModelPool`` (the file is hashed and looked up in ``MODEL_CONFIGS``), ``load_model``,
the pipeline units, ``__call__``'s denoising loop, ``FlowMatchScheduler`` and
``model_fn_wan_video`` on DiffSynth's ``WanModel``. Nothing is downloaded:

* the DiT is a tiny ``WanModel`` saved as safetensors, and its key-and-shape hash
  is appended to ``MODEL_CONFIGS`` for the length of a ``with registered(...)``
  block, exactly as a released checkpoint's hash sits there;
* the tokenizer, text encoder and VAE are stand-ins with the interfaces the units
  call (ids and a mask; a ``(B, L, text_dim)`` embedding; ``encode``/``decode``).
  The VAE hands the final latents back from ``decode``, so runs can be compared.

``pipelines/wan_video.py`` imports torchvision, imageio, ftfy, modelscope and pandas
at module level (image I/O, CLIP preprocessing, downloads); this environment does
not install them (torchvision's wheels do not load next to the pinned CPU torch).
They are stood in by mock modules only while that import runs and are removed
from ``sys.modules`` afterwards, so no other test sees them.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.machinery
import io
import sys
import types
from pathlib import Path
from unittest import mock

import pytest
import torch

from ._diffsynth import import_submodule

_MISSING = (
    "torchvision",
    "torchvision.transforms",
    "torchvision.transforms.functional",
    "torchvision.io",
    "imageio",
    "imageio.v3",
    "pandas",
    "ftfy",
    "modelscope",
)

TINY_DIT = dict(
    dim=24,
    in_dim=16,
    ffn_dim=48,
    out_dim=16,
    text_dim=32,
    freq_dim=32,
    eps=1e-6,
    patch_size=[1, 2, 2],
    num_heads=2,
    num_layers=1,
    has_image_input=False,
)
"""A ``WanModel`` text-to-video DiT with the 1.3B's layout at width 24 (its ``extra_kwargs``)."""


def _settle_availability_checks() -> None:
    """Let transformers and diffusers record, before any stand-in exists, that these packages are missing.

    Both cache "is torchvision available" (``lru_cache``, a module constant): asked
    while a stand-in sits in ``sys.modules``, they would answer yes for the session.
    """
    for name in ("transformers.utils.import_utils", "diffusers.utils.import_utils"):
        try:
            checks = importlib.import_module(name)
        except ImportError:
            continue
        for missing in ("torchvision", "pandas", "ftfy", "imageio"):
            check = getattr(checks, f"is_{missing}_available", None)
            if callable(check):
                check()


def _import_pipeline(dotted: str):
    """A DiffSynth pipeline module, imported with the packages it cannot load stood in meanwhile."""
    pytest.importorskip("einops")
    pytest.importorskip("safetensors")
    _settle_availability_checks()
    stubs = {}
    for name in _MISSING:
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
        except Exception:  # not installed, or not importable next to this torch
            stub = mock.MagicMock(name=name)
            stub.__spec__ = importlib.machinery.ModuleSpec(name, None)
            stub.__path__ = []
            sys.modules[name] = stubs[name] = stub
    for name in [n for n in sys.modules if n == "diffsynth" or n.startswith("diffsynth.")]:
        if getattr(sys.modules[name], "__file__", None) is None:
            # registered bare by an earlier import_submodule(...): the pipeline needs the real package's names
            del sys.modules[name]
    try:
        return import_submodule(dotted, bare=())
    finally:
        for name, stub in stubs.items():
            if sys.modules.get(name) is stub:
                del sys.modules[name]


@functools.cache
def wan_video():
    """``diffsynth.pipelines.wan_video``, imported once."""
    return _import_pipeline("pipelines.wan_video")


@functools.cache
def flux_image():
    """``diffsynth.pipelines.flux_image``, imported once (after the Wan pipeline, which shares its modules)."""
    wan_video()
    return _import_pipeline("pipelines.flux_image")


def module(dotted: str):
    """A DiffSynth module the pipeline imported, e.g. ``"models.model_loader"``."""
    wan_video()
    return sys.modules[f"diffsynth.{dotted}"]


def model_config(**fields):
    return module("core.loader.config").ModelConfig(**fields)


def save_tiny_dit(path: Path, *, seed: int = 0, dtype: torch.dtype = torch.bfloat16, **overrides) -> str:
    """Save a tiny ``WanModel`` (``TINY_DIT`` plus ``overrides``) to ``path`` as safetensors; return the path."""
    from safetensors.torch import save_file

    WanModel = module("models.wan_video_dit").WanModel
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = WanModel(**{**TINY_DIT, **overrides})
    save_file({k: v.to(dtype).contiguous() for k, v in model.state_dict().items()}, str(path))
    return str(path)


@contextlib.contextmanager
def registered(
    path: str,
    *,
    model_name: str = "wan_video_dit",
    model_class: str = "diffsynth.models.wan_video_dit.WanModel",
    extra_kwargs: dict | None = None,
    **overrides,
):
    """Append the file's hash to ``MODEL_CONFIGS`` (a ``WanModel`` with ``TINY_DIT | overrides`` unless told
    otherwise); remove it after."""
    entry = {
        "model_hash": module("core.loader.file").hash_model_file(path),
        "model_name": model_name,
        "model_class": model_class,
        "extra_kwargs": dict(extra_kwargs) if extra_kwargs is not None else {**TINY_DIT, **overrides},
    }
    configs = module("models.model_loader").MODEL_CONFIGS
    if any(e["model_hash"] == entry["model_hash"] for e in configs):  # a second entry would load the file twice
        yield next(e for e in configs if e["model_hash"] == entry["model_hash"])
        return
    configs.append(entry)
    try:
        yield entry
    finally:
        configs.remove(entry)


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with its prints captured; return ``(result, printed text)``."""
    with contextlib.redirect_stdout(io.StringIO()) as buf:
        out = fn(*args, **kwargs)
    return out, buf.getvalue()


def from_pretrained(*configs, **kwargs):
    """``WanVideoPipeline.from_pretrained`` on local files only (no tokenizer download), on the CPU."""
    kwargs.setdefault("device", "cpu")
    kwargs.setdefault("tokenizer_config", None)
    pipe, _ = quiet(wan_video().WanVideoPipeline.from_pretrained, model_configs=list(configs), **kwargs)
    return pipe


class Tokenizer:
    """Wan's ``HuggingfaceTokenizer`` interface: ids and mask padded to ``seq_len`` (512), ``real`` tokens set."""

    def __init__(self, real: int = 7, seq_len: int = 512):
        self.real, self.seq_len = real, seq_len

    def __call__(self, prompt, return_mask=True, add_special_tokens=True):
        mask = torch.zeros(1, self.seq_len, dtype=torch.long)
        mask[:, : self.real] = 1
        ids = torch.zeros(1, self.seq_len, dtype=torch.long)
        ids[:, : self.real] = torch.arange(1, self.real + 1) + sum(map(ord, prompt)) % 1000
        return ids, mask


class TextEncoder(torch.nn.Module):
    """A ``(B, L, width)`` embedding of the ids in ``dtype``; different prompts give different embeddings."""

    def __init__(self, width: int = TINY_DIT["text_dim"], dtype: torch.dtype = torch.float32):
        super().__init__()
        self.width, self.dtype = width, dtype

    def forward(self, ids, mask):
        g = torch.Generator().manual_seed(int(ids[0, 0]))
        return torch.randn(ids.shape[0], ids.shape[1], self.width, generator=g).to(self.dtype)


class VAE:
    """``WanVideoVAE``'s interface for text-to-video: 16 latent channels, 8x upsampling; ``decode`` returns latents."""

    model = types.SimpleNamespace(z_dim=16)
    upsampling_factor = 8

    def __init__(self):
        self.decoded_with: dict = {}

    def decode(self, latents, device=None, tiled=None, tile_size=None, tile_stride=None):
        self.decoded_with = dict(tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)
        return latents.clone()

    def encode(self, videos, device=None, tiled=None, tile_size=None, tile_stride=None):
        """A seeded ``(16, F', H/8, W/8)`` latent per video ``(3, F, H, W)``, F' = 1 + (F - 1) // 4."""
        g = torch.Generator().manual_seed(3)
        return [
            torch.randn(16, 1 + (v.shape[1] - 1) // 4, v.shape[2] // 8, v.shape[3] // 8, generator=g) for v in videos
        ]


class ImageEncoder:
    """``WanImageEncoder``'s interface: 257 CLIP tokens of width 1280 per image (1 class token + 16 x 16 patches)."""

    def encode_image(self, images):
        g = torch.Generator().manual_seed(4)
        return torch.randn(len(images), 257, 1280, generator=g)


def attach_standins(pipe, *, text_dtype: torch.dtype | None = None, real_tokens: int = 7):
    """Give a loaded pipeline the stand-in tokenizer, text encoder (in ``text_dtype``) and VAE."""
    pipe.tokenizer = Tokenizer(real_tokens)
    pipe.text_encoder = TextEncoder(dtype=text_dtype or pipe.torch_dtype)
    pipe.vae = VAE()
    return pipe


class Recorder:
    """Wraps ``pipe.model_fn`` and ``pipe.load_models_to_device`` and records every call."""

    def __init__(self, pipe):
        self.calls: list[dict] = []
        self.loads: list[tuple[str, ...]] = []
        model_fn, load = pipe.model_fn, pipe.load_models_to_device

        def counting_model_fn(**kw):
            self.calls.append(
                dict(
                    dit=kw["dit"],
                    latents=tuple(kw["latents"].shape),
                    context=tuple(kw["context"].shape),
                    timestep=kw["timestep"].detach().clone(),
                    y=kw.get("y"),
                    clip_feature=kw.get("clip_feature"),
                    context_tensor=kw["context"],
                )
            )
            return model_fn(**kw)

        def recording_load(names):
            self.loads.append(tuple(names))
            return load(names)

        pipe.model_fn = counting_model_fn
        pipe.load_models_to_device = recording_load


def call(pipe, **kwargs):
    """``pipe(prompt=..., **kwargs)`` with floating-point output and no progress bar; ``(latents, printed)``."""
    kwargs.setdefault("prompt", "a cat")
    return quiet(pipe, output_type="floatpoint", progress_bar_cmd=lambda steps: steps, **kwargs)
