"""DiffSynth Lab 06 against DiffSynth-Studio and diffusers: what a Wan video latent costs once it is tokens.

Everything here runs upstream code:

* the FLOPs of one DiT call, counted by torch's FLOP counter while
  DiffSynth-Studio's ``model_fn_wan_video`` runs a full-size ``WanModel`` on the
  meta device (no weights, no memory), equal to :func:`infralens.calculators.dit_flops`;
* the attention path DiffSynth runs here (torch's SDPA) allocating no score matrix;
* the fold of the VAE's 2-D layers, the sequence length, the 3-D RoPE split,
  the rounding of requests, Wan 2.2 TI2V's per-token timesteps, and the
  diffusers constructor defaults the page cites.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from infralens.attention import naive_attention
from infralens.calculators import dit_flops, latent_tokens
from infralens.families import get_model
from infralens.video import frames_to_batch

from ._diffsynth_wan import diffsynth_module, wan_video

pytestmark = pytest.mark.upstream


@cache
def meta_wan_model(name: str):
    """DiffSynth's WanModel with a released model's numbers, on the meta device, in bfloat16 (built once)."""
    c = get_model(name).config
    dit = diffsynth_module("models.wan_video_dit")
    with torch.device("meta"):
        return dit.WanModel(
            dim=c["dim"], in_dim=c["in_dim"], ffn_dim=c["ffn_dim"], out_dim=c["out_dim"], text_dim=c["text_dim"],
            freq_dim=c["freq_dim"], eps=1e-6, patch_size=c["patch_size"], num_heads=c["num_heads"],
            num_layers=c["num_layers"], has_image_input=False,
        ).to(torch.bfloat16)  # fmt: skip


@pytest.mark.parametrize(
    ("name", "request_", "batch"),
    [
        ("wan2.1-t2v-14b", (480, 832, 81), 1),
        ("wan2.1-t2v-14b", (720, 1280, 81), 1),
        ("wan2.1-t2v-14b", (480, 832, 161), 1),
        ("wan2.1-t2v-1.3b", (480, 832, 81), 1),
        ("wan2.1-t2v-1.3b", (480, 832, 81), 2),  # cfg_merge: both prompts in one call
    ],
)
def test_dit_flops_are_what_diffsynth_model_fn_spends(name, request_, batch):
    """The whole call through model_fn_wan_video, counted; attention = the batched matrix products."""
    wv = wan_video()
    height, width, frames = request_
    model = meta_wan_model(name)
    seen = {}

    def record(module, args):  # a pre-hook that returns nothing leaves the inputs as they are
        seen.setdefault("x", tuple(args[0].shape))

    handle = model.blocks[0].register_forward_pre_hook(record)
    with torch.device("meta"):
        latents = torch.empty(1, 16, (frames - 1) // 4 + 1, height // 8, width // 8, dtype=torch.bfloat16)
        context = torch.empty(batch, 512, 4096, dtype=torch.bfloat16)  # the padded prompt(s), text_dim wide
        timestep = torch.empty(1, dtype=torch.bfloat16)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = wv.model_fn_wan_video(dit=model, latents=latents, timestep=timestep, context=context)
    handle.remove()
    ours = dit_flops(name, height=height, width=width, frames=frames, batch=batch)
    assert seen["x"] == (batch, ours.tokens, get_model(name)["dim"])  # the sequence the blocks attend over
    assert out.shape == (batch, *latents.shape[1:])
    assert counter.get_total_flops() == ours.total
    products = counter.get_flop_counts()["Global"]
    assert sum(v for op, v in products.items() if "bmm" in str(op)) == ours.attention


def test_the_numbers_lab_06_states():
    """Per call and per default generation (100 calls), and attention's share, 14B and 1.3B."""
    a480 = dit_flops(height=480, width=832, frames=81)
    a720 = dit_flops(height=720, width=1280, frames=81)
    longer = dit_flops(height=480, width=832, frames=161)
    small = dit_flops("wan2.1-t2v-1.3b", height=480, width=832, frames=81)
    assert (round(a480.total / 1e15, 2), round(a720.total / 1e15, 2)) == (1.68, 6.52)
    assert (round(a480.attention_share, 3), round(a720.attention_share, 3)) == (0.532, 0.723)
    assert (round(a720.total / a480.total, 2), round(longer.total / a480.total, 2)) == (3.89, 2.93)
    assert (round(small.total / 1e15, 3), round(small.attention_share, 3)) == (0.283, 0.71)


class LargestOutput(TorchDispatchMode):
    """Records the element count of every tensor an aten op returns."""

    def __init__(self):
        super().__init__()
        self.numels: list[int] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else (out,):
            if isinstance(t, torch.Tensor):
                self.numels.append(t.numel())
        return out


def test_diffsynth_attention_falls_back_to_sdpa_which_stores_no_scores():
    """No FlashAttention or SageAttention here: flash_attention() runs torch's SDPA, which never holds N x N."""
    dit = diffsynth_module("models.wan_video_dit")
    assert not (dit.FLASH_ATTN_3_AVAILABLE or dit.FLASH_ATTN_2_AVAILABLE or dit.SAGE_ATTN_AVAILABLE)
    B, N, heads, d = 1, 1024, 2, 16
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(B, N, heads * d, generator=g) for _ in range(3))  # (B, N, h*d), DiffSynth's layout
    with LargestOutput() as sdpa, torch.no_grad():
        out = dit.flash_attention(q, k, v, num_heads=heads)
    scores = B * heads * N * N
    assert max(sdpa.numels) == q.numel() < scores  # the output (and per-row statistics) only
    split = q.view(B, N, heads, d).transpose(1, 2), k.view(B, N, heads, d).transpose(1, 2)
    with LargestOutput() as naive, torch.no_grad():
        ref = naive_attention(*split, v.view(B, N, heads, d).transpose(1, 2))
    assert max(naive.numels) == scores  # the score matrix, materialised
    assert torch.allclose(out, ref.transpose(1, 2).reshape(B, N, heads * d), atol=1e-5)


RSS_PROBE = r"""
import sys, torch
sys.path.insert(0, {tests!r})
from upstream._diffsynth import import_submodule


def status(field):  # kB, from the kernel's accounting of this process
    line = next(l for l in open("/proc/self/status") if l.startswith(field + ":"))
    return int(line.split()[1]) * 1024


flash_attention = import_submodule("models.wan_video_dit").flash_attention
g = torch.Generator().manual_seed(0)
n, d = 8192, 64
q, k, v = (torch.randn(1, n, d, generator=g) for _ in range(3))  # one head: (B, N, h*d)
open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to the current resident size
before = status("VmRSS")
with torch.no_grad():
    if {naive}:
        out = torch.softmax(q @ k.transpose(-1, -2) / d**0.5, -1) @ v
    else:
        out = flash_attention(q, k, v, num_heads=1)
print(status("VmHWM") - before)
"""


def test_diffsynth_attention_peak_process_memory_stays_far_below_one_score_matrix():
    """Measured as the process's peak resident memory (Linux VmHWM), which also sees a fused kernel's scratch."""
    if not Path("/proc/self/clear_refs").exists():
        pytest.skip("needs Linux /proc to reset and read a process's peak resident memory")
    tests = str(Path(__file__).resolve().parents[1])
    extra = {}
    for naive in (False, True):
        code = RSS_PROBE.format(tests=tests, naive=naive)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        extra[naive] = int(proc.stdout.split()[-1])
    scores = 8192**2 * 4  # one float32 score matrix: 256 MiB
    assert extra[True] >= scores  # the naive product holds it
    assert extra[False] < scores / 10  # DiffSynth's path does not


def test_wan_vae_2d_layers_fold_frames_like_frames_to_batch():
    """The Wan VAE's Resample folds (B, C, F, H, W) to (B*F, C, H, W) before its Conv2d: our fold, exactly."""
    vae = diffsynth_module("models.wan_video_vae")
    resample = vae.Resample(4, mode="downsample2d")
    seen = {}

    def record(name):
        def hook(module, args):
            seen[name] = args[0].clone()

        return hook

    resample.register_forward_pre_hook(record("video"))
    resample.resample.register_forward_pre_hook(record("folded"))
    with torch.no_grad():
        resample(torch.randn(2, 4, 3, 8, 8))
    assert torch.equal(seen["folded"], frames_to_batch(seen["video"]))  # (B*F', C, H', W')


def test_diffsynth_rounds_a_request_up_where_latent_tokens_refuses():
    wv = wan_video()
    pipe = wv.WanVideoPipeline(device="cpu", torch_dtype=torch.float32)
    assert pipe.check_resize_height_width(480, 854, 81, verbose=0) == (480, 864, 81)
    assert pipe.check_resize_height_width(720, 1280, 80, verbose=0) == (720, 1280, 81)
    for width, frames in ((854, 81), (832, 80)):
        with pytest.raises(ValueError):
            latent_tokens("wan2.1", height=480, width=width, frames=frames)
    assert latent_tokens("wan2.1", height=480, width=864, frames=81).tokens == 34020


def test_rope_gives_the_frame_axis_its_own_channels():
    """precompute_freqs_cis_3d(128): 22, 21 and 21 complex frequencies (44, 42, 42 channels) for f, h, w."""
    dit = diffsynth_module("models.wan_video_dit")
    f, h, w = dit.precompute_freqs_cis_3d(128)
    assert (f.shape[1], h.shape[1], w.shape[1]) == (22, 21, 21)
    assert 2 * (f.shape[1] + h.shape[1] + w.shape[1]) == 128


def test_wan22_ti2v_timesteps_index_tokens_not_samples():
    """With seperated_timestep and fuse_vae_embedding_in_latents (TI2V-5B), frame 0's tokens get t = 0."""
    wv = wan_video()
    dit = diffsynth_module("models.wan_video_dit")
    torch.manual_seed(0)
    model = dit.WanModel(
        dim=24, in_dim=16, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=2, num_layers=1, has_image_input=False, seperated_timestep=True, require_vae_embedding=False,
        require_clip_embedding=False, fuse_vae_embedding_in_latents=True,
    ).eval()  # fmt: skip
    seen = {}
    original = wv.sinusoidal_embedding_1d

    def spy(dim, position):
        seen["t"] = position.detach().clone()
        return original(dim, position)

    wv.sinusoidal_embedding_1d = spy
    try:
        with torch.no_grad():
            wv.model_fn_wan_video(
                dit=model, latents=torch.randn(1, 16, 3, 4, 6), timestep=torch.tensor([700.0]),
                context=torch.randn(1, 9, 32), fuse_vae_embedding_in_latents=True,
            )  # fmt: skip
    finally:
        wv.sinusoidal_embedding_1d = original
    per_frame = seen["t"].view(3, -1)  # (F', tokens per frame): one timestep per token
    assert per_frame.shape == (3, 2 * 3)
    assert per_frame[0].eq(0).all() and per_frame[1:].eq(700).all()


def test_diffusers_wan_transformer_defaults_are_the_14b():
    diffusers = pytest.importorskip("diffusers")
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")
        model = diffusers.WanTransformer3DModel()
    c = model.config
    assert (c.num_attention_heads, c.attention_head_dim, c.num_layers, c.ffn_dim) == (40, 128, 40, 13824)
    assert tuple(c.patch_size) == (1, 2, 2)
    spec = get_model("wan2.1-t2v-14b")
    assert (spec["num_heads"], spec["head_dim"], spec["num_layers"], spec["ffn_dim"]) == (40, 128, 40, 13824)
