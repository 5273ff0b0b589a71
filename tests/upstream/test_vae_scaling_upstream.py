"""Lab 07 facts against the real packages: normalisation constants, where they are applied, causal chunking.

Everything runs upstream code on tiny modules (or reads the attributes a
constructor sets):

* ``LATENT_SCALING`` equals the constants diffusers 0.42.1's VAE configs and
  DiffSynth-Studio 2.1.12's VAE classes carry;
* DiffSynth's ``VideoVAE_.encode`` / ``decode`` (a tiny real one) apply exactly
  ``normalize_latents`` / ``denormalize_latents`` and chunk frames as frame 0,
  then groups of four; its FLUX.1 VAE applies the scalar pair of
  ``normalize_latents(..., "flux")`` on both sides;
* a tiny ``AutoencoderKLWan`` is causal the way ``TinyCausalVideoVAE`` is:
  latent frame ``j`` depends on video frames ``<= 4j`` only.
"""

from __future__ import annotations

import warnings

import pytest
import torch

from infralens.diffusion import LATENT_SCALING, denormalize_latents, normalize_latents
from infralens.nets import TinyCausalVideoVAE

from ._diffsynth_wan import diffsynth_module

pytestmark = pytest.mark.upstream


def tiny_wan_vae(dim: int = 8, cls: str = "WanVideoVAE"):
    """DiffSynth's WanVideoVAE wrapper (tiling, statistics) around a real VideoVAE_ of width ``dim``."""
    vae = diffsynth_module("models.wan_video_vae")
    real = vae.VideoVAE_
    vae.VideoVAE_ = lambda z_dim: real(dim=dim, z_dim=z_dim)  # the wrapper builds VideoVAE_(z_dim=...) itself
    try:
        torch.manual_seed(0)
        return getattr(vae, cls)()
    finally:
        vae.VideoVAE_ = real


def test_wan21_statistics_are_diffusers_defaults():
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = diffusers.AutoencoderKLWan(base_dim=8, num_res_blocks=1)  # tiny; the statistics are config defaults
    ours = LATENT_SCALING["wan2.1"]
    assert list(ours.latents_mean) == vae.config.latents_mean
    assert list(ours.latents_std) == vae.config.latents_std
    assert len(ours.latents_mean) == vae.config.z_dim == 16


@pytest.mark.parametrize(("family", "cls"), [("wan2.1", "WanVideoVAE"), ("wan2.2", "WanVideoVAE38")])
def test_wan_statistics_are_diffsynth_values(family, cls):
    if cls == "WanVideoVAE":
        vae = tiny_wan_vae()
    else:  # WanVideoVAE38 takes its width as an argument
        vae = diffsynth_module("models.wan_video_vae").WanVideoVAE38(dim=8)
    stats = LATENT_SCALING[family]
    assert torch.equal(vae.mean, torch.tensor(stats.latents_mean))
    assert torch.equal(vae.std, torch.tensor(stats.latents_std))
    assert vae.z_dim == len(stats.latents_mean)


def test_scalar_factors():
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sd = diffusers.AutoencoderKL(block_out_channels=(8,), norm_num_groups=4)  # the config defaults are SD's
    assert LATENT_SCALING["sd"].scaling_factor == sd.config.scaling_factor
    assert LATENT_SCALING["sd"].shift_factor is None is sd.config.shift_factor
    configs = diffsynth_module("configs.model_configs")
    sdxl = [c for cs in vars(configs).values() if isinstance(cs, list) for c in cs
            if isinstance(c, dict) and c.get("model_name") == "stable_diffusion_xl_vae"]  # fmt: skip
    assert sdxl and {c["extra_kwargs"]["scaling_factor"] for c in sdxl} == {LATENT_SCALING["sdxl"].scaling_factor}


class _StopError(Exception):
    pass


def _first_conv_input(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run ``module(x)`` up to its ``conv_in`` (or, for the encoder, its output) and return what it had computed."""
    seen = {}

    def stop(mod, args):
        seen["x"] = args[0]
        raise _StopError

    module.conv_in.register_forward_pre_hook(stop)
    try:
        module(x)
    except _StopError:
        pass
    return seen["x"]


def test_diffsynth_flux_vae_applies_the_scalar_pair_on_both_sides():
    """FluxVAEDecoder.forward maps z to z / scaling + shift before decoding; the encoder ends with the inverse."""
    flux = diffsynth_module("models.flux_vae")
    with torch.device("meta"):
        decoder, encoder = flux.FluxVAEDecoder(), flux.FluxVAEEncoder()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 4, 4, generator=g)
    assert torch.allclose(_first_conv_input(decoder, z), denormalize_latents(z, "flux"), atol=1e-6)
    raw = torch.randn(1, 32, 4, 4, generator=g)  # what the encoder's last conv would return: mean and log-variance
    encoder.conv_out = torch.nn.Identity()  # keep the real post-processing, skip the real network
    encoder.conv_in = torch.nn.Identity()
    encoder.blocks = torch.nn.ModuleList()
    encoder.conv_norm_out = torch.nn.Identity()
    encoder.conv_act = torch.nn.Identity()
    assert torch.allclose(encoder(raw), normalize_latents(raw[:, :16], "flux"), atol=1e-6)


def test_diffsynth_wan_vae_normalises_like_infralens():
    """VideoVAE_.encode with the Wan statistics == normalize_latents of its raw posterior mean; decode inverts it."""
    vae = tiny_wan_vae()
    chunks = []
    vae.model.encoder.register_forward_pre_hook(lambda m, args: chunks.append(args[0].shape[2]) and None)
    video = torch.rand(1, 3, 9, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    identity = [torch.zeros(16), torch.ones(16)]  # mean 0, 1/std 1: the raw posterior mean
    with torch.no_grad():
        normalised = vae.model.encode(video, vae.scale)
        raw = vae.model.encode(video, identity)
    assert chunks == [1, 4, 4, 1, 4, 4]  # frame 0 alone, then groups of four (twice: two encodes)
    assert normalised.shape == (1, 16, 3, 2, 2)
    assert torch.allclose(normalised, normalize_latents(raw, "wan2.1"), atol=1e-5)
    z = torch.randn(1, 16, 3, 2, 2, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = vae.model.decode(z, vae.scale)
        ours = vae.model.decode(denormalize_latents(z, "wan2.1"), identity)
    assert torch.allclose(theirs, ours, atol=1e-5)


def test_wan_vae_is_causal_like_ours():
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()
    ours = TinyCausalVideoVAE()
    g = torch.Generator().manual_seed(1)
    video = torch.rand(1, 3, 9, 16, 16, generator=g) * 2 - 1
    later = video.clone()
    later[:, :, 5:] = -video[:, :, 5:]  # change frames 5..8 only
    with torch.no_grad():
        a = theirs.encode(video).latent_dist.mode()
        b = theirs.encode(later).latent_dist.mode()
    c, d = ours.encode(video), ours.encode(later)
    assert a.shape == c.shape == (1, 16, 3, 2, 2)
    for before, after in ((a, b), (c, d)):
        assert torch.equal(before[:, :, :2], after[:, :, :2])  # latent frames 0 and 1 see frames <= 4
        assert not torch.allclose(before[:, :, 2], after[:, :, 2])
