"""load_component and load_components: config names to modules, with every refusal named by its key path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from infralens.nets import TinyCausalVideoVAE, TinyTextEncoder, TinyVideoDiT
from infralens.pipelines import (
    LOADERS,
    ComponentSpec,
    architecture_fingerprint,
    component_stats,
    load_component,
    load_components,
    load_config,
    register_loader,
)
from infralens.pipelines import registry as registry_module

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml").read_text()
STARTER = ROOT / "code/diffsynth/lab-02-model-loading-path/model_loading.py"
CPU = torch.device("cpu")


def spec(loader="tiny_video_dit", dtype=torch.float32, **params) -> ComponentSpec:
    return ComponentSpec(loader, dtype, CPU, params)


def refused(call, *args) -> str:
    with pytest.raises(ValueError) as info:
        call(*args)
    return str(info.value)


@pytest.fixture
def temporary_loaders():
    """Register loaders for one test and remove them afterwards."""
    added: list[str] = []

    def add(name, loader):
        register_loader(name, loader)
        added.append(name)

    yield add
    for name in added:
        del registry_module._LOADERS[name]


def test_registry_maps_names_to_classes():
    assert dict(LOADERS) == {
        "tiny_text_encoder": TinyTextEncoder,
        "tiny_video_dit": TinyVideoDiT,
        "tiny_causal_video_vae": TinyCausalVideoVAE,
    }
    with pytest.raises(TypeError):
        LOADERS["x"] = nn.Linear  # read-only view


def test_load_component_equals_building_by_hand():
    s = spec(dtype=torch.bfloat16, dim=32, num_layers=1)
    module = load_component("dit", s)
    by_hand = TinyVideoDiT(dim=32, num_layers=1).to(torch.bfloat16)
    assert type(module) is TinyVideoDiT and not module.training
    for (name, a), (_, b) in zip(module.named_parameters(), by_hand.named_parameters(), strict=True):
        assert torch.equal(a, b), name
        assert a.dtype == torch.bfloat16 and a.device == CPU and not a.requires_grad


def test_load_components_of_the_lab_config():
    cfg = load_config(TEXT)
    modules = load_components(cfg)
    assert list(modules) == ["text_encoder", "dit", "vae"]
    assert [type(m) for m in modules.values()] == [TinyTextEncoder, TinyVideoDiT, TinyCausalVideoVAE]
    assert next(modules["text_encoder"].parameters()).dtype == torch.bfloat16
    assert next(modules["dit"].parameters()).dtype == torch.float32
    assert modules["dit"].dim == cfg.components["dit"].params["dim"] == 64


# --- refusals ------------------------------------------------------------------------------------------------


def test_unknown_loader():
    assert refused(load_component, "dit", spec("tiny_vdit")) == (
        "components.dit.loader: no loader is registered as 'tiny_vdit'; did you mean tiny_video_dit? registered: "
        "tiny_text_encoder, tiny_video_dit, tiny_causal_video_vae"
    )
    assert refused(load_component, "vae", spec("sdxl_vae")) == (
        "components.vae.loader: no loader is registered as 'sdxl_vae'; registered: tiny_text_encoder, "
        "tiny_video_dit, tiny_causal_video_vae"
    )


def test_unknown_param():
    assert refused(load_component, "dit", spec(num_layer=2)) == (
        "unknown key components.dit.params.num_layer; did you mean components.dit.params.num_layers? "
        "tiny_video_dit takes: latent_channels, condition_channels, text_dim, image_token_dim, dim, num_heads, "
        "num_layers, seed"
    )
    assert refused(load_component, "vae", spec("tiny_causal_video_vae", zzz=1)) == (
        "unknown key components.vae.params.zzz; tiny_causal_video_vae takes: latent_channels, width, seed"
    )


def test_the_loaders_own_checks_get_the_key_path():
    assert refused(load_component, "dit", spec(dim=64, num_heads=3)) == (
        "components.dit.params.num_heads: num_heads must divide dim=64, e.g. num_heads=2; got 3"
    )
    assert refused(load_component, "text_encoder", spec("tiny_text_encoder", dim=0)) == (
        "components.text_encoder.params.dim: dim must be >= 1, e.g. dim=32; got 0"
    )
    # a message that does not start with a param name points at the params block
    assert refused(load_component, "text_encoder", spec("tiny_text_encoder", vocab_size=100)).startswith(
        "components.text_encoder.params.vocab_size: vocab_size must be >= 258"
    )


def test_message_without_a_param_name_points_at_the_block(temporary_loaders):
    def picky(**params):
        raise ValueError("the weights file is missing")

    temporary_loaders("picky", picky)
    assert refused(load_component, "dit", spec("picky")) == "components.dit.params: the weights file is missing"


def test_loader_must_return_a_module(temporary_loaders):
    temporary_loaders("not_a_module", lambda: 3)
    assert refused(load_component, "dit", spec("not_a_module")) == (
        "components.dit.loader: 'not_a_module' returned int, not a torch.nn.Module"
    )


def test_spec_must_be_a_component_spec():
    assert refused(load_component, "dit", {"loader": "tiny_video_dit"}) == (
        "spec must be a ComponentSpec, e.g. load_config(...).components['dit']; got {'loader': 'tiny_video_dit'}"
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_a_cuda_device_without_cuda():
    s = ComponentSpec("tiny_video_dit", torch.float32, torch.device("cuda"), {})
    assert refused(load_component, "dit", s) == (
        "components.dit.device is cuda, but this machine has no CUDA device; e.g. device: cpu"
    )


def test_a_device_torch_cannot_use():
    s = ComponentSpec("tiny_video_dit", torch.float32, torch.device("xpu"), {})
    if hasattr(torch, "xpu") and torch.xpu.is_available():
        pytest.skip("this machine has an XPU")
    assert refused(load_component, "dit", s).startswith("components.dit.device is xpu, which torch cannot use here: ")


def test_register_loader(temporary_loaders):
    temporary_loaders("tiny_linear", nn.Linear)
    module = load_component("dit", spec("tiny_linear", in_features=3, out_features=2))
    assert isinstance(module, nn.Linear) and module.weight.shape == (2, 3)
    assert refused(register_loader, "tiny_video_dit", nn.Linear) == (
        "name 'tiny_video_dit' is already registered (to TinyVideoDiT); choose another name"
    )
    assert refused(register_loader, "", nn.Linear) == "name must be a non-empty string, e.g. name='my_dit'; got ''"
    assert refused(register_loader, "x", 3) == "loader must be callable (a module class or a function); got int"


# --- wiring checks -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "{latent_channels: 16, width: 4}",
            "{latent_channels: 8, width: 4}",
            "components.vae.params.latent_channels=8 does not match family 'wan2.1', whose latents have 16 channels; "
            "e.g. latent_channels: 16",
        ),
        (
            "{latent_channels: 16, text_dim",
            "{latent_channels: 12, text_dim",
            "components.dit.params.latent_channels=12 does not match family 'wan2.1', whose latents have 16 "
            "channels; e.g. latent_channels: 16",
        ),
        (
            "text_dim: 32",
            "text_dim: 48",
            "components.dit.params.text_dim=48 must equal the text encoder's output width, "
            "components.text_encoder.params.dim=32; e.g. text_dim: 32",
        ),
    ],
)
def test_components_must_fit_together(old, new, message):
    assert TEXT.count(old) == 1
    assert refused(load_components, load_config(TEXT.replace(old, new))) == message


def test_the_vae_factors_must_match_the_family(temporary_loaders):
    class CoarseVAE(TinyCausalVideoVAE):
        spatial_factor = 16

    temporary_loaders("coarse_vae", CoarseVAE)
    cfg = load_config(TEXT.replace("loader: tiny_causal_video_vae", "loader: coarse_vae"))
    assert refused(load_components, cfg) == (
        "components.vae: coarse_vae builds a VAE with spatial factor 16 and temporal factor 4, but family 'wan2.1' "
        "needs 8 and 4; e.g. family: wan2.2"
    )


def test_a_component_without_the_contract(temporary_loaders):
    temporary_loaders("plain_linear", lambda: nn.Linear(2, 2))
    cfg = load_config(
        TEXT.replace("loader: tiny_text_encoder", "loader: plain_linear").replace(
            "params: {vocab_size: 258, dim: 32, num_heads: 2, num_layers: 2,\n             max_length: 32}",
            "params: {}",
        )
    )
    assert refused(load_components, cfg) == (
        "components.text_encoder: Linear has no attribute 'dim', which a pipeline's text_encoder must expose so "
        "the components can be wired together"
    )


def test_load_components_needs_a_config():
    assert refused(load_components, {"family": "wan2.1"}) == (
        "config must be a PipelineConfig, e.g. load_config('pipeline_config.yaml'); got {'family': 'wan2.1'}"
    )


# --- what was loaded -----------------------------------------------------------------------------------------


def test_component_stats_against_an_independent_count():
    dit = TinyVideoDiT(dim=64, num_layers=2)
    stats = component_stats(dit)
    n = sum(p.numel() for p in dit.parameters())
    assert (stats.class_name, stats.parameters, stats.bytes) == ("TinyVideoDiT", n, 4 * n)
    assert (stats.dtype, stats.device) == (torch.float32, CPU)
    assert stats.bytes_by_dtype == {"float32": 4 * n, "float16": 2 * n, "bfloat16": 2 * n}
    half = component_stats(dit.to(torch.bfloat16))
    assert half.bytes == 2 * n and half.dtype == torch.bfloat16


def test_component_stats_of_mixed_and_empty_modules():
    mixed = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2).to(torch.float16))
    stats = component_stats(mixed)
    assert stats.dtype is None and stats.bytes == 6 * 4 + 6 * 2
    assert refused(component_stats, nn.ReLU()) == (
        "module must be a torch.nn.Module with parameters, e.g. nn.Linear(4, 2); got ReLU()"
    )


def test_fingerprint_sees_shapes_not_values():
    a = architecture_fingerprint(TinyVideoDiT(seed=0))
    assert a == architecture_fingerprint(TinyVideoDiT(seed=1))  # other weights, same architecture
    assert a == architecture_fingerprint(TinyVideoDiT(seed=0).to(torch.bfloat16))  # dtype is not architecture
    assert a != architecture_fingerprint(TinyVideoDiT(num_layers=2))  # one more block: new keys
    assert a != architecture_fingerprint(TinyVideoDiT(dim=64))  # same keys, other shapes
    assert re.fullmatch(r"[0-9a-f]{16}", a)
    assert refused(architecture_fingerprint, {"w": [1.0]}) == (
        "weights must be a module or a state dict of tensors, e.g. nn.Linear(4, 2); got {'w': [1.0]}"
    )


# --- the starter ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def out(starter) -> str:
    return starter(STARTER)


def independent_modules() -> dict[str, nn.Module]:
    """The three components built straight from the YAML's params, without the library's loader."""
    raw = yaml.safe_load(TEXT)["components"]
    classes = {"text_encoder": TinyTextEncoder, "dit": TinyVideoDiT, "vae": TinyCausalVideoVAE}
    return {name: classes[name](**raw[name]["params"]) for name in classes}


def cells(out: str, first: str) -> list[str]:
    """The cells of the printed row starting with ``first`` (columns are two or more spaces apart)."""
    line = next(line for line in out.splitlines() if line.startswith(f"  {first}  "))
    return re.split(r"\s{2,}", line.strip())


def residency_rows(out: str, offload: str) -> list[list[str]]:
    block = re.search(rf"Residency with offload: {offload}\n(.*?)\n  peak", out, re.S).group(1)
    return [re.split(r"\s{2,}", line.strip()) for line in block.splitlines()[1:]]


def test_starter_prints_each_component(out):
    bytes_per = {"text_encoder": 2, "dit": 4, "vae": 4}  # bfloat16, float32, float32 in the YAML
    dtypes = {"text_encoder": "torch.bfloat16", "dit": "torch.float32", "vae": "torch.float32"}
    for name, module in independent_modules().items():
        n = sum(p.numel() for p in module.parameters())
        assert cells(out, name) == [
            name,
            type(module).__name__,
            f"{n:,}",
            dtypes[name],
            f"{n * bytes_per[name] / 1024:.1f}",
            "cpu",
        ]
    rows = re.search(r"The same parameters in each dtype, KiB\n(.*?)\n\n", out, re.S).group(1).splitlines()
    assert re.split(r"\s{2,}", rows[0].strip()) == ["role", "float32", "float16", "bfloat16"]
    for line, (name, module) in zip(rows[1:], independent_modules().items(), strict=True):
        n = sum(p.numel() for p in module.parameters())
        assert re.split(r"\s{2,}", line.strip()) == [name] + [f"{n * b / 1024:.1f}" for b in (4, 2, 2)]


def test_starter_prints_residency(out):
    sizes = {
        name: sum(p.numel() for p in m.parameters()) * (2 if name == "text_encoder" else 4)
        for name, m in independent_modules().items()
    }
    total = sum(sizes.values())
    kib = lambda b: f"{b / 1024:.1f}"  # noqa: E731
    # 4 steps with guidance: text encoder x2, DiT x8, VAE x1
    stages = [("text encoding", "2"), ("denoising loop", "8"), ("decoding", "1")]
    resident = residency_rows(out, "resident")
    assert resident == [
        [stage, calls, "text_encoder, dit, vae", kib(total), kib(total if k == 0 else 0)]
        for k, (stage, calls) in enumerate(stages)
    ]
    model = residency_rows(out, "model")
    names = ["text_encoder", "dit", "vae"]
    assert model == [
        [stage, calls, n, kib(sizes[n]), kib(sizes[n])] for (stage, calls), n in zip(stages, names, strict=True)
    ]
    assert f"peak weights {kib(max(sizes.values()))} KiB, copied {kib(total)} KiB" in out
    layer = residency_rows(out, "layer")
    # every call streams every layer; at most one layer is on the device
    assert [row[4] for row in layer] == [kib(int(c) * sizes[n]) for (_, c), n in zip(stages, names, strict=True)]
    layer_moved = 2 * sizes["text_encoder"] + 8 * sizes["dit"] + sizes["vae"]
    assert re.search(rf"copied {kib(layer_moved)} KiB$", out, re.M)


def test_starter_prints_fingerprints_and_refusals(out):
    fps = dict(re.findall(r"^  (seed 0|seed 1|3 layers)\s+([0-9a-f]{16})$", out, re.M))
    assert fps["seed 0"] == fps["seed 1"] != fps["3 layers"]
    assert fps["seed 0"] == architecture_fingerprint(independent_modules()["dit"])
    flat = " ".join(out.split())
    assert "unknown key components.dit.params.num_layer; did you mean components.dit.params.num_layers?" in flat
    assert "components.dit.params.text_dim=48 must equal the text encoder's output width" in flat
    assert "no loader is registered as 'tiny_vdit'; did you mean tiny_video_dit?" in flat
