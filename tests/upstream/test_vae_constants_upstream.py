"""Lab 05 facts against diffusers: every cited line of ``VAE_CONSTANTS``, the posterior, the spatial factor.

* each ``diffusers_source`` line holds the value (class defaults are also read
  from the signature), and a ``docstring`` value really sits in a docstring;
* SD3's constants are in no ``.py`` file of the wheel (the page says they come
  from the released config only);
* each ``encode_line`` applies ``(z - m) * k`` and each ``decode_line``
  ``z / k + m`` in the form the page quotes;
* ``DiagonalGaussian.sample`` equals diffusers' ``DiagonalGaussianDistribution.sample``
  for the same moments and generator;
* ``TinyAutoencoderKL`` and a tiny diffusers ``AutoencoderKL`` with the same
  block count give the same latent shape, and the pipelines'
  ``vae_scale_factor`` rule gives the same factor.
"""

from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")

from infralens.diffusion import VAE_CONSTANTS, DiagonalGaussian, TinyAutoencoderKL  # noqa: E402

pytestmark = pytest.mark.upstream
ROOT = Path(diffusers.__file__).parent


def _line(cited: str) -> str:
    path, number = cited.rsplit(":", 1)
    return (ROOT / path).read_text().splitlines()[int(number) - 1]


def test_the_checked_version():
    assert diffusers.__version__ == "0.42.1"


def test_class_defaults():
    kl = inspect.signature(diffusers.AutoencoderKL.__init__).parameters
    assert VAE_CONSTANTS["sd"].scaling.scaling_factor == kl["scaling_factor"].default
    assert "0.18215" in _line(VAE_CONSTANTS["sd"].diffusers_source)
    wan = inspect.signature(diffusers.AutoencoderKLWan.__init__).parameters
    ours = VAE_CONSTANTS["wan2.1"].scaling
    assert list(ours.latents_mean) == wan["latents_mean"].default
    assert list(ours.latents_std) == wan["latents_std"].default
    assert _line(VAE_CONSTANTS["wan2.1"].diffusers_source).strip().startswith("latents_mean:")


def test_docstring_values():
    lines = {name: _line(VAE_CONSTANTS[name].diffusers_source).strip() for name in ("sdxl", "flux")}
    assert lines == {"sdxl": "- SD XL: 0.13025", "flux": "- Flux: 0.3611"}
    path, number = VAE_CONSTANTS["flux"].diffusers_source.rsplit(":", 1)
    text = (ROOT / path).read_text().splitlines()
    shift = next(t.strip() for t in text[int(number) : int(number) + 6] if "Flux:" in t)
    assert shift == "- Flux: 0.1159" == f"- Flux: {VAE_CONSTANTS['flux'].scaling.shift_factor}"
    assert VAE_CONSTANTS["sdxl"].scaling.scaling_factor == 0.13025
    assert VAE_CONSTANTS["flux"].scaling.scaling_factor == 0.3611


def test_sd3_constants_are_not_in_the_wheel():
    c = VAE_CONSTANTS["sd3"]
    assert c.diffusers_source is None and c.in_wheel_as == "absent"
    hits = [p for p in ROOT.rglob("*.py") if "1.5305" in p.read_text() or "0.0609" in p.read_text()]
    assert hits == []


_SCALE = "self.vae.config.scaling_factor"
_SHIFT = "self.vae.config.shift_factor"


@pytest.mark.parametrize(
    ("family", "encode", "decode"),
    [
        ("sd", f"init_latents = {_SCALE} * init_latents", f"latents / {_SCALE}"),
        ("sdxl", f"init_latents = {_SCALE} * init_latents", f"latents = latents / {_SCALE}"),
        ("sd3", f"init_latents = (init_latents - {_SHIFT}) * {_SCALE}", f"latents = (latents / {_SCALE}) + {_SHIFT}"),
        (
            "flux",
            f"image_latents = (image_latents - {_SHIFT}) * {_SCALE}",
            f"latents = (latents / {_SCALE}) + {_SHIFT}",
        ),
        (
            "wan2.1",
            "latent_condition = (latent_condition - latents_mean) * latents_std",
            "latents = latents / latents_std + latents_mean",
        ),
    ],
)
def test_pipelines_apply_the_affine_pair_on_the_cited_lines(family, encode, decode):
    c = VAE_CONSTANTS[family]
    assert encode in _line(c.encode_line)
    assert decode in _line(c.decode_line)


def test_wan_pipeline_inverts_the_std_first():
    path, number = VAE_CONSTANTS["wan2.1"].decode_line.rsplit(":", 1)
    before = "\n".join((ROOT / path).read_text().splitlines()[int(number) - 6 : int(number)])
    assert "latents_std = 1.0 / torch.tensor(self.vae.config.latents_std)" in before


def test_sample_matches_diffusers():
    from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

    moments = torch.randn(2, 8, 4, 4) * 3
    ours, theirs = DiagonalGaussian(moments), DiagonalGaussianDistribution(moments)
    assert torch.equal(ours.mean, theirs.mean) and torch.equal(ours.std, theirs.std)
    assert torch.equal(ours.mode(), theirs.mode())
    a = ours.sample(torch.Generator().manual_seed(5))
    b = theirs.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("blocks", [(8, 16), (8, 16, 32, 32)])
def test_spatial_factor_matches_autoencoder_kl(blocks):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        real = diffusers.AutoencoderKL(
            block_out_channels=blocks,
            down_block_types=("DownEncoderBlock2D",) * len(blocks),
            up_block_types=("UpDecoderBlock2D",) * len(blocks),
            latent_channels=4,
            norm_num_groups=8,
        ).eval()
    ours = TinyAutoencoderKL(latent_channels=4, block_out_channels=blocks)
    x = torch.rand(1, 3, 64, 96) * 2 - 1
    with torch.no_grad():
        theirs = real.encode(x).latent_dist.mean
    assert theirs.shape == ours.encode(x).mean.shape
    assert ours.spatial_factor == 2 ** (len(real.config.block_out_channels) - 1)
