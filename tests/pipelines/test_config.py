"""load_config: the Lab 01 config loads as typed values, and every bad edit is refused with its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from infralens.diffusion import latent_shape
from infralens.memory import STRATEGIES
from infralens.pipelines import COMPONENTS, DTYPES, PipelineConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "code/diffsynth/lab-01-pipeline-config-reading"
CONFIG = LAB / "pipeline_config.yaml"
TEXT = CONFIG.read_text()


def edited(old: str, new: str) -> str:
    assert TEXT.count(old) >= 1, old
    return TEXT.replace(old, new, 1)


def refused(source) -> str:
    with pytest.raises(ValueError) as info:
        load_config(source)
    return str(info.value)


def test_the_lab_config_loads_with_typed_values():
    cfg = load_config(CONFIG)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.family == "wan2.1"
    assert tuple(cfg.components) == COMPONENTS == ("text_encoder", "dit", "vae")
    te, dit, vae = (cfg.components[n] for n in COMPONENTS)
    assert (te.dtype, dit.dtype, vae.dtype) == (torch.bfloat16, torch.float32, torch.float32)
    assert te.device == dit.device == vae.device == torch.device("cpu")
    assert dit.loader == "tiny_video_dit" and dit.params["latent_channels"] == 16
    rt = cfg.runtime
    assert (rt.dtype, rt.device, rt.offload) == (torch.float32, torch.device("cpu"), "model")
    assert (rt.height, rt.width, rt.num_frames, rt.num_inference_steps, rt.seed) == (32, 48, 9, 4, 0)
    assert (rt.guidance_scale, rt.shift) == (5.0, 5.0) and isinstance(rt.guidance_scale, float)
    # the latent follows the family's rule: (1, 16, 1 + (9 - 1)/4, 32/8, 48/8)
    assert cfg.latent_shape == (1, 16, 3, 4, 6) == latent_shape("wan2.1", height=32, width=48, frames=9)
    assert cfg.denoiser_calls == 4 * 2


def test_path_text_and_mapping_give_the_same_config():
    as_path = load_config(CONFIG)
    assert load_config(str(CONFIG)) == as_path
    assert load_config(TEXT) == as_path
    assert load_config(yaml.safe_load(TEXT)) == as_path


def test_the_config_is_read_only():
    cfg = load_config(CONFIG)
    with pytest.raises(TypeError):
        cfg.components["dit"] = cfg.components["vae"]
    with pytest.raises(TypeError):
        cfg.components["dit"].params["dim"] = 64
    with pytest.raises(AttributeError):
        cfg.runtime.height = 64


def test_guidance_scale_one_means_one_call_per_step():
    cfg = load_config(edited("guidance_scale: 5.0", "guidance_scale: 1"))
    assert cfg.runtime.guidance_scale == 1.0 and cfg.denoiser_calls == 4


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_dtype_name_maps_to_its_torch_dtype(name):
    cfg = load_config(edited("dtype: float32  # latents", f"dtype: {name}  # latents"))
    assert cfg.runtime.dtype is getattr(torch, name)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_offload_strategy_is_accepted(strategy):
    assert load_config(edited("offload: model", f"offload: {strategy}")).runtime.offload == strategy


# --- every refusal names the key path, the rule and a valid value --------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "num_frames: 9",
            "num_frames: 8",
            "runtime.num_frames: frames=8 is not valid for 'wan2.1': its causal VAE encodes the first frame alone "
            "and then groups of 4, so frames must be 1 + 4k; nearest valid: 5 or 9",
        ),
        (
            "height: 32",
            "height: 36",
            "runtime.height: height=36 is not a multiple of 8, the spatial factor of 'wan2.1' (its VAE maps 8 "
            "pixels to one latent cell); nearest valid: 32 or 40",
        ),
        (
            "height: 32",
            "height: 40",
            "runtime.height=40 gives a latent height of 5 cells, which the DiT's 2x2 patches cannot split: height "
            "must be a multiple of 16 (8 per latent cell x 2 per patch); nearest valid: 32 or 48",
        ),
        (
            "width: 48",
            "width: 8",
            "runtime.width=8 gives a latent width of 1 cells, which the DiT's 2x2 patches cannot split: width must "
            "be a multiple of 16 (8 per latent cell x 2 per patch); nearest valid: 16",
        ),
        ("height: 32", "height: 0", "runtime.height must be a whole number >= 1, e.g. height: 480; got 0"),
        ("width: 48", "width: 48.0", "runtime.width must be a whole number >= 1, e.g. width: 832; got 48.0"),
        (
            "num_frames: 9",
            "num_frames: nine",
            "runtime.num_frames must be a whole number >= 1, e.g. num_frames: 81; got 'nine'",
        ),
        (
            "num_inference_steps: 4",
            "num_inference_steps: 0",
            "runtime.num_inference_steps must be a whole number >= 1, e.g. num_inference_steps: 50; got 0",
        ),
        (
            "guidance_scale: 5.0",
            "guidance_scale: 0.5",
            "runtime.guidance_scale must be a number >= 1.0 (1 turns guidance off), e.g. guidance_scale: 5.0; got 0.5",
        ),
        (
            "guidance_scale: 5.0",
            "guidance_scale: true",
            "runtime.guidance_scale must be a number >= 1.0 (1 turns guidance off), e.g. guidance_scale: 5.0; got True",
        ),
        (
            "shift: 5.0",
            "shift: 0",
            "runtime.shift must be a number > 0.0 (1 leaves the sigmas unshifted), e.g. shift: 5.0; got 0",
        ),
        ("seed: 0", "seed: -1", "runtime.seed must be a whole number >= 0, e.g. seed: 0; got -1"),
        (
            "dtype: float32  # latents",
            "dtype: fp8  # latents",
            "runtime.dtype must be one of float32, float16, bfloat16 (or bf16, fp16, fp32), e.g. runtime.dtype: "
            "bfloat16; got 'fp8'",
        ),
        (
            "dtype: float32  # latents",
            "dtype: int8  # latents",
            "runtime.dtype must be one of float32, float16, bfloat16 (or bf16, fp16, fp32), e.g. runtime.dtype: "
            "bfloat16; got 'int8'",
        ),
        (
            "dtype: bfloat16",
            "dtype: float64",
            "components.text_encoder.dtype must be one of float32, float16, bfloat16 (or bf16, fp16, fp32), e.g. "
            "components.text_encoder.dtype: bfloat16; got 'float64'",
        ),
        (
            "device: cpu\n    params: {latent_channels: 16, text_dim",
            "device: gpu\n    params: {latent_channels: 16, text_dim",
            "components.dit.device must be a torch device name such as cpu, cuda or cuda:0; got 'gpu'",
        ),
        (
            "device: cpu\n  height",
            "device: [cpu]\n  height",
            "runtime.device must be a torch device name such as cpu, cuda or cuda:0; got ['cpu']",
        ),
        (
            "offload: model",
            "offload: sequential",
            "runtime.offload must be one of resident, model, layer, e.g. runtime.offload: model; got 'sequential'",
        ),
        (
            "offload: model",
            "offload: off",
            "runtime.offload must be one of resident, model, layer, e.g. runtime.offload: model; got False (YAML "
            "reads unquoted no/off/false as a boolean: quote it)",
        ),
        (
            "guidance_scale:",
            "guidance_sacle:",
            "unknown key runtime.guidance_sacle; did you mean runtime.guidance_scale? runtime takes: dtype, device, "
            "offload, height, width, num_frames, num_inference_steps, guidance_scale, shift, seed",
        ),
        (
            "  seed: 0\n",
            "",
            "runtime.seed is missing: every choice is written in the config, none is a hidden default; e.g. seed: 0",
        ),
        (
            "    loader: tiny_video_dit\n",
            "    loader: tiny_video_dit\n    precision: float32\n",
            "unknown key components.dit.precision; components.dit takes: loader, dtype, device, params",
        ),
        (
            "    loader: tiny_video_dit\n",
            "",
            "components.dit.loader is missing: every choice is written in the config, none is a hidden default; "
            "e.g. loader: tiny_video_dit",
        ),
        (
            "loader: tiny_video_dit",
            "loader: 7",
            "components.dit.loader must be a registry name, e.g. loader: tiny_video_dit; got 7",
        ),
        (
            "params: {latent_channels: 16, width: 4}",
            "params: [16, 4]",
            "components.vae.params must be a mapping (key: value lines), e.g. params: {dim: 32}; got [16, 4]",
        ),
        (
            "params: {latent_channels: 16, width: 4}",
            "params: {latent_channels: 16, width: [4]}",
            "components.vae.params.width must be a number, a boolean or a string, e.g. 32; got [4]",
        ),
        (
            "params: {latent_channels: 16, width: 4}",
            "params: {latent_channels: 16, 8: 4}",
            "components.vae.params keys must be argument names, e.g. num_layers; got 8",
        ),
        (
            "  vae:  #",
            "  vea:  #",
            "unknown component components.vea; did you mean components.vae? a text-to-video pipeline has: "
            "text_encoder, dit, vae",
        ),
        (
            "family: wan2.1",
            "family: flux",
            "family 'flux' is an image family; a text-to-video config needs a video family: wan2.1, wan2.2, "
            "hunyuanvideo, cogvideox, ltxvideo, e.g. family: wan2.1",
        ),
        (
            "family: wan2.1",
            "family: wan2.3",
            "family 'wan2.3' is not a known family; a text-to-video config needs a video family: wan2.1, wan2.2, "
            "hunyuanvideo, cogvideox, ltxvideo, e.g. family: wan2.1",
        ),
        (
            "family: wan2.1",
            "model: wan2.1",
            "unknown key model; the config takes: family, components, runtime",
        ),
        (
            "runtime:  #",
            "runtime: 3\nunused:  #",
            "unknown key unused; the config takes: family, components, runtime",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) and len(v) < 40 else None,
)
def test_each_bad_edit_is_refused_with_its_key_path(old, new, message):
    assert refused(edited(old, new)) == message


def test_sizes_follow_the_family():
    # wan2.2's VAE maps 16 pixels to a cell, so with 2x2 patches sizes step by 32; frames are still 1 + 4k
    text = edited("family: wan2.1", "family: wan2.2")
    assert refused(text) == (  # height 32 -> 2 cells is fine, width 48 -> 3 cells is not
        "runtime.width=48 gives a latent width of 3 cells, which the DiT's 2x2 patches cannot split: width "
        "must be a multiple of 32 (16 per latent cell x 2 per patch); nearest valid: 32 or 64"
    )
    ok = load_config(text.replace("width: 48", "width: 96"))
    assert ok.latent_shape == latent_shape("wan2.2", height=32, width=96, frames=9) == (1, 48, 3, 2, 6)


def test_missing_component_names_all_three():
    data = yaml.safe_load(TEXT)
    del data["components"]["vae"]
    assert refused(data) == (
        "components.vae is missing: a text-to-video pipeline needs text_encoder, dit, vae; e.g. components.vae: "
        "{loader: ..., dtype: float32, device: cpu, params: {}}"
    )


@pytest.mark.parametrize("key", ["family", "components", "runtime"])
def test_a_missing_top_level_block_is_named(key):
    data = yaml.safe_load(TEXT)
    del data[key]
    message = refused(data)
    assert message.startswith(f"{key} is missing: every choice is written in the config, none is a hidden default; ")
    assert f"e.g. {key}: " in message


def test_blocks_of_the_wrong_kind():
    data = yaml.safe_load(TEXT)
    assert refused({**data, "runtime": [1, 2]}).startswith("runtime must be a mapping (key: value lines)")
    assert refused({**data, "components": "dit"}).startswith("components must be a mapping (key: value lines)")
    comps = {**data["components"], "dit": "tiny_video_dit"}
    assert refused({**data, "components": comps}) == (
        "components.dit must be a mapping (key: value lines), e.g. {loader: tiny_video_dit, dtype: float32, "
        "device: cpu, params: {}}; got 'tiny_video_dit'"
    )


def test_documents_that_are_not_a_config():
    assert refused("") == (
        "the config must be a mapping (key: value lines), e.g. family: wan2.1, components: ..., runtime: ...; got None"
    )
    assert refused("- family\n- runtime\n").endswith("got ['family', 'runtime']")
    assert refused("family: [wan2.1\n").startswith("the config is not valid YAML: ")


def test_a_key_given_twice_is_refused_not_overwritten():
    text = edited("  seed: 0\n", "  seed: 0\n  seed: 1\n")
    line = text.splitlines().index("  seed: 1") + 1
    assert refused(text) == (
        f"duplicate key 'seed' on line {line} (first on line {line - 1}): YAML would keep only the last value; "
        "remove one of them"
    )
    assert yaml.safe_load(text)["runtime"]["seed"] == 1  # what plain YAML would have done


def test_bad_sources(tmp_path):
    missing = tmp_path / "nope.yaml"
    assert refused(missing) == (
        f"path_or_text names a file that does not exist: {str(missing)!r}; e.g. 'pipeline_config.yaml'"
    )
    assert refused(str(missing)).startswith("path_or_text names a file that does not exist")
    assert refused(42) == (
        "path_or_text must be a path to a .yaml file, YAML text or a mapping, e.g. 'pipeline_config.yaml'; got int"
    )


# --- the starter --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out(starter) -> str:
    return starter(LAB / "read_config.py")


def test_starter_prints_the_components_and_runtime(out):
    for name, loader, dtype in [
        ("text_encoder", "tiny_text_encoder", "torch.bfloat16"),
        ("dit", "tiny_video_dit", "torch.float32"),
        ("vae", "tiny_causal_video_vae", "torch.float32"),
    ]:
        assert re.search(rf"^  {name}\s+{loader}\s+{re.escape(dtype)}\s+cpu$", out, re.M), name
    assert re.search(r"^  dtype\s+'float32'\s+-> torch.float32\s+\(dtype\)$", out, re.M)
    assert re.search(r"^  num_frames\s+9\s+-> 9\s+\(int\)$", out, re.M)
    assert f"Latent (B, C, F', H', W') = {latent_shape('wan2.1', height=32, width=48, frames=9)}" in out
    assert "DiT calls: 4 steps x 2 = 8" in out


def test_starter_prints_the_hidden_defaults(out):
    assert re.search(r"^  num_frames\s+81$", out, re.M) and re.search(r"^  seed\s+None$", out, re.M)
    assert f"-> latent {latent_shape('wan2.1', height=480, width=832, frames=81)}, {50 * 2} DiT calls" in out


def test_starter_prints_each_refusal(out):
    flat = " ".join(out.split())  # the messages are wrapped to the terminal
    for fragment in [
        "runtime.num_frames: frames=8 is not valid for 'wan2.1'",
        "nearest valid: 5 or 9",
        "height must be a multiple of 16 (8 per latent cell x 2 per patch); nearest valid: 32 or 48",
        "got 'fp8'",
        "did you mean runtime.guidance_scale?",
        "got False (YAML reads unquoted no/off/false as a boolean: quote it)",
        "components.vae is missing",
    ]:
        assert fragment in flat, fragment
    assert flat.count("ValueError: ") == 6 and "accepted" not in flat


def test_short_dtype_names_mean_the_same_as_torch_names():
    """One vocabulary (see the glossary): a config may write bf16 or bfloat16, the calculators likewise."""
    from infralens.core import dtype_bytes

    short = load_config(edited("dtype: float32  # latents", "dtype: bf16  # latents"))
    assert short.runtime.dtype == torch.bfloat16
    assert dtype_bytes("bf16") == dtype_bytes("bfloat16") == 2
