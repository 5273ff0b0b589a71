r"""One record per model family and one per released model: every fact the book uses about them, once.

A **family** shares a VAE and a token layout: latent channels :math:`C`, the
spatial factor :math:`s` (and the temporal factor :math:`t_f` of a video VAE),
the latent normalisation constants, the denoiser's patch, the upstream pipeline
defaults the pages cite, and where each fact was checked. A **released model**
(a checkpoint: Wan 2.1 14B, Wan 2.1 1.3B, UMT5-XXL) adds what belongs to
weights: width, depth, heads. Every other module reads these records; no other
source file spells a family's numbers (a test greps for it).

diffusers keeps one config per model in the same spirit. Values are those of
the released configs as shipped in diffusers 0.42.1 and DiffSynth-Studio 2.1.12;
``tox -e upstream`` instantiates the upstream classes (tiny or on the meta
device) and compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

CHECKED_AGAINST = "diffusers 0.42.1, DiffSynth-Studio 2.1.12"
"""The upstream versions these records were compared with (see ``docs/_data/upstream.json``)."""


@dataclass(frozen=True)
class LatentScaling:
    """The normalisation constants of one family's VAE, in diffusers' config names."""

    scaling_factor: float | None = None
    """One factor for all channels (``vae.config.scaling_factor``), or ``None``."""
    shift_factor: float | None = None
    """Subtracted before scaling (``vae.config.shift_factor``; FLUX.1, SD3), or ``None``."""
    latents_mean: tuple[float, ...] | None = None
    r""":math:`\mu_c`, one per channel (``vae.config.latents_mean``; Wan), or ``None``."""
    latents_std: tuple[float, ...] | None = None
    r""":math:`\sigma_c`, one per channel (``vae.config.latents_std``; Wan), or ``None``."""

    def __post_init__(self):
        scalar, per_channel = self.scaling_factor is not None, self.latents_mean is not None
        if scalar == per_channel:
            raise ValueError(
                "give either scaling_factor (e.g. scaling_factor=0.18215) or latents_mean and latents_std "
                f"(one value per channel), not {'both' if scalar else 'neither'}"
            )
        if scalar and not self.scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, e.g. scaling_factor=0.18215; got {self.scaling_factor}")
        if per_channel and (self.latents_std is None or len(self.latents_std) != len(self.latents_mean)):
            n = len(self.latents_mean)
            raise ValueError(
                f"latents_std must have one value per channel like latents_mean ({n}); got {self.latents_std}"
            )
        if per_channel and not all(s > 0 for s in self.latents_std):
            raise ValueError(f"latents_std must be > 0 in every channel, e.g. (1.0, 2.0); got {self.latents_std}")

    @property
    def per_channel(self) -> bool:
        """``True`` for per-channel statistics, ``False`` for one scaling factor."""
        return self.latents_mean is not None


@dataclass(frozen=True)
class ScalingSource:
    """Where a family's scaling constants live upstream, and where pipelines apply them (diffusers 0.42.1)."""

    diffusers_source: str | None
    """``file:line`` in diffusers that holds the values, or ``None`` when the wheel has none."""
    in_wheel_as: str
    """How the wheel holds them: ``"default"`` (a class default), ``"docstring"`` (an example only) or ``"absent"``."""
    released_config: str
    """The released VAE config (Hub repository and file) that a pipeline actually loads them from."""
    encode_line: str
    r"""Where a pipeline applies :math:`(z - m)\,k` after ``vae.encode``."""
    decode_line: str
    r"""Where a pipeline applies :math:`\tilde z / k + m` before ``vae.decode``."""


@dataclass(frozen=True)
class FlowTemplate:
    """DiffSynth-Studio's flow-matching sigma template of a family (``diffusion/flow_match.py``)."""

    name: str
    """The template's name in DiffSynth-Studio (``"Wan"``, ``"FLUX.1"``)."""
    sigma_min: float
    r""":math:`\sigma_\text{min}`, where the even grid of sigmas ends."""
    shift: float
    """The default shift :math:`s`."""
    drops_last: bool
    """Whether the grid has :math:`N + 1` points and drops the last (Wan) or :math:`N` points (FLUX.1)."""


@dataclass(frozen=True)
class Family:
    """The shape contract of a family's VAE and denoiser, and the upstream defaults the book cites."""

    name: str
    """The family's key in :data:`LATENT_FAMILIES`."""
    channels: int
    """:math:`C`, latent channels of the released VAE."""
    spatial_factor: int
    """:math:`s`: pixels per latent cell along height and along width."""
    temporal_factor: int | None
    """:math:`t_f`: frames per latent frame after the first; ``None`` for image families."""
    vae_class: str
    """The VAE class that implements it in diffusers."""
    denoiser: str
    """``"unet"`` or ``"dit"``: the kind of denoiser the family's models use."""
    patch: tuple[int, int, int]
    """Latent cells per attention position ``(frames, height, width)``: the DiT's patch, or for a UNet the
    downsampling between the latent and its first self-attention block."""
    frame_step: int | None = None
    """Valid frame counts are ``1 + frame_step * k``; ``None`` means :attr:`temporal_factor`."""
    scaling: LatentScaling | None = None
    """The latent normalisation constants, where the book uses them."""
    scaling_source: ScalingSource | None = None
    """Their provenance in diffusers, where the book cites it."""
    flow_template: FlowTemplate | None = None
    """DiffSynth-Studio's sigma template for the family, if it has one."""
    pipeline_defaults: Mapping[str, object] = field(default_factory=lambda: MappingProxyType({}))
    """What DiffSynth-Studio's pipeline call uses when a demo call leaves an argument out (read-only)."""
    checked_against: str = CHECKED_AGAINST
    """The upstream versions these facts were compared with."""

    @property
    def is_video(self) -> bool:
        """Whether latents of this family have a frame axis."""
        return self.temporal_factor is not None

    @property
    def frames_multiple(self) -> int | None:
        """The step between valid frame counts ``1 + step * k`` (``None`` for image families)."""
        return self.frame_step or self.temporal_factor


@dataclass(frozen=True)
class ModelSpec:
    """A released checkpoint's architecture numbers (the argument names of the upstream class)."""

    name: str
    """The key in :data:`MODELS`."""
    family: str
    """Its family's key in :data:`LATENT_FAMILIES` (or ``"text"`` for a text encoder)."""
    upstream_class: str
    """The upstream class and library that builds it."""
    config: Mapping[str, object]
    """Constructor arguments of the upstream class (read-only)."""
    source: str | None = None
    """Where the numbers come from when no installed wheel holds them (a released config file)."""

    def __getitem__(self, key: str) -> object:
        return self.config[key]


_P = "pipelines/"
_WAN21_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)  # fmt: skip
_WAN21_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)  # fmt: skip
_WAN22_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)  # fmt: skip
_WAN22_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)  # fmt: skip

_WAN_DIFFSYNTH_DEFAULTS = MappingProxyType(
    {
        "height": 480,
        "width": 832,
        "num_frames": 81,
        "num_inference_steps": 50,
        "cfg_scale": 5.0,
        "sigma_shift": 5.0,
        "seed": None,
        "tiled": True,
        "tile_size": (30, 52),
        "tile_stride": (15, 26),
    }
)


def _families(*specs: Family) -> Mapping[str, Family]:
    return MappingProxyType({f.name: f for f in specs})


LATENT_FAMILIES: Mapping[str, Family] = _families(
    Family(
        "sd", channels=4, spatial_factor=8, temporal_factor=None, vae_class="AutoencoderKL", denoiser="unet",
        patch=(1, 1, 1),
        scaling=LatentScaling(scaling_factor=0.18215),
        scaling_source=ScalingSource(
            "models/autoencoders/autoencoder_kl.py:90", "default",
            "stable-diffusion-v1-5/stable-diffusion-v1-5 vae/config.json",
            _P + "stable_diffusion/pipeline_stable_diffusion_img2img.py:771",
            _P + "stable_diffusion/pipeline_stable_diffusion.py:1085",
        ),
    ),
    Family(
        "sdxl", channels=4, spatial_factor=8, temporal_factor=None, vae_class="AutoencoderKL", denoiser="unet",
        patch=(1, 2, 2),  # SDXL's first UNet block has no attention: its first self-attention is 2x down
        scaling=LatentScaling(scaling_factor=0.13025),
        scaling_source=ScalingSource(
            "utils/remote_utils.py:225", "docstring",
            "stabilityai/stable-diffusion-xl-base-1.0 vae/config.json",
            _P + "stable_diffusion_xl/pipeline_stable_diffusion_xl_img2img.py:751",
            _P + "stable_diffusion_xl/pipeline_stable_diffusion_xl.py:1287",
        ),
    ),
    Family(
        "sd3", channels=16, spatial_factor=8, temporal_factor=None, vae_class="AutoencoderKL", denoiser="dit",
        patch=(1, 2, 2),
        scaling=LatentScaling(scaling_factor=1.5305, shift_factor=0.0609),
        scaling_source=ScalingSource(
            None, "absent", "stabilityai/stable-diffusion-3-medium-diffusers vae/config.json",
            _P + "stable_diffusion_3/pipeline_stable_diffusion_3_img2img.py:702",
            _P + "stable_diffusion_3/pipeline_stable_diffusion_3.py:1141",
        ),
    ),
    Family(
        "flux", channels=16, spatial_factor=8, temporal_factor=None, vae_class="AutoencoderKL", denoiser="dit",
        patch=(1, 2, 2),
        scaling=LatentScaling(scaling_factor=0.3611, shift_factor=0.1159),
        scaling_source=ScalingSource(
            "utils/remote_utils.py:226", "docstring", "black-forest-labs/FLUX.1-dev vae/config.json",
            _P + "flux/pipeline_flux_img2img.py:474", _P + "flux/pipeline_flux.py:962",
        ),
        flow_template=FlowTemplate("FLUX.1", sigma_min=0.003 / 1.002, shift=3.0, drops_last=False),
    ),
    Family(
        "wan2.1", channels=16, spatial_factor=8, temporal_factor=4, vae_class="AutoencoderKLWan", denoiser="dit",
        patch=(1, 2, 2),
        scaling=LatentScaling(latents_mean=_WAN21_MEAN, latents_std=_WAN21_STD),
        scaling_source=ScalingSource(
            "models/autoencoders/autoencoder_kl_wan.py:990", "default",
            "Wan-AI/Wan2.1-T2V-1.3B-Diffusers vae/config.json",
            _P + "wan/pipeline_wan_i2v.py:462", _P + "wan/pipeline_wan.py:672",
        ),
        flow_template=FlowTemplate("Wan", sigma_min=0.0, shift=5.0, drops_last=True),
        pipeline_defaults=_WAN_DIFFSYNTH_DEFAULTS,
    ),
    Family(
        "wan2.2", channels=48, spatial_factor=16, temporal_factor=4, vae_class="AutoencoderKLWan", denoiser="dit",
        patch=(1, 2, 2),
        scaling=LatentScaling(latents_mean=_WAN22_MEAN, latents_std=_WAN22_STD),
        flow_template=FlowTemplate("Wan", sigma_min=0.0, shift=5.0, drops_last=True),
    ),
    Family(
        "hunyuanvideo", channels=16, spatial_factor=8, temporal_factor=4, vae_class="AutoencoderKLHunyuanVideo",
        denoiser="dit", patch=(1, 2, 2),
    ),
    # The decoder rebuilds latent frames two at a time: an even latent count L comes
    # back as 4L frames, not 1 + 4(L - 1), so only odd L, i.e. F = 1 + 8k, round-trips.
    Family(
        "cogvideox", channels=16, spatial_factor=8, temporal_factor=4, vae_class="AutoencoderKLCogVideoX",
        denoiser="dit", patch=(1, 2, 2), frame_step=8,
    ),
    Family(
        "ltxvideo", channels=128, spatial_factor=32, temporal_factor=8, vae_class="AutoencoderKLLTXVideo",
        denoiser="dit", patch=(1, 1, 1),
    ),
)  # fmt: skip
"""Every family's record, by name (read-only)."""


_WAN_T2V_14B = {
    "dim": 5120, "ffn_dim": 13824, "num_layers": 40, "num_heads": 40, "head_dim": 128,
    "in_dim": 16, "out_dim": 16, "text_dim": 4096, "freq_dim": 256, "patch_size": (1, 2, 2),
}  # fmt: skip
_WAN = "WanModel (DiffSynth-Studio), WanTransformer3DModel (diffusers)"
_WAN22_CONFIGS = "Wan-Video/Wan2.2 wan/configs/"
# Wan 2.2 A14B: two experts of the Wan 2.1 14B shape. Under "inference", the released sampling settings:
# ``boundary`` (a fraction of the 1000 training timesteps), ``sample_shift``, ``sample_steps``, and
# ``sample_guide_scale`` as ``(low-noise expert, high-noise expert)``, in that order, as the file writes it.


def _inference(**settings: object) -> Mapping[str, object]:
    return MappingProxyType(settings)


_WAN22_A14B = {
    **_WAN_T2V_14B, "experts": ("high_noise_model", "low_noise_model"), "vae": "wan2.1",
}  # fmt: skip

MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        "wan2.1-t2v-14b": ModelSpec("wan2.1-t2v-14b", "wan2.1", _WAN, MappingProxyType(_WAN_T2V_14B)),
        "wan2.1-t2v-1.3b": ModelSpec(
            "wan2.1-t2v-1.3b", "wan2.1", _WAN,
            MappingProxyType({**_WAN_T2V_14B, "dim": 1536, "ffn_dim": 8960, "num_layers": 30, "num_heads": 12}),
        ),
        "wan2.2-t2v-a14b": ModelSpec(
            "wan2.2-t2v-a14b", "wan2.1", _WAN,
            MappingProxyType({**_WAN22_A14B, "inference": _inference(
                boundary=0.875, sample_shift=12.0, sample_steps=40, sample_guide_scale=(3.0, 4.0),
            )}),
            source=_WAN22_CONFIGS + "wan_t2v_A14B.py",
        ),
        "wan2.2-i2v-a14b": ModelSpec(
            "wan2.2-i2v-a14b", "wan2.1", _WAN,
            MappingProxyType({**_WAN22_A14B, "in_dim": 36, "inference": _inference(
                boundary=0.900, sample_shift=5.0, sample_steps=40, sample_guide_scale=(3.5, 3.5),
            )}),
            source=_WAN22_CONFIGS + "wan_i2v_A14B.py",
        ),
        "wan2.2-ti2v-5b": ModelSpec(
            "wan2.2-ti2v-5b", "wan2.2", _WAN,
            MappingProxyType({"in_dim": 48, "out_dim": 48, "vae": "wan2.2", "inference": _inference(
                sample_shift=5.0, sample_steps=50, sample_guide_scale=5.0, frame_num=121, sample_fps=24,
            )}),
            source=_WAN22_CONFIGS + "wan_ti2v_5B.py",
        ),
        "wan2.1-vae": ModelSpec(
            "wan2.1-vae", "wan2.1", "AutoencoderKLWan (diffusers)",
            MappingProxyType({"params": 126_892_531}),  # counted on the meta device: no short closed formula
        ),
        "umt5-xxl": ModelSpec(
            "umt5-xxl", "text", "WanTextEncoder (DiffSynth-Studio)",
            MappingProxyType({
                "vocab": 256384, "dim": 4096, "dim_attn": 4096, "ffn_dim": 10240, "num_heads": 64,
                "num_layers": 24, "num_buckets": 32, "text_len": 512,
            }),
        ),
    }
)  # fmt: skip
"""Released models by name (read-only): architecture numbers from their upstream constructors."""


def get_family(family: str) -> Family:
    """Look a family up by name; an unknown name raises ``ValueError`` listing the known ones.

    >>> get_family("wan2.1").temporal_factor
    4
    """
    try:
        return LATENT_FAMILIES[family]
    except (KeyError, TypeError):
        known = ", ".join(map(repr, LATENT_FAMILIES))
        raise ValueError(f"family must be one of {known}; got {family!r}") from None


def get_model(name: str) -> ModelSpec:
    """Look a released model up by name; an unknown name raises ``ValueError`` listing the known ones.

    >>> get_model("wan2.1-t2v-1.3b")["num_heads"], get_model("wan2.1-t2v-14b")["num_heads"]
    (12, 40)
    >>> a14b = get_model("wan2.2-i2v-a14b")
    >>> a14b["inference"]["boundary"], a14b["experts"][0], a14b.source
    (0.9, 'high_noise_model', 'Wan-Video/Wan2.2 wan/configs/wan_i2v_A14B.py')
    """
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        known = ", ".join(map(repr, MODELS))
        raise ValueError(f"model must be one of {known}; got {name!r}") from None
