"""DiffSynth Lab 07 against DiffSynth-Studio and diffusers: the Wan VAE's default tiled decode and its chunking.

* ``WanVideoVAE.tiled_decode`` (what ``WanVideoPipeline.__call__`` uses by
  default) decodes the tiles :func:`infralens.memory.diffsynth_tiles` lists and
  blends them as :func:`infralens.memory.diffsynth_tiled_decode` does; the
  result differs from the one-pass decode; with the real decoder width, counted
  on the meta device, it costs 2.24 times the FLOPs at 480 by 832.
* Wan's VAE has no one-pass mode: the first call with an empty cache skips the
  temporal down- and upsampling, so the chunking defines the model.
* Frame counts that are not ``1 + 4k`` are cut silently, in both libraries.
* diffusers' ``AutoencoderKLWan`` tiles only after ``enable_tiling()`` and only
  latents larger than its tile.
* Image-to-video encodes a whole clip, the image followed by mid-grey frames (zeros in [-1, 1], not black).
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from infralens.memory import diffsynth_tile_coverage, diffsynth_tiled_decode, diffsynth_tiles

from ._diffsynth_wan import diffsynth_module, wan_video
from .test_vae_scaling_upstream import tiny_wan_vae

pytestmark = pytest.mark.upstream


class _TileRecorder(torch.nn.Module):
    """Stands in for VideoVAE_: records which latent box each tile is, returns zeros of the decoded shape."""

    def __init__(self):
        super().__init__()
        self.boxes = []

    def decode(self, z, scale):
        # the latent carries its own coordinates: channel 0 = row, channel 1 = column
        top, left = int(z[0, 0, 0, 0, 0]), int(z[0, 1, 0, 0, 0])
        self.boxes.append((top, top + z.shape[-2], left, left + z.shape[-1]))
        b, _, t, h, w = z.shape
        return torch.zeros(b, 3, 4 * t - 3, 8 * h, 8 * w)


@pytest.mark.parametrize(("height", "width"), [(60, 104), (90, 160), (37, 50)])
def test_default_tiles_are_diffsynth_tiles(height, width):
    """480x832 -> 9 tiles, 720x1280 -> 30, and a size that leaves cut tiles at the edges."""
    vae = tiny_wan_vae()
    vae.model = _TileRecorder()
    z = torch.zeros(1, 16, 2, height, width)
    z[:, 0] = torch.arange(height).view(-1, 1).float()
    z[:, 1] = torch.arange(width).float()
    vae.decode(z, device="cpu", tiled=True, tile_size=(30, 52), tile_stride=(15, 26))
    assert tuple(vae.model.boxes) == diffsynth_tiles(height, width)
    assert len(vae.model.boxes) == {(60, 104): 9, (90, 160): 30}.get((height, width), len(vae.model.boxes))


def test_infralens_blend_is_diffsynth_tiled_decode_and_not_the_one_pass_decode():
    vae = tiny_wan_vae()
    g = torch.Generator().manual_seed(0)
    z = torch.randn(1, 16, 1, 4, 6, generator=g)  # overlapping tiles, small: 6 of them
    kw = dict(tile_size=(2, 4), tile_stride=(1, 2))
    with torch.no_grad():
        theirs = vae.decode(z, device="cpu", tiled=True, **kw)
        ours = diffsynth_tiled_decode(lambda t: vae.model.decode(t, vae.scale), z, **kw)
        one_pass = vae.decode(z, device="cpu", tiled=False)
    assert len(diffsynth_tiles(4, 6, **kw)) == 6
    assert theirs.shape == one_pass.shape == (1, 3, 1, 32, 48)
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(theirs, one_pass, atol=1e-3)  # the tiles see zero padding at their own borders


def _decoder_flops(model, height: int, width: int, latent_frames: int = 2) -> int:
    with torch.device("meta"):
        z = torch.empty(1, 16, latent_frames, height, width)
        scale = [torch.zeros(16), torch.ones(16)]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.decode(z, scale)
    return counter.get_total_flops()


def test_the_default_tiles_cost_about_2_24_times_the_decoder_flops_at_480p():
    """The real decoder width (dim 96) on the meta device, 5 frames (2 latent frames) at 480 by 832."""
    vae = diffsynth_module("models.wan_video_vae")
    with torch.device("meta"):
        model = vae.VideoVAE_(dim=96, z_dim=16)
    whole = _decoder_flops(model, 60, 104)
    tiles = sum(
        _decoder_flops(model, bottom - top, right - left) for top, bottom, left, right in diffsynth_tiles(60, 104)
    )
    assert diffsynth_tile_coverage(60, 104) == 2.25
    assert round(tiles / whole, 2) == 2.24  # a little under the area: the decoder's attention is quadratic in it


def test_the_chunking_is_the_model():
    """Called once on the whole clip, the encoder and decoder skip their time resampling: no one-pass result."""
    m = tiny_wan_vae().model
    video = torch.rand(1, 3, 9, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    identity = [torch.zeros(16), torch.ones(16)]
    with torch.no_grad():
        chunked = m.encode(video, identity)  # frame 0, then frames 1-4, 5-8
        m.clear_cache()
        out, _, _ = m.encoder(video, feat_cache=m._enc_feat_map, feat_idx=[0])  # all nine frames in one call
        one_call = m.conv1(out).chunk(2, dim=1)[0]
        decoded = m.decode(chunked, identity)  # one latent frame per call
        m.clear_cache()
        whole, _, _ = m.decoder(m.conv2(chunked), feat_cache=m._feat_map, feat_idx=[0])
    assert chunked.shape[2] == 3 and one_call.shape[2] == 9  # no temporal compression in one call
    assert decoded.shape[2] == 9 and whole.shape[2] == 3  # no temporal upsampling in one call


@pytest.mark.parametrize(("frames", "latent_frames", "last_counts"), [(5, 2, True), (6, 2, False), (8, 2, False),
                                                                    (9, 3, True)])  # fmt: skip
def test_frame_counts_that_are_not_1_plus_4k_are_cut_silently(frames, latent_frames, last_counts):
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()
    ds = tiny_wan_vae().model
    identity = [torch.zeros(16), torch.ones(16)]
    g = torch.Generator().manual_seed(frames)
    video = torch.rand(1, 3, frames, 16, 16, generator=g) * 2 - 1
    changed = video.clone()
    changed[:, :, -1] = -changed[:, :, -1]  # only the last frame
    with torch.no_grad():
        a, b = ds.encode(video, identity), ds.encode(changed, identity)
        c, d = df.encode(video).latent_dist.mode(), df.encode(changed).latent_dist.mode()
    assert a.shape[2] == c.shape[2] == latent_frames
    assert (not torch.equal(a, b)) == (not torch.equal(c, d)) == last_counts


def test_diffusers_wan_vae_tiles_only_when_enabled_and_larger_than_a_tile():
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vae = diffusers.AutoencoderKLWan(base_dim=8, z_dim=16, num_res_blocks=1).eval()
    calls = []
    original = vae.tiled_decode
    vae.tiled_decode = lambda z, return_dict=True: calls.append(tuple(z.shape[-2:])) or original(z, return_dict)
    seen = {}
    with torch.no_grad():
        for enabled in (False, True):
            if enabled:
                vae.enable_tiling()
            for cells in (16, 34):  # the tile is 256 pixels: 32 latent cells
                calls.clear()
                vae.decode(torch.randn(1, 16, 1, cells, cells))
                seen[enabled, cells] = bool(calls)
    assert seen == {(False, 16): False, (False, 34): False, (True, 16): False, (True, 34): True}


def test_image_to_video_encodes_the_image_and_grey_frames_as_one_clip():
    """WanVideoUnit_ImageEmbedderVAE hands the VAE an F-frame clip (tiled by default), not one image."""
    PIL = pytest.importorskip("PIL.Image")
    wv = wan_video()
    seen = {}

    def encode(videos, device=None, tiled=None, tile_size=None, tile_stride=None):
        seen.update(clip=videos[0].clone(), tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)
        _, f, h, w = videos[0].shape  # (3, F, H, W)
        return torch.zeros(1, 16, (f - 1) // 4 + 1, h // 8, w // 8)

    base = diffsynth_module("diffusion.base_pipeline").BasePipeline
    pipe = SimpleNamespace(
        dit=SimpleNamespace(require_vae_embedding=True), device="cpu", torch_dtype=torch.float32,
        load_models_to_device=lambda names: None, vae=SimpleNamespace(encode=encode),
    )  # fmt: skip
    pipe.preprocess_image = lambda image: base.preprocess_image(pipe, image)
    image = PIL.new("RGB", (48, 32), (255, 0, 0))
    out = wv.WanVideoUnit_ImageEmbedderVAE().process(pipe, image, None, 9, 32, 48, True, (30, 52), (15, 26))
    clip = seen["clip"]
    assert clip.shape == (3, 9, 32, 48)  # (3, F, H, W): the whole clip
    assert clip[:, 1:].eq(0).all() and clip[0, 0].eq(1).all()  # frame 0 the image, then zeros
    black = pipe.preprocess_image(PIL.new("RGB", (48, 32), (0, 0, 0)))
    assert black.eq(-1).all()  # black is -1 in the VAE's range: the zeros are mid-grey, not black
    grey = base.vae_output_to_image(pipe, torch.zeros(1, 3, 32, 48))  # what the zeros are as pixels
    assert set(np.asarray(grey).flatten().tolist()) <= {127, 128}
    assert (seen["tiled"], seen["tile_size"], seen["tile_stride"]) == (True, (30, 52), (15, 26))
    assert out["y"].shape == (1, 4 + 16, 3, 4, 6)  # the frame mask's 4 channels, then the latent
