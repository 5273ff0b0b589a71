r"""The miniature text-to-video pipeline, end to end: config, components, prompt, flow-matching loop, VAE decode.

:func:`run_text_to_video` follows the order of DiffSynth-Studio's
``WanVideoPipeline.__call__`` with the tiny components of a
:class:`~infralens.pipelines.PipelineConfig`:

1. **load**: the three components (:func:`~infralens.pipelines.load_components`);
2. **text encoding**: the prompt, and the negative prompt when guidance is on,
   become ``(B, L, D)`` contexts in the text encoder's dtype, then are cast to
   the DiT's dtype and device;
3. **noise**: ``(B, C, F', H', W')`` drawn in float32 on the CPU from the seed,
   then cast to the runtime dtype and device (as DiffSynth's ``generate_noise``);
4. **denoising loop**: for each of the :math:`N` Wan sigmas, one DiT call per
   prompt, the guidance combination and one Euler step:

   .. math:: \hat v = \hat v_\varnothing + w\,(\hat v_c - \hat v_\varnothing), \qquad
      x \leftarrow x + (\sigma_{i+1} - \sigma_i)\,\hat v, \quad \sigma_N = 0;

5. **decoding**: the latent is un-normalised with the family's constants and
   decoded by the VAE to ``(B, 3, F, H, W)``.

Under ``runtime.offload: model`` each stage moves its component to its device
and the others to the CPU before it runs (DiffSynth's ``load_models_to_device``);
``resident`` leaves every component where it was loaded. Every boundary is
recorded in a :class:`~infralens.pipelines.Tracer` if one is given.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from infralens.diffusion import LATENT_SCALING, cfg_combine, denormalize_latents, flow_euler_step, flow_sigmas

from .config import COMPONENTS, PipelineConfig
from .registry import load_components
from .trace import Tracer

OFFLOAD_DEVICE = torch.device("cpu")
"""Where ``runtime.offload: model`` parks the components a stage does not use."""


def _onload(config: PipelineConfig, modules: Mapping[str, nn.Module], names: tuple[str, ...]) -> None:
    """Put the components ``names`` on their devices and, under model offload, every other one on the CPU."""
    if config.runtime.offload == "resident":
        return
    for name, module in modules.items():
        module.to(config.components[name].device if name in names else OFFLOAD_DEVICE)


def run_text_to_video(
    config: PipelineConfig,
    prompt: str,
    negative_prompt: str = "",
    *,
    modules: Mapping[str, nn.Module] | None = None,
    tracer: Tracer | None = None,
) -> torch.Tensor:
    r"""Generate one video from ``prompt`` with the miniature pipeline ``config`` describes.

    :param config: from :func:`~infralens.pipelines.load_config`; ``runtime.offload`` must be
        ``"resident"`` or ``"model"`` (this runner moves whole components).
    :param prompt: the text to condition on.
    :param negative_prompt: the text guidance steers away from (used when ``guidance_scale != 1``).
    :param modules: already loaded components by role; loaded from ``config`` when ``None``.
    :param tracer: records the shape, dtype and device at every boundary.
    :returns: the video ``(1, 3, num_frames, height, width)`` in the VAE's dtype, values in :math:`[-1, 1]`.

    >>> import pathlib, infralens
    >>> from infralens.pipelines import load_config
    >>> root = pathlib.Path(infralens.__file__).parents[2]
    >>> cfg = load_config(root / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml")
    >>> run_text_to_video(cfg, "a red fox").shape
    torch.Size([1, 3, 9, 32, 48])
    """
    if not isinstance(config, PipelineConfig):
        raise ValueError(f"config must be a PipelineConfig, e.g. load_config('pipeline_config.yaml'); got {config!r}")
    for name, text in (("prompt", prompt), ("negative_prompt", negative_prompt)):
        if not isinstance(text, str):
            raise ValueError(f"{name} must be a string, e.g. {name}='a red fox'; got {text!r}")
    rt = config.runtime
    if rt.offload not in ("resident", "model"):
        raise ValueError(
            f"runtime.offload={rt.offload!r} is not run by this runner, which moves whole components: use "
            "resident or model (stage_residency plans layer offload without running it)"
        )
    if config.family not in LATENT_SCALING:
        raise ValueError(
            f"family {config.family!r} has no latent constants in LATENT_SCALING to decode with; e.g. family: wan2.1"
        )
    if modules is not None and any(name not in modules for name in COMPONENTS):
        raise ValueError(f"modules must hold every component, {', '.join(COMPONENTS)}; got {sorted(modules)}")
    trace = tracer if tracer is not None else Tracer()
    specs = config.components
    guided = rt.guidance_scale != 1

    with trace.stage("load"):
        modules = load_components(config) if modules is None else modules
        for name in COMPONENTS:
            trace.record(f"{name} weights", modules[name])
    te, dit, vae = (modules[name] for name in COMPONENTS)

    with torch.no_grad():
        with trace.stage("text encoding"), trace.watch(te, "text_encoder"):
            _onload(config, modules, ("text_encoder",))
            contexts = [te.encode(prompt)]  # (1, L, D) in the text encoder's dtype
            if guided:  # a second call only with guidance
                contexts.append(te.encode(negative_prompt))  # (1, L, D)
            for k, c in enumerate(contexts):
                contexts[k] = c.to(dtype=specs["dit"].dtype, device=specs["dit"].device)  # (1, L, D) for the DiT
                trace.record("context -> dit dtype", contexts[k])
            context, negative = contexts[0], contexts[-1]

        with trace.stage("noise"):
            generator = torch.Generator("cpu").manual_seed(rt.seed)
            noise = torch.randn(config.latent_shape, generator=generator, dtype=torch.float32)  # (1, C, F', H', W')
            trace.record("noise", noise)
            latents = noise.to(dtype=rt.dtype, device=rt.device)  # the loop state, in the runtime dtype
            trace.record("latents", latents)
            sigmas = flow_sigmas("Wan", rt.num_inference_steps, shift=rt.shift)  # (N,)
            trace.record("sigmas", sigmas)

        with trace.stage("denoising loop"), trace.watch(dit, "dit"):
            _onload(config, modules, ("dit",))
            for i, sigma in enumerate(sigmas.tolist()):
                sigma_next = sigmas[i + 1].item() if i + 1 < len(sigmas) else 0.0
                timestep = torch.full((latents.shape[0],), 1000.0 * sigma, dtype=rt.dtype, device=rt.device)  # (B,)
                x = latents.to(dtype=specs["dit"].dtype, device=specs["dit"].device)  # (B, C, F', H', W')
                v = dit(x, timestep, context)  # (B, C, F', H', W')
                if guided:
                    v_neg = dit(x, timestep, negative)  # (B, C, F', H', W')
                    # v = v_neg + w (v_cond - v_neg)
                    v = cfg_combine(v_neg, v, rt.guidance_scale)
                    trace.record("cfg: v", v)
                # x <- x + (sigma_next - sigma) v, in the latents' dtype
                latents = flow_euler_step(latents, v.to(dtype=latents.dtype, device=latents.device), sigma, sigma_next)
                trace.record("euler step: latents", latents)

        with trace.stage("decoding"):
            _onload(config, modules, ("vae",))
            z = denormalize_latents(latents, config.family)  # z = sigma_c * latents + mu_c, per channel
            z = z.to(dtype=specs["vae"].dtype, device=specs["vae"].device)  # (B, C, F', H', W')
            trace.record("vae in: latents", z)
            video = vae.decode(z)  # (B, 3, F, H, W)
            trace.record("vae out: video", video)
            _onload(config, modules, ())
    return video
