"""Lab 07 facts against the real packages: normalisation constants, where they are applied, causal chunking.

* ``LATENT_SCALING`` equals the constants shipped in diffusers 0.42.1 and
  DiffSynth-Studio 2.1.12 (read from class defaults or, for DiffSynth modules
  that need packages the upstream environment does not install, from the
  source's literals with ``ast``).
* DiffSynth's ``VideoVAE_.encode`` / ``decode`` apply exactly
  ``normalize_latents`` / ``denormalize_latents`` (the methods are compiled on
  their own and run on a stand-in ``self`` whose encoder and decoder are the
  identity), and they chunk frames as frame 0, then groups of four.
* A tiny ``AutoencoderKLWan`` is causal the way ``TinyCausalVideoVAE`` is:
  latent frame ``j`` depends on video frames ``<= 4j`` only.
"""

from __future__ import annotations

import ast
import inspect
import warnings
from types import SimpleNamespace

import pytest
import torch

from infralens.diffusion import LATENT_SCALING, denormalize_latents, normalize_latents
from infralens.video import TinyCausalVideoVAE

from ._diffsynth import package_dir

pytestmark = pytest.mark.upstream


def _literals(relative: str, cls: str, names: tuple[str, ...]) -> dict[str, object]:
    """Literal values assigned to ``names`` (plain or ``self.``) anywhere in class ``cls`` of a DiffSynth file."""
    tree = ast.parse((package_dir() / relative).read_text())
    found: dict[str, object] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for sub in ast.walk(node):
                if isinstance(sub, ast.Assign) and len(sub.targets) == 1:
                    target = sub.targets[0]
                    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", None)
                    if name in names and name not in found:
                        try:
                            found[name] = ast.literal_eval(sub.value)
                        except ValueError:
                            continue  # e.g. self.mean = torch.tensor(mean)
    assert set(found) == set(names), f"{cls} in {relative}: found {sorted(found)}"
    return found


def _method(relative: str, cls: str, name: str):
    """One method of a DiffSynth class compiled alone, with ``torch`` as its only global."""
    tree = ast.parse((package_dir() / relative).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    namespace: dict = {"torch": torch}
                    exec(compile(ast.Module([item], []), relative, "exec"), namespace)
                    return namespace[name]
    raise LookupError(f"{cls}.{name} not in diffsynth/{relative}")


def test_wan21_statistics_are_diffusers_defaults():
    diffusers = pytest.importorskip("diffusers")
    params = inspect.signature(diffusers.AutoencoderKLWan.__init__).parameters
    ours = LATENT_SCALING["wan2.1"]
    assert list(ours.latents_mean) == params["latents_mean"].default
    assert list(ours.latents_std) == params["latents_std"].default
    assert len(ours.latents_mean) == params["z_dim"].default == 16


@pytest.mark.parametrize(("family", "cls"), [("wan2.1", "WanVideoVAE"), ("wan2.2", "WanVideoVAE38")])
def test_wan_statistics_are_diffsynth_values(family, cls):
    values = _literals("models/wan_video_vae.py", cls, ("mean", "std"))
    assert list(LATENT_SCALING[family].latents_mean) == values["mean"]
    assert list(LATENT_SCALING[family].latents_std) == values["std"]


def test_scalar_factors():
    diffusers = pytest.importorskip("diffusers")
    sd = inspect.signature(diffusers.AutoencoderKL.__init__).parameters
    assert LATENT_SCALING["sd"].scaling_factor == sd["scaling_factor"].default
    assert LATENT_SCALING["sd"].shift_factor is None is sd["shift_factor"].default
    for cls in ("FluxVAEEncoder", "FluxVAEDecoder"):
        flux = _literals("models/flux_vae.py", cls, ("scaling_factor", "shift_factor"))
        assert (LATENT_SCALING["flux"].scaling_factor, LATENT_SCALING["flux"].shift_factor) == (
            flux["scaling_factor"],
            flux["shift_factor"],
        )
    configs = ast.literal_eval(
        next(
            node.value
            for node in ast.walk(ast.parse((package_dir() / "configs/model_configs.py").read_text()))
            if isinstance(node, ast.Assign) and "stable_diffusion_xl_vae" in ast.unparse(node.value)
        )
    )
    sdxl = [c for c in configs if c.get("model_name") == "stable_diffusion_xl_vae"]
    assert sdxl and {c["extra_kwargs"]["scaling_factor"] for c in sdxl} == {LATENT_SCALING["sdxl"].scaling_factor}


class _Identity:
    """Stand-in encoder/decoder of DiffSynth's VideoVAE_: returns its chunk and records the frame counts."""

    def __init__(self):
        self.chunks: list[int] = []

    def __call__(self, x, feat_cache=None, feat_idx=None):
        self.chunks.append(x.shape[2])
        return x, feat_cache, feat_idx


def test_diffsynth_wan_vae_normalises_like_infralens():
    encode = _method("models/wan_video_vae.py", "VideoVAE_", "encode")
    decode = _method("models/wan_video_vae.py", "VideoVAE_", "decode")
    stats = LATENT_SCALING["wan2.1"]
    mean, std = torch.tensor(stats.latents_mean), torch.tensor(stats.latents_std)
    scale = [mean, 1.0 / std]  # how WanVideoVAE builds it
    encoder, decoder = _Identity(), _Identity()
    me = SimpleNamespace(
        z_dim=16,
        encoder=encoder,
        decoder=decoder,
        conv1=lambda x: x,
        conv2=lambda x: x,
        clear_cache=lambda: None,
        _enc_feat_map=None,
        _feat_map=None,
    )
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(1, 32, 9, 2, 3, generator=g) * 2 + 0.5  # (B, 2C, F, h, w): mean and log-variance
    got = encode(me, raw, scale)
    assert encoder.chunks == [1, 4, 4]  # frame 0 alone, then groups of four
    assert torch.allclose(got, normalize_latents(raw[:, :16], "wan2.1"), atol=1e-5)
    z = torch.randn(1, 16, 3, 2, 3, generator=g)
    assert torch.allclose(decode(me, z, scale), denormalize_latents(z, "wan2.1"), atol=1e-5)
    assert decoder.chunks == [1, 1, 1]  # one latent frame at a time


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
