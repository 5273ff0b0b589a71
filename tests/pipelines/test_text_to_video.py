"""run_text_to_video: the miniature pipeline end to end, against a loop written out here, and its trace."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from infralens.diffusion import LATENT_SCALING
from infralens.nets import tokenize
from infralens.pipelines import Tracer, load_components, load_config, run_text_to_video

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml").read_text()
STARTER = ROOT / "code/diffsynth/lab-10-end-to-end-inference-trace/inference_trace.py"
PROMPT = "a red fox"


def config(**edits):
    """The Lab 01 config with top-level or runtime keys (indented 0 or 2 spaces) set to other values."""
    text = TEXT
    for key, value in edits.items():
        text, n = re.subn(rf"^( {{0,2}}{key}:) \S+", rf"\g<1> {value}", text, count=1, flags=re.M)
        assert n == 1, key
    return load_config(text)


@pytest.fixture(scope="module")
def cfg():
    return config()


@pytest.fixture(scope="module")
def modules(cfg):
    return load_components(cfg)


def manual_run(cfg, modules, prompt, negative_prompt=""):
    """The pipeline written out with plain arithmetic: no cfg_combine, flow_euler_step or flow_sigmas."""
    te, dit, vae = modules["text_encoder"], modules["dit"], modules["vae"]
    rt = cfg.runtime
    with torch.no_grad():
        ids, mask = tokenize(prompt, te.max_length)
        ctx = te(ids, mask).float()
        ids, mask = tokenize(negative_prompt, te.max_length)
        neg = te(ids, mask).float()
        x = torch.randn(cfg.latent_shape, generator=torch.Generator().manual_seed(rt.seed))
        n, s = rt.num_inference_steps, rt.shift
        u = [1 - i / n for i in range(n)] + [0.0]  # Wan: N + 1 points from 1 to 0, the last is the end
        sig = [s * a / (1 + (s - 1) * a) for a in u]
        for i in range(n):
            t = torch.tensor([1000 * sig[i]], dtype=torch.float32)
            v_pos = dit(x, t, ctx)
            if rt.guidance_scale != 1:
                v_neg = dit(x, t, neg)
                v_pos = v_neg + rt.guidance_scale * (v_pos - v_neg)
            x = x + (sig[i + 1] - sig[i]) * v_pos
        wan = LATENT_SCALING["wan2.1"]
        mean = torch.tensor(wan.latents_mean).view(1, -1, 1, 1, 1)
        std = torch.tensor(wan.latents_std).view(1, -1, 1, 1, 1)
        return vae.decode(x * std + mean)


def test_the_video_has_the_requested_shape(cfg, modules):
    video = run_text_to_video(cfg, PROMPT, modules=modules)
    assert video.shape == (1, 3, 9, 32, 48) and video.dtype == torch.float32
    assert video.min() >= -1 and video.max() <= 1


@pytest.mark.parametrize("guidance", ["5.0", "1.0"])
def test_the_run_equals_the_loop_written_out(guidance, modules):
    c = config(guidance_scale=guidance)
    video = run_text_to_video(c, PROMPT, modules=modules)
    assert torch.allclose(video, manual_run(c, modules, PROMPT), atol=1e-5)


def test_the_seed_and_the_prompt_matter(cfg, modules):
    a = run_text_to_video(cfg, PROMPT, modules=modules)
    assert torch.equal(a, run_text_to_video(cfg, PROMPT, modules=modules))
    assert not torch.allclose(a, run_text_to_video(config(seed=1), PROMPT, modules=modules), atol=1e-3)
    assert not torch.allclose(a, run_text_to_video(cfg, "a blue whale", modules=modules), atol=1e-4)


def test_resident_and_model_offload_give_the_same_video(modules):
    a = run_text_to_video(config(offload="resident"), PROMPT, modules=modules)
    b = run_text_to_video(config(offload="model"), PROMPT, modules=modules)
    assert torch.equal(a, b)
    assert all(p.device == torch.device("cpu") for m in modules.values() for p in m.parameters())


def test_loads_the_components_when_none_are_given(cfg, modules):
    assert torch.equal(run_text_to_video(cfg, PROMPT), run_text_to_video(cfg, PROMPT, modules=modules))


# --- the trace -----------------------------------------------------------------------------------------------


def trace(cfg, modules, **kwargs) -> Tracer:
    tracer = Tracer()
    run_text_to_video(cfg, PROMPT, modules=modules, tracer=tracer, **kwargs)
    return tracer


def test_trace_shapes_follow_the_config(cfg, modules):
    rows = trace(cfg, modules).rows
    by = {(r.stage, r.boundary): r for r in rows}
    latent = cfg.latent_shape
    for key in [
        ("noise", "noise"),
        ("noise", "latents"),
        ("denoising loop", "dit in: latents"),
        ("denoising loop", "dit out"),
        ("denoising loop", "cfg: v"),
        ("denoising loop", "euler step: latents"),
        ("decoding", "vae in: latents"),
    ]:
        assert by[key].shape == latent, key
    L, D = cfg.components["text_encoder"].params["max_length"], cfg.components["text_encoder"].params["dim"]
    assert by["text encoding", "text_encoder out"].shape == (1, L, D)
    assert by["denoising loop", "dit in: text"].shape == (1, L, D)
    assert by["denoising loop", "dit in: timesteps"].shape == (1,)
    assert by["noise", "sigmas"].shape == (cfg.runtime.num_inference_steps,)
    assert by["decoding", "vae out: video"].shape == (
        1,
        3,
        cfg.runtime.num_frames,
        cfg.runtime.height,
        cfg.runtime.width,
    )


def test_trace_counts_calls(cfg, modules):
    def count(rows, boundary):
        return sum(r.boundary == boundary for r in rows)

    guided = trace(cfg, modules).rows
    assert count(guided, "dit out") == cfg.denoiser_calls == 8
    assert count(guided, "text_encoder out") == 2 and count(guided, "cfg: v") == 4
    plain = trace(config(guidance_scale=1), modules).rows
    assert count(plain, "dit out") == 4 and count(plain, "text_encoder out") == 1 and count(plain, "cfg: v") == 0


def test_trace_dtypes_show_the_casts(cfg, modules):
    by = {(r.stage, r.boundary): r for r in trace(cfg, modules).rows}
    assert by["load", "text_encoder weights"].dtype == torch.bfloat16
    assert by["text encoding", "text_encoder out"].dtype == torch.bfloat16
    assert by["text encoding", "context -> dit dtype"].dtype == torch.float32
    assert by["text encoding", "text_encoder in: input_ids"].dtype == torch.int64
    assert by["noise", "noise"].dtype == torch.float32
    assert all(r.device == torch.device("cpu") for r in by.values())


def test_a_bfloat16_runtime_rounds_the_timesteps(modules):
    c = config(dtype="bfloat16")
    tracer = trace(c, modules)
    by = {(r.stage, r.boundary): r for r in tracer.rows}
    assert c.runtime.dtype == torch.bfloat16
    assert by["noise", "noise"].dtype == torch.float32  # drawn in float32 ...
    assert by["noise", "latents"].dtype == torch.bfloat16  # ... then cast, as DiffSynth's generate_noise
    assert by["denoising loop", "dit in: timesteps"].dtype == torch.bfloat16
    assert by["denoising loop", "dit in: latents"].dtype == torch.float32  # the DiT's own dtype


# --- refusals ------------------------------------------------------------------------------------------------


def refused(*args, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        run_text_to_video(*args, **kwargs)
    return str(info.value)


def test_refusals(cfg, modules):
    assert refused(config(offload="layer"), PROMPT, modules=modules) == (
        "runtime.offload='layer' is not run by this runner, which moves whole components: use resident or model "
        "(stage_residency plans layer offload without running it)"
    )
    assert refused(config(family="hunyuanvideo"), PROMPT, modules=modules) == (
        "family 'hunyuanvideo' has no latent constants in LATENT_SCALING to decode with; e.g. family: wan2.1"
    )
    assert refused(cfg, 3, modules=modules) == "prompt must be a string, e.g. prompt='a red fox'; got 3"
    assert refused(cfg, PROMPT, None, modules=modules) == (
        "negative_prompt must be a string, e.g. negative_prompt='a red fox'; got None"
    )
    assert refused(cfg, PROMPT, modules={"dit": modules["dit"]}) == (
        "modules must hold every component, text_encoder, dit, vae; got ['dit']"
    )
    assert refused("pipeline_config.yaml", PROMPT).startswith("config must be a PipelineConfig")
    assert refused(cfg, "x" * 40, modules=modules) == (
        "prompt 0 is 40 bytes, but max_length=32 holds at most 31 bytes and the end token; shorten it or raise "
        "max_length to 41"
    )


# --- the starter ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out(starter) -> str:
    return starter(STARTER)


def test_starter_prints_the_trace_table(out, cfg, modules):
    tracer = Tracer()
    run_text_to_video(cfg, "a red fox running through snow", modules=modules, tracer=tracer)
    assert tracer.table() in out
    rows = {tuple(re.split(r"\s{2,}", line.strip())[:2]) for line in out.splitlines() if line.startswith("  ")}
    latent = str(cfg.latent_shape)
    assert ("dit in: latents", latent) in rows and ("euler step: latents", latent) in rows
    assert ("vae out: video", "(1, 3, 9, 32, 48)") in rows


def test_starter_prints_its_checks(out, cfg):
    assert f"loop latent {cfg.latent_shape} == config.latent_shape" in out
    assert "video (1, 3, 9, 32, 48) == (1, 3, F, H, W)" in out
    assert f"DiT calls {cfg.denoiser_calls} == config.denoiser_calls" in out
    err = float(re.search(r"plain torch == run_text_to_video \(max \|diff\| (\S+)\)", out).group(1))
    assert err <= 1e-5
    assert re.search(r"^  load\s+text_encoder weights\s+torch.bfloat16$", out, re.M)
    assert re.search(r"^  text encoding\s+text_encoder out\s+torch.bfloat16$", out, re.M)
    lo, hi = map(float, re.search(r"Video values in \[(\S+), (\S+)\]", out).groups())
    assert -1 <= lo <= hi <= 1
