"""DiffSynth-Studio's ``WanVideoPipeline`` run end to end on tiny modules: what a bare call does.

The pipeline is built by its own ``from_pretrained`` (no model files, a tiny
word-level tokenizer saved to a temporary folder, ``device="cpu"``), then given
tiny real DiffSynth models: a ``WanTextEncoder``, a ``WanModel`` and a
``WanVideoVAE``. Its ``__call__`` then runs unchanged: the shape check, the
noise, the prompt units, the loop with DiffSynth's scheduler and guidance line,
and the decode. Where a full-size request would be too slow (a bare call is 81
frames at 480 by 832), the DiT and the VAE are replaced by recording stand-ins
and everything else still runs.

DiffSynth Labs 07 and 10 and the DiffSynth handbook cite these tests.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from infralens.diffusion import flow_sigmas, latent_shape
from infralens.pipelines import DIFFSYNTH_WAN_DEFAULTS, load_components, load_config, run_text_to_video

from ._diffsynth_wan import diffsynth_module, wan_video

pytestmark = pytest.mark.upstream

WORDS = "a cat red fox running through snow the over".split()
TEXT_DIM = 32


@cache
def tokenizer_dir() -> str:
    """A word-level tokenizer saved where ``AutoTokenizer.from_pretrained`` finds it (nothing downloaded)."""
    tokenizers = pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(WORDS)}}
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    path = tempfile.mkdtemp(prefix="tiny-wan-tokenizer-")
    fast.save_pretrained(path)
    return path


def quiet(fn, *args, **kwargs):
    """Call ``fn`` with its prints (download tips, rounding notes) captured; return (result, printed text)."""
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = fn(*args, **kwargs)
    return result, out.getvalue()


def tiny_pipeline(dtype: torch.dtype = torch.bfloat16):
    """``WanVideoPipeline.from_pretrained`` with no model files, then tiny real DiffSynth models assigned."""
    wv = wan_video()
    ModelConfig = diffsynth_module("core.loader.config").ModelConfig
    pipe, _ = quiet(
        wv.WanVideoPipeline.from_pretrained, torch_dtype=dtype, device="cpu", model_configs=[],
        tokenizer_config=ModelConfig(path=tokenizer_dir(), skip_download=True),
    )  # fmt: skip
    pipe.tokenizer.clean = None  # 'whitespace' cleaning calls ftfy, which this environment does not install
    torch.manual_seed(0)
    text = diffsynth_module("models.wan_video_text_encoder")
    pipe.text_encoder = text.WanTextEncoder(
        vocab=len(WORDS) + 3, dim=TEXT_DIM, dim_attn=TEXT_DIM, dim_ffn=64, num_heads=2, num_layers=1, num_buckets=8,
    ).eval().to(dtype)  # fmt: skip
    dit = diffsynth_module("models.wan_video_dit")
    pipe.dit = dit.WanModel(
        dim=24, in_dim=16, ffn_dim=48, out_dim=16, text_dim=TEXT_DIM, freq_dim=32, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=2, num_layers=1, has_image_input=False,
    ).eval().to(dtype)  # fmt: skip
    vae = diffsynth_module("models.wan_video_vae")
    real = vae.VideoVAE_
    vae.VideoVAE_ = lambda z_dim: real(dim=8, z_dim=z_dim)
    try:
        pipe.vae = vae.WanVideoVAE().to(dtype)
    finally:
        vae.VideoVAE_ = real
    return pipe


class Recorder:
    """Wraps the pipeline's ``model_fn``: records what the DiT is given at every call."""

    def __init__(self, pipe, stand_in=None):
        self.calls = []
        self.model_fn, self.stand_in = pipe.model_fn, stand_in
        pipe.model_fn = self

    def __call__(self, **kw):
        self.calls.append(
            SimpleNamespace(
                latents=kw["latents"].clone(), timestep=kw["timestep"].clone(), context=kw["context"].clone()
            )
        )
        return self.stand_in(**kw) if self.stand_in else self.model_fn(**kw)


class StandInVAE(torch.nn.Module):
    """Records the decode call and hands back the final latents (a full-size decode would be slow here)."""

    def __init__(self):
        super().__init__()
        self.upsampling_factor = 8
        self.model = SimpleNamespace(z_dim=16)

    def decode(self, latents, device=None, tiled=False, tile_size=(34, 34), tile_stride=(18, 16)):
        self.seen = dict(latents=latents.clone(), tiled=tiled, tile_size=tile_size, tile_stride=tile_stride)
        return latents


def run(pipe, **kw):
    kw.setdefault("progress_bar_cmd", lambda steps: steps)
    kw.setdefault("output_type", "floatpoint")
    return quiet(pipe, **kw)


@cache
def bare_call():
    """``pipe(prompt=...)`` with every other argument at its default, in a float32 pipeline.

    The DiT stand-in returns 1 for the prompt and 0 for the negative prompt, so
    the guided velocity is exactly ``cfg_scale`` and the loop's end point shows
    the scheduler and the guidance line at work.
    """
    pipe = tiny_pipeline(torch.float32)
    pipe.vae = StandInVAE()
    noise = []
    generate = pipe.generate_noise
    pipe.generate_noise = lambda *a, **k: noise.append(generate(*a, **k)) or noise[-1]

    def velocity(**kw):
        positive = kw["context"].abs().sum() > 0  # the empty negative prompt is all padding: zeros
        return torch.full_like(kw["latents"], 1.0 if positive else 0.0)

    rec = Recorder(pipe, velocity)
    out, printed = run(pipe, prompt="a red fox running")
    return SimpleNamespace(pipe=pipe, calls=rec.calls, vae=pipe.vae, noise=noise[0], out=out, printed=printed)


def test_a_bare_call_runs_the_documented_defaults():
    """81 frames at 480 by 832, 50 steps of the shift-5 Wan sigmas, two DiT calls each, a tiled decode."""
    r = bare_call()
    d = DIFFSYNTH_WAN_DEFAULTS
    shape = latent_shape("wan2.1", height=d["height"], width=d["width"], frames=d["num_frames"])
    assert r.noise.shape == shape == (1, 16, 21, 60, 104)
    assert len(r.calls) == 2 * d["num_inference_steps"] == 100
    assert {tuple(c.latents.shape) for c in r.calls} == {shape}
    sigmas = flow_sigmas("Wan", d["num_inference_steps"], shift=d["sigma_shift"])
    assert torch.allclose(r.pipe.scheduler.timesteps, 1000 * sigmas, atol=1e-3)
    assert {tuple(c.timestep.shape) for c in r.calls} == {(1,)}  # one value per DiT call
    assert (r.vae.seen["tiled"], r.vae.seen["tile_size"], r.vae.seen["tile_stride"]) == (
        d["tiled"], d["tile_size"], d["tile_stride"]
    )  # fmt: skip
    # guided velocity = 0 + cfg_scale * (1 - 0); the sigmas fall from 1 to 0, so x_0 = noise - cfg_scale
    assert torch.allclose(r.vae.seen["latents"], r.noise - d["cfg_scale"], atol=1e-4)


def test_a_bare_call_draws_new_noise_every_time():
    """``seed=None`` by default: two bare calls start from different noise."""
    pipe = tiny_pipeline(torch.float32)
    pipe.vae = StandInVAE()
    rec = Recorder(pipe, lambda **kw: torch.zeros_like(kw["latents"]))
    firsts = []
    for seed in (None, None, 0, 0):
        rec.calls.clear()
        run(pipe, prompt="a cat", height=32, width=32, num_frames=5, num_inference_steps=1, seed=seed)
        firsts.append(rec.calls[0].latents)
    assert not torch.equal(firsts[0], firsts[1]) and torch.equal(firsts[2], firsts[3])


def test_the_loop_state_is_bfloat16_in_a_default_pipeline():
    """``from_pretrained`` defaults to bfloat16: the noise is drawn in float32 on the CPU and cast; every step stays
    bf16; the DiT reads the timestep cast to bf16 while the scheduler steps with the float32 one."""
    pipe = tiny_pipeline()  # the default dtype
    assert pipe.torch_dtype == torch.bfloat16
    rec = Recorder(pipe)
    video, _ = run(pipe, prompt="a red fox", height=32, width=32, num_frames=5, num_inference_steps=6, seed=0)
    first = rec.calls[0].latents
    expected = torch.randn(first.shape, generator=torch.Generator("cpu").manual_seed(0)).to(torch.bfloat16)
    assert torch.equal(first, expected)
    assert {c.latents.dtype for c in rec.calls} == {c.timestep.dtype for c in rec.calls} == {torch.bfloat16}
    steps = pipe.scheduler.timesteps
    assert steps.dtype == torch.float32
    seen = torch.stack([c.timestep for c in rec.calls[::2]]).flatten()
    assert torch.equal(seen, steps.to(torch.bfloat16))  # rounded: 1000 sigma in bf16
    assert not torch.equal(seen.float(), steps)
    assert video.dtype == torch.bfloat16


def test_bfloat16_euler_steps_drift_from_the_float32_result():
    """DiffSynth's own scheduler, 50 steps with the exact velocity: float32 lands on x0, bfloat16 does not."""
    scheduler = diffsynth_module("diffusion.flow_match").FlowMatchScheduler("Wan")
    scheduler.set_timesteps(50, shift=5.0)
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(2, 1, 16, 3, 8, 8, generator=g)
    ends = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, v = eps.to(dtype), (eps - x0).to(dtype)
        for t in scheduler.timesteps:
            x = scheduler.step(v, t, x)
        assert x.dtype == dtype
        ends[dtype] = (x.float() - x0).abs().mean().item()
    rounding = (x0.to(torch.bfloat16).float() - x0).abs().mean().item()
    assert ends[torch.float32] < 1e-5
    assert ends[torch.bfloat16] > 4 * rounding  # many roundings, not one


def test_the_prompt_is_padded_to_512_and_padded_positions_are_zero():
    pipe = tiny_pipeline(torch.float32)
    assert pipe.tokenizer.seq_len == 512  # set by from_pretrained
    ids, mask = pipe.tokenizer("a red fox", return_mask=True, add_special_tokens=True)
    assert ids.shape == mask.shape == (1, 512) and int(mask.sum()) == 3
    long_ids, _ = pipe.tokenizer(" ".join(["cat"] * 600), return_mask=True, add_special_tokens=True)
    assert long_ids.shape == (1, 512)  # cut to 512 without a message
    unit = wan_video().WanVideoUnit_PromptEmbedder()
    emb = unit.encode_prompt(pipe, "a red fox")
    assert emb.shape == (1, 512, TEXT_DIM)
    assert emb[:, 3:].eq(0).all() and emb[:, :3].ne(0).any()


def test_guidance_and_cfg_merge_set_the_number_of_dit_calls():
    pipe = tiny_pipeline(torch.float32)
    pipe.vae = StandInVAE()
    rec = Recorder(pipe, lambda **kw: torch.zeros(kw["context"].shape[0], *kw["latents"].shape[1:]))
    counts = {}
    for name, kw in {"cfg 5": {}, "cfg 1": {"cfg_scale": 1.0}, "cfg_merge": {"cfg_merge": True}}.items():
        rec.calls.clear()
        run(pipe, prompt="a cat", height=32, width=32, num_frames=5, num_inference_steps=4, seed=0, **kw)
        counts[name] = (len(rec.calls), rec.calls[0].context.shape[0])
    assert counts == {"cfg 5": (8, 1), "cfg 1": (4, 1), "cfg_merge": (4, 2)}


def test_each_stage_loads_only_its_models():
    """The order of load_models_to_device calls in one guided generation."""
    pipe = tiny_pipeline(torch.float32)
    pipe.vae = StandInVAE()
    Recorder(pipe, lambda **kw: torch.zeros_like(kw["latents"]))
    loads = []
    original = pipe.load_models_to_device
    pipe.load_models_to_device = lambda names: (loads.append(tuple(names)), original(names))[1]
    run(pipe, prompt="a cat", height=32, width=32, num_frames=5, num_inference_steps=2, seed=0)
    assert loads == [("text_encoder",), ("text_encoder",), pipe.in_iteration_models, ("vae",), ()]
    assert pipe.in_iteration_models[0] == "dit"


def test_run_text_to_video_is_diffsynths_loop_on_the_same_modules():
    """Lab 10's loop, with DiffSynth as the referent: its ``__call__`` (noise from the seed, the shift-5 Wan
    scheduler, the timestep cast, the guidance line, the Euler steps) drives the page's tiny DiT, and the final
    latents, un-normalised with DiffSynth's own Wan constants and decoded by the page's VAE, are
    ``run_text_to_video``'s video."""
    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml")
    modules = load_components(cfg)
    te, dit, vae = modules["text_encoder"], modules["dit"], modules["vae"]
    prompt, rt = "a red fox running through snow", cfg.runtime
    video = run_text_to_video(cfg, prompt, modules=modules)
    pipe = tiny_pipeline(torch.float32)
    mean, inv_std = pipe.vae.scale  # DiffSynth's WanVideoVAE: decode computes z / scale[1] + scale[0]
    pipe.vae = StandInVAE()
    with torch.no_grad():
        ours = {True: te.encode(prompt).float(), False: te.encode("").float()}

        def velocity(**kw):  # DiffSynth's negative prompt "" is all padding: a zero context
            return dit(kw["latents"], kw["timestep"], ours[bool(kw["context"].abs().sum() > 0)])

        rec = Recorder(pipe, velocity)
        _, _, F_, H_, W_ = cfg.latent_shape
        run(pipe, prompt=prompt, height=8 * H_, width=8 * W_, num_frames=4 * (F_ - 1) + 1, seed=rt.seed,
            num_inference_steps=rt.num_inference_steps, cfg_scale=rt.guidance_scale, sigma_shift=rt.shift)  # fmt: skip
        z = pipe.vae.seen["latents"]
        decoded = vae.decode(z / inv_std.view(1, -1, 1, 1, 1) + mean.view(1, -1, 1, 1, 1))
    assert len(rec.calls) == 2 * rt.num_inference_steps
    assert torch.allclose(video, decoded, atol=1e-5)


def test_forward_hooks_on_the_wan_vae_miss_its_decode():
    """``WanVideoVAE`` decodes through a method, not ``forward``: a hook on it records nothing, while a hook on
    its inner decoder fires once per latent frame (the causal decoder runs frame by frame)."""
    vae = tiny_pipeline(torch.float32).vae
    fired = []
    handles = [
        vae.register_forward_hook(lambda *a: fired.append("vae")),
        vae.model.decoder.register_forward_hook(lambda *a: fired.append("decoder")),
    ]
    with torch.no_grad():
        video = vae.decode(torch.randn(1, 16, 3, 4, 6, generator=torch.Generator().manual_seed(0)), device="cpu")
    for h in handles:
        h.remove()
    assert video.shape == (1, 3, 9, 32, 48)
    assert fired == ["decoder"] * 3
