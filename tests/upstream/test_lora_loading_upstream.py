"""Lab 08 against diffusers' loading path: a LoRA file from disk to PEFT layers, on tiny random pipelines.

``load_lora_weights`` -> ``lora_state_dict`` (format detection, key
conversion, alphas split off) -> ``load_lora_into_unet`` / ``_text_encoder`` /
``_transformer`` -> ``load_lora_adapter`` (``get_peft_kwargs``,
``inject_adapter_in_model``, ``set_peft_model_state_dict``), then
``set_adapters``, ``fuse_lora``, ``unfuse_lora``, ``unload_lora_weights``.
DiffSynth-Studio's ``load_lora`` is run beside it.
"""

from __future__ import annotations

import re
import typing
import warnings

import pytest
import torch
from torch import nn

diffusers = pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")

from infralens.adapters import LoRALinear  # noqa: E402
from infralens.pipelines import tiny_flux_transformer, tiny_sd_pipeline  # noqa: E402

from ._diffsynth import import_submodule, load_method, load_module  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]
TARGET = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # 8 -> 8 in the tiny UNet
PEFT_LINEAR = peft.tuners.lora.Linear


def kohya(prefix: str, d_in: int, d_out: int, rank: int, alpha: float | None, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {
        f"{prefix}.lora_down.weight": torch.randn(rank, d_in, generator=g),
        f"{prefix}.lora_up.weight": torch.randn(d_out, rank, generator=g),
    }
    if alpha is not None:
        out[f"{prefix}.alpha"] = torch.tensor(alpha)
    return out


UNET_KEY = "lora_unet_" + TARGET.replace(".", "_")


def wrapped(module: nn.Module) -> list[str]:
    return [n for n, m in module.named_modules() if isinstance(m, PEFT_LINEAR)]


def test_kohya_sd_alpha_becomes_peft_lora_alpha():
    pipe = tiny_sd_pipeline()
    W = pipe.unet.get_submodule(TARGET).weight.detach().clone()
    file = kohya(UNET_KEY, 8, 8, 4, 2.0, 1)
    given = dict(file)
    converted, alphas = pipe.lora_state_dict(given)
    assert given == {}  # the conversion pops every key from the dict it is handed
    assert sorted(converted) == [
        f"unet.{TARGET.rsplit('.', 1)[0]}.processor.to_q_lora.{p}.weight" for p in ("down", "up")
    ]
    assert {float(a) for a in alphas.values()} == {2.0}  # the alphas travel apart, as network_alphas
    pipe.load_lora_weights(dict(file), adapter_name="style")
    layer = pipe.unet.get_submodule(TARGET)
    assert isinstance(layer, PEFT_LINEAR)
    assert (layer.r["style"], layer.lora_alpha["style"], layer.scaling["style"]) == (4, 2.0, 0.5)  # alpha / r
    assert torch.equal(layer.lora_A["style"].weight, file[f"{UNET_KEY}.lora_down.weight"])  # A = lora_down
    assert torch.equal(layer.lora_B["style"].weight, file[f"{UNET_KEY}.lora_up.weight"])  # B = lora_up
    assert torch.equal(layer.base_layer.weight, W)  # W untouched: the adapter runs beside it
    assert wrapped(pipe.unet) == [TARGET]  # inject_adapter_in_model wraps only what the file targets
    base = nn.Linear(8, 8, bias=False)
    base.weight.data.copy_(W)
    ours = LoRALinear(base, rank=4, lora_alpha=2.0)
    with torch.no_grad():
        ours.lora_A.copy_(layer.lora_A["style"].weight)
        ours.lora_B.copy_(layer.lora_B["style"].weight)
        x = torch.randn(3, 8)
        assert torch.allclose(layer(x), ours(x), atol=1e-5)


def test_kohya_text_encoder_keys_load_into_the_text_encoder():
    pipe = tiny_sd_pipeline()
    te = "lora_te_text_model_encoder_layers_0_self_attn_{}_proj"
    file = kohya(UNET_KEY, 8, 8, 4, 2.0, 1) | kohya(te.format("q"), 16, 16, 2, 2.0, 2)
    file |= kohya(te.format("out"), 16, 16, 2, 2.0, 3)
    converted, _ = pipe.lora_state_dict(dict(file))
    assert {k.split(".")[0] for k in converted} == {"unet", "text_encoder"}
    ids = torch.tensor([[0, 5, 9, 2]])  # (B, L) token ids
    with torch.no_grad():
        before = pipe.text_encoder(ids)[0]  # (B, L, D): what a prompt-embedding cache holds
    pipe.load_lora_weights(dict(file), adapter_name="style")
    assert wrapped(pipe.text_encoder) == ["encoder.layers.0.self_attn.q_proj", "encoder.layers.0.self_attn.out_proj"]
    with torch.no_grad():
        assert not torch.allclose(pipe.text_encoder(ids)[0], before, atol=1e-3)  # cached embeddings are stale
    assert type(pipe.scheduler).__name__ == "DDIMScheduler"  # and nothing else in the loop changed


def test_kohya_flux_alpha_is_folded_into_the_weights():
    pipe = diffusers.FluxPipeline(
        scheduler=diffusers.FlowMatchEulerDiscreteScheduler(), vae=None, text_encoder=None, tokenizer=None,
        text_encoder_2=None, tokenizer_2=None, transformer=tiny_flux_transformer(),
    )  # fmt: skip
    file = kohya("lora_unet_double_blocks_0_img_attn_proj", 16, 16, 4, 2.0, 4)
    converted, alphas = diffusers.FluxPipeline.lora_state_dict(dict(file), return_alphas=True)
    assert alphas is None and not any("alpha" in k for k in converted)
    pipe.load_lora_weights(dict(file), adapter_name="f")
    layer = pipe.transformer.get_submodule("transformer_blocks.0.attn.to_out.0")
    assert (layer.r["f"], layer.lora_alpha["f"], layer.scaling["f"]) == (4, 4, 1.0)  # alpha not in the config
    delta = layer.scaling["f"] * layer.lora_B["f"].weight @ layer.lora_A["f"].weight
    up, down = file["lora_unet_double_blocks_0_img_attn_proj.lora_up.weight"], file[
        "lora_unet_double_blocks_0_img_attn_proj.lora_down.weight"]  # fmt: skip
    assert torch.allclose(delta, 2.0 / 4 * up @ down, atol=1e-6)  # ... but in the weights


def test_a_file_without_alphas_loads_with_scale_one_at_any_rank():
    pipe = tiny_sd_pipeline()
    blocks = TARGET.rsplit(".", 1)[0]
    g = torch.Generator().manual_seed(5)
    file = {}
    for proj, rank in (("to_q", 4), ("to_k", 2), ("to_v", 4)):
        file[f"unet.{blocks}.{proj}.lora_A.weight"] = torch.randn(rank, 8, generator=g)
        file[f"unet.{blocks}.{proj}.lora_B.weight"] = torch.randn(8, rank, generator=g)
    pipe.load_lora_weights(file, adapter_name="p")
    layers = [pipe.unet.get_submodule(f"{blocks}.{p}") for p in ("to_q", "to_k", "to_v")]
    assert [m.r["p"] for m in layers] == [4, 2, 4]
    assert [m.scaling["p"] for m in layers] == [1.0, 1.0, 1.0]  # lora_alpha = r per module (rank/alpha patterns)


def test_set_adapters_weights_multiply_the_scaling_and_adapters_add():
    pipe = tiny_sd_pipeline()
    W = pipe.unet.get_submodule(TARGET).weight.detach().clone()
    first = kohya(UNET_KEY, 8, 8, 4, 2.0, 1)
    g = torch.Generator().manual_seed(6)
    A2, B2 = torch.randn(4, 8, generator=g), torch.randn(8, 4, generator=g)
    pipe.load_lora_weights(dict(first), adapter_name="k")
    pipe.load_lora_weights({f"unet.{TARGET}.lora_A.weight": A2, f"unet.{TARGET}.lora_B.weight": B2}, adapter_name="p")
    pipe.set_adapters(["k", "p"], adapter_weights=[1.0, 0.5])
    layer = pipe.unet.get_submodule(TARGET)
    assert (layer.scaling["k"], layer.scaling["p"]) == (0.5, 0.5)  # 1.0 * 2/4 and 0.5 * 4/4
    A1, B1 = first[f"{UNET_KEY}.lora_down.weight"], first[f"{UNET_KEY}.lora_up.weight"]
    x = torch.randn(3, 8)
    with torch.no_grad():
        expected = x @ W.T + 0.5 * x @ A1.T @ B1.T + 0.5 * x @ A2.T @ B2.T
        assert torch.allclose(layer(x), expected, atol=1e-5)


def test_fuse_then_unload_keeps_the_fused_weight_and_unfuse_restores_it():
    file = kohya(UNET_KEY, 8, 8, 4, 2.0, 1)
    A, B = file[f"{UNET_KEY}.lora_down.weight"], file[f"{UNET_KEY}.lora_up.weight"]
    pipe = tiny_sd_pipeline()
    W = pipe.unet.get_submodule(TARGET).weight.detach().clone()
    pipe.load_lora_weights(dict(file), adapter_name="k")
    pipe.fuse_lora(lora_scale=0.7)
    layer = pipe.unet.get_submodule(TARGET)
    assert torch.allclose(layer.base_layer.weight, W + 0.7 * (2.0 / 4) * B @ A, atol=1e-6)
    assert layer.scaling["k"] == pytest.approx(0.7 * 2.0 / 4)  # the scale stays multiplied after fusing
    pipe.unload_lora_weights()
    plain = pipe.unet.get_submodule(TARGET)
    assert type(plain) is nn.Linear and not torch.allclose(plain.weight, W)  # wrappers gone, update kept
    again = tiny_sd_pipeline()
    again.load_lora_weights(dict(file), adapter_name="k")
    again.fuse_lora(lora_scale=0.7)
    again.unfuse_lora()
    again.unload_lora_weights()
    assert torch.allclose(again.unet.get_submodule(TARGET).weight, W, atol=1e-6)


def test_flux_attention_projections_are_3072_square():
    """The default ``FluxTransformer2DModel`` (FLUX.1: 24 heads of 128), built on the meta device."""
    with torch.device("meta"):
        flux = diffusers.FluxTransformer2DModel()
    attn = flux.transformer_blocks[0].attn
    assert (attn.heads, flux.config.attention_head_dim) == (24, 128)
    assert {tuple(getattr(attn, p).weight.shape) for p in ("to_q", "to_k", "to_v")} == {(3072, 3072)}


def test_peft_trains_r_times_d_in_plus_d_out_parameters():
    """PEFT's own count of trainable parameters on a 64-to-48 layer, not the formula's."""
    model = nn.Sequential(nn.Linear(64, 48))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    trainable, total = wrapped.get_nb_trainable_parameters()
    assert trainable == 4 * (64 + 48) == 448
    assert total - trainable == 64 * 48 + 48  # W and b, frozen


@pytest.mark.parametrize("managed", [False, True])
def test_diffsynth_load_lora_fuses_plain_modules_and_hotloads_managed_ones(managed):
    """``BasePipeline.load_lora(module, state_dict=..., alpha=...)``: its default follows VRAM management."""
    layers = import_submodule("core.vram.layers")
    general = load_module("utils/lora/general.py")
    load_lora = load_method("diffusion/base_pipeline.py", "BasePipeline", "load_lora")
    load_lora.__globals__.update(
        torch=torch, Union=typing.Union, LoRAHotLoadMixin=layers.LoRAHotLoadMixin, ModelConfig=object,
        load_state_dict=None,
    )  # fmt: skip

    class Pipe:  # what load_lora reads from the pipeline
        torch_dtype, device = torch.float32, "cpu"
        lora_loader = general.GeneralLoRALoader

        def check_quant_hot_load(self, module):
            return module

    torch.manual_seed(0)
    A, B = torch.randn(4, 12), torch.randn(10, 4)
    module = nn.Module()
    module.proj = nn.Linear(12, 10)
    W = module.proj.weight.detach().clone()
    x = torch.randn(3, 12)
    with torch.no_grad():
        before = module.proj(x)
    if managed:  # what a ModelConfig with offload_device / offload_dtype sets up
        stages = ("offload", "onload", "preparing", "computation")
        config = {
            f"{s}_{what}": torch.float32 if what == "dtype" else "cpu" for s in stages for what in ("dtype", "device")
        }
        module = layers.enable_vram_management(module, {nn.Linear: layers.AutoWrappedLinear}, vram_config=config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_lora(Pipe(), module, state_dict={"proj.lora_A.weight": A, "proj.lora_B.weight": B}, alpha=0.5, verbose=0)
    with torch.no_grad():
        after = module.proj(x)
    assert torch.allclose(after, before + x @ (0.5 * A).T @ B.T, atol=1e-5)  # the same strength either way
    if managed:
        assert torch.equal(module.proj.weight, W) and len(module.proj.lora_A_weights) == 1  # applied per forward
    else:
        assert torch.allclose(module.proj.weight, W + 0.5 * B @ A, atol=1e-6)  # fused into W


def test_the_lora_loading_starter_prints_what_diffusers_did(starter):
    # the session fixture (conftest.py) runs it once, as `python lora_loading.py`, and fails on stderr
    out = starter("diffuser/lab-08-lora-injection-reading/lora_loading.py")
    assert re.search(r"network_alphas: \{'unet\.[^']+to_q_lora\.down\.weight\.alpha': 2\.0", out)
    assert "is now peft.tuners.lora.layer.Linear" in out
    assert "r=4, lora_alpha=2.0, scaling=0.5 = alpha / r" in out
    assert "unet modules wrapped: 1" in out and "text_encoder modules wrapped: 2" in out
    assert "equals LoRALinear with the same A, B, alpha: True" in out
    assert "scaling 0.25 = 0.5 * 2.0 / 4" in out
    assert "layer is Linear again" in out and "weight still carries the LoRA: True" in out
