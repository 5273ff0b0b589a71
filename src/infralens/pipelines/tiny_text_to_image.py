r"""A miniature text-to-image pipeline: five components wired the way a diffusers pipeline wires them.

A diffusers pipeline is not a model; it is a graph of components that each
read one thing and produce another, listed in the pipeline's
``model_index.json`` and reachable as ``pipe.components``. This one has the
five of a latent text-to-image pipeline, each a tiny real object:

=============  ====================================================  ===============================
component      class                                                 reads -> produces
=============  ====================================================  ===============================
tokenizer      :class:`ByteTokenizer`                                prompts -> ids, mask ``(B, L)``
text_encoder   :class:`~infralens.nets.TinyTextEncoder`         ids, mask -> ``(B, L, D)``
transformer    :class:`~infralens.nets.TinyDiT`                 latents, t, text -> prediction
scheduler      :class:`~infralens.pipelines.TinyDDIMScheduler`       prediction, t, latents -> latents
vae            :class:`~infralens.nets.TinyAutoencoderKL`       latents -> images
=============  ====================================================  ===============================

:func:`component_table` runs the pipeline once and reports, for each
component, its class, its parameter count and the shapes it actually read
and produced, so the table is generated from the objects, never typed.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from infralens.core.args import positive_int
from infralens.diffusion import guided_prediction
from infralens.nets import TinyAutoencoderKL, TinyDiT, TinyTextEncoder, tokenize

from .ddim_scheduler import TinyDDIMScheduler

COMPONENT_NAMES = ("tokenizer", "text_encoder", "transformer", "scheduler", "vae")
"""The pipeline's components, in the order a call uses them."""


class ByteTokenizer:
    """The tokenizer component: prompts to ``(input_ids, attention_mask)``, both ``(B, L)``, no weights.

    Wraps :func:`~infralens.nets.tokenize` (UTF-8 bytes, an end token,
    padding to ``max_length``) in the callable object a pipeline holds.

    :param max_length: :math:`L`.

    >>> ids, mask = ByteTokenizer(max_length=8)(["hi"])
    >>> ids.shape, mask.sum().item()
    (torch.Size([1, 8]), 3)
    """

    def __init__(self, max_length: int = 24):
        self.max_length = positive_int("max_length", max_length, example=24)

    def __call__(self, prompts: str | Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(input_ids, attention_mask)``, each ``(B, L)``."""
        return tokenize(prompts, self.max_length)


@dataclass(frozen=True)
class ComponentRow:
    """One component of a pipeline, as observed during one call."""

    name: str
    """The pipeline attribute (``pipe.<name>``)."""
    class_name: str
    parameters: int
    """Parameter values (0 for the tokenizer and the scheduler: no weights)."""
    reads: tuple[tuple[str, tuple[int, ...]], ...]
    """``(argument, shape)`` of the first call's tensor inputs."""
    produces: tuple[int, ...]
    """Shape of the first call's output."""
    calls: int
    """Calls during the pipeline call."""


@dataclass
class _Recorder:
    rows: dict[str, dict] = field(default_factory=dict)

    def note(self, name: str, reads: dict[str, torch.Tensor], produces: torch.Tensor) -> None:
        row = self.rows.setdefault(name, {"calls": 0})
        row["calls"] += 1
        if row["calls"] == 1:
            row["reads"] = tuple((k, tuple(v.shape)) for k, v in reads.items())
            row["produces"] = tuple(produces.shape)


class TinyTextToImagePipeline:
    r"""``pipe(prompt) -> images (B, 3, H, W)`` in :math:`[0, 1]`, through tokenizer, text encoder, DiT, DDIM, VAE.

    :param tokenizer: prompts to ids and mask.
    :param text_encoder: ids and mask to ``(B, L, D_text)``.
    :param transformer: the denoiser, ``(latents, timesteps, text) -> prediction`` (epsilon).
    :param scheduler: ``set_timesteps`` / ``step``.
    :param vae: ``decode`` latents to pixels in :math:`[-1, 1]`.
    :param scaling_factor: :math:`k` of the VAE: latents are decoded as :math:`\tilde z / k`.

    >>> pipe = TinyTextToImagePipeline.from_seed(0)
    >>> pipe("a red fox", height=32, width=32, num_inference_steps=2).shape
    torch.Size([1, 3, 32, 32])
    """

    def __init__(
        self,
        tokenizer: ByteTokenizer,
        text_encoder: TinyTextEncoder,
        transformer: TinyDiT,
        scheduler: TinyDDIMScheduler,
        vae: TinyAutoencoderKL,
        scaling_factor: float,
    ):
        if text_encoder.dim != transformer.text_dim:
            raise ValueError(
                f"text_encoder.dim must equal transformer.text_dim (the width its cross-attention reads): "
                f"got {text_encoder.dim} and {transformer.text_dim}; e.g. TinyDiT(text_dim={text_encoder.dim})"
            )
        if vae.latent_channels != transformer.latent_channels:
            raise ValueError(
                f"vae.latent_channels must equal transformer.latent_channels: got {vae.latent_channels} and "
                f"{transformer.latent_channels}; e.g. TinyDiT(latent_channels={vae.latent_channels})"
            )
        if not isinstance(scaling_factor, int | float) or isinstance(scaling_factor, bool) or scaling_factor <= 0:
            raise ValueError(
                f"scaling_factor must be a number > 0, e.g. scaling_factor=0.18215; got {scaling_factor!r}"
            )
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.transformer = transformer
        self.scheduler = scheduler
        self.vae = vae
        self.scaling_factor = float(scaling_factor)
        self.vae_scale_factor = 2 ** (len(vae.block_out_channels) - 1)  # as diffusers' pipelines compute it
        self._recorder: _Recorder | None = None

    @classmethod
    def from_seed(cls, seed: int = 0) -> TinyTextToImagePipeline:
        """Build all five components with random weights fixed by ``seed``.

        The VAE's ``scaling_factor`` is measured the way Stable Diffusion's was:
        one over the standard deviation of its latents on a batch of images
        (seeded random images here, since the VAE was never trained).
        """
        vae = TinyAutoencoderKL(latent_channels=4, seed=seed)
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(8, 3, 32, 32, generator=g) * 2 - 1  # (8, 3, H, W) a calibration batch
        z = vae.encode(images).sample(g)  # (8, 4, H/8, W/8)
        return cls(
            tokenizer=ByteTokenizer(max_length=24),
            text_encoder=TinyTextEncoder(dim=48, max_length=24, seed=seed),
            transformer=TinyDiT(latent_channels=4, text_dim=48, dim=64, seed=seed),
            scheduler=TinyDDIMScheduler(),
            vae=vae,
            scaling_factor=1.0 / z.std().item(),
        )

    @property
    def components(self) -> dict[str, object]:
        """The component graph's nodes by name, as diffusers' ``pipe.components``."""
        return {name: getattr(self, name) for name in COMPONENT_NAMES}

    def _note(self, name: str, reads: dict[str, torch.Tensor], produces: torch.Tensor) -> None:
        if self._recorder is not None:
            self._recorder.note(name, reads, produces)

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        """Tokenizer then text encoder: ``(B, L, D_text)``, computed once per call of the pipeline."""
        ids, mask = self.tokenizer(prompts)  # (B, L), (B, L)
        self._note("tokenizer", {}, ids)
        return self.text_encoder(ids, mask)  # (B, L, D_text)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | Sequence[str],
        *,
        height: int = 64,
        width: int = 64,
        num_inference_steps: int = 4,
        guidance_scale: float = 1.0,
        negative_prompt: str = "",
        generator: torch.Generator | None = None,
        output_type: str = "pt",
    ) -> torch.Tensor:
        r"""Generate images for ``prompt``.

        :param prompt: one prompt or a list of :math:`B`.
        :param height: :math:`H` in pixels, a multiple of ``vae_scale_factor * patch_size``.
        :param width: :math:`W` in pixels, likewise.
        :param num_inference_steps: :math:`N`, denoiser calls without guidance.
        :param guidance_scale: :math:`w`; above 1 the denoiser runs on a doubled
            batch ``[negative, prompt]`` (classifier-free guidance).
        :param negative_prompt: the unconditional branch's prompt.
        :param generator: seeds the starting noise.
        :param output_type: ``"pt"`` for images ``(B, 3, H, W)`` in :math:`[0, 1]`, ``"latent"`` for the final latents.
        :returns: images or latents.
        """
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        B = len(prompts)
        step = self.vae_scale_factor * self.transformer.patch_size
        for name, size in (("height", height), ("width", width)):
            size = positive_int(name, size, example=64)
            if size % step:
                lo = size // step * step
                near = f"{lo} or {lo + step}" if lo else f"{step}"
                raise ValueError(
                    f"{name}={size} is not a multiple of vae_scale_factor * patch_size = {step}; nearest valid: {near}"
                )
        if output_type not in ("pt", "latent"):
            raise ValueError(f"output_type must be 'pt' or 'latent', e.g. output_type='pt'; got {output_type!r}")
        cfg = guidance_scale > 1.0
        # 1. the condition, once
        context = self.encode_prompt(prompts)  # (B, L, D_text)
        uncond = self.encode_prompt([negative_prompt] * B) if cfg else None  # (B, L, D_text)
        # 2. the time axis
        self.scheduler.set_timesteps(num_inference_steps)
        # 3. the starting latent: noise in the scaled latent space
        C, s = self.transformer.latent_channels, self.vae_scale_factor
        latents = torch.randn(B, C, height // s, width // s, generator=generator)  # (B, C, H/s, W/s)
        latents = latents * self.scheduler.init_noise_sigma
        # 4. the loop: one prediction per step (on a doubled batch with guidance), one scheduler step
        for t in self.scheduler.timesteps:
            model_input = self.scheduler.scale_model_input(latents, t)  # (B, C, H/s, W/s)
            timesteps = t.expand(B)  # (B,)
            if cfg:
                pred = guided_prediction(self.transformer, model_input, timesteps, context, uncond, guidance_scale)
            else:
                pred = self.transformer(model_input, timesteps, context)  # (B, C, H/s, W/s)
            new = self.scheduler.step(pred, t, latents)  # (B, C, H/s, W/s)
            self._note("scheduler", {"model_output": pred, "sample": latents}, new)
            latents = new
        if output_type == "latent":
            return latents
        # 5. undo the scaling, decode, map [-1, 1] to [0, 1]
        z = latents / self.scaling_factor  # (B, C, H/s, W/s)
        decoded = self.vae.decode(z)  # (B, 3, H, W)
        return (decoded / 2 + 0.5).clamp(0, 1)  # (B, 3, H, W)


def _hook(recorder: _Recorder, name: str, module: nn.Module):
    """A forward hook that notes a module's tensor arguments (by their ``forward`` names) and its output."""
    names = list(inspect.signature(module.forward).parameters)
    if name == "vae":
        names = ["latents"]  # the decoder's input

    def hook(_module, args, kwargs, output):
        reads = {names[i] if i < len(names) else f"arg {i}": a for i, a in enumerate(args) if torch.is_tensor(a)}
        reads.update({k: v for k, v in kwargs.items() if torch.is_tensor(v)})
        recorder.note(name, reads, output)

    return hook


def component_table(pipe: TinyTextToImagePipeline, prompt: str | Sequence[str], **kwargs) -> list[ComponentRow]:
    """Run ``pipe(prompt, **kwargs)`` once and describe each component from what it read and produced.

    The modules are watched with forward hooks (the text encoder, the
    transformer, and the VAE's decoder for ``vae``), so their rows show the
    real calls: with guidance, a doubled batch per step and two text-encoder
    calls. The tokenizer and the scheduler have no ``forward``; the pipeline
    records their inputs and outputs where it calls them.

    :param pipe: the pipeline.
    :param prompt: as for the pipeline.
    :param kwargs: the pipeline call's keyword arguments.
    :returns: one :class:`ComponentRow` per component, in :data:`COMPONENT_NAMES` order.
    """
    if not isinstance(pipe, TinyTextToImagePipeline):
        raise ValueError(
            f"pipe must be a TinyTextToImagePipeline, e.g. TinyTextToImagePipeline.from_seed(0); "
            f"got {type(pipe).__name__}"
        )
    recorder = _Recorder()
    watched = {"text_encoder": pipe.text_encoder, "transformer": pipe.transformer, "vae": pipe.vae.decoder}
    handles = [
        module.register_forward_hook(_hook(recorder, name, module), with_kwargs=True)
        for name, module in watched.items()
    ]
    pipe._recorder = recorder
    try:
        pipe(prompt, **kwargs)
    finally:
        pipe._recorder = None
        for handle in handles:
            handle.remove()
    seen = recorder.rows
    rows = []
    for name in COMPONENT_NAMES:
        obj = getattr(pipe, name)
        params = sum(p.numel() for p in obj.parameters()) if isinstance(obj, nn.Module) else 0
        r = seen.get(name, {"calls": 0, "reads": (), "produces": ()})
        rows.append(ComponentRow(name, type(obj).__name__, params, r["reads"], r["produces"], r["calls"]))
    return rows


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ",".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def format_component_table(rows: Sequence[ComponentRow]) -> str:
    """The rows as a text table: component, class, parameters, calls, the shapes it read and produced.

    Shapes are written without spaces, ``(1,4,8,8)``, to keep the table narrow.
    """
    head = ("component", "class", "params", "calls", "reads", "produces")
    cells = [
        (
            r.name,
            r.class_name,
            f"{r.parameters:,}",
            str(r.calls),
            " ".join(_shape(shape) for _, shape in r.reads) or "prompts",
            _shape(r.produces),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in [head, *cells]) for i in range(len(head))]
    right = {2, 3}
    lines = []
    for values in [head, *cells]:
        parts = [v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        lines.append(" ".join(parts).rstrip())
    return "\n".join(lines)
