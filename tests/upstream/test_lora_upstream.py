"""Lab 08 facts against the real packages: LoRA's scaling, zero-initialised B and merging.

* diffusers' own (deprecated, PEFT-free) ``LoRALinearLayer`` initialises its
  up-projection to zero and multiplies by ``network_alpha / rank``;
  ``LoRALinear`` with the same A, B and alpha gives the same output.
* diffusers builds a PEFT ``LoraConfig`` with ``lora_alpha == r`` when a
  checkpoint stores no alpha (``get_peft_kwargs``): scale 1.
* PEFT itself (when installed): ``scaling = lora_alpha / r``, B = 0, only A and
  B trainable, ``set_scale`` multiplies the scaling, and ``merge_and_unload``
  gives the adapter's output. ``LoRALinear`` matches it weight for weight.
* DiffSynth-Studio's loader folds a stored alpha into A as ``alpha / rank`` and
  fuses ``W + alpha_arg * B @ A``, where its ``alpha`` argument is a strength.
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from infralens.adapters import LoRALinear

from ._diffsynth import load_method

pytestmark = pytest.mark.upstream


def test_diffusers_lora_linear_layer_scales_by_network_alpha_over_rank():
    lora_mod = pytest.importorskip("diffusers.models.lora")
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the class is deprecated in favour of PEFT
        up_down = lora_mod.LoRALinearLayer(24, 16, rank=4, network_alpha=8.0)
    assert torch.count_nonzero(up_down.up.weight) == 0  # B = 0 at start
    base = nn.Linear(24, 16)
    ours = LoRALinear(base, rank=4, lora_alpha=8.0)
    with torch.no_grad():
        up_down.up.weight.normal_()
        ours.lora_A.copy_(up_down.down.weight)  # (r, d_in)
        ours.lora_B.copy_(up_down.up.weight)  # (d_out, r)
    x = torch.randn(3, 24)
    with torch.no_grad():
        assert torch.allclose(ours(x), base(x) + up_down(x), atol=1e-6)
        assert torch.allclose(up_down(x), 2.0 * up_down.up(up_down.down(x)), atol=1e-6)


def test_diffusers_assumes_alpha_equals_rank_without_stored_alphas():
    peft_utils = pytest.importorskip("diffusers.utils.peft_utils")
    kwargs = peft_utils.get_peft_kwargs(
        {"^blocks.0.attn.to_q.lora_B.weight": 16}, None, {"blocks.0.attn.to_q.lora_A.weight": torch.zeros(16, 8)}
    )
    assert kwargs["r"] == kwargs["lora_alpha"] == 16  # scaling 1.0
    assert LoRALinear(nn.Linear(32, 32), rank=16).scaling == 1.0  # lora_alpha=None means the same


def test_peft_lora_matches_lora_linear():
    peft = pytest.importorskip("peft")
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(12, 10))
    base = nn.Linear(12, 10)
    base.load_state_dict(model[0].state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["0"]))
    layer = wrapped.base_model.model[0]
    assert layer.scaling["default"] == 8 / 4
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0
    trainable = sorted(n.rsplit(".", 3)[-3] for n, p in wrapped.named_parameters() if p.requires_grad)
    assert trainable == ["lora_A", "lora_B"]
    ours = LoRALinear(base, rank=4, lora_alpha=8)
    x = torch.randn(5, 12)
    with torch.no_grad():
        assert torch.equal(wrapped(x), ours(x))  # both are the base layer exactly
        layer.lora_B["default"].weight.normal_()
        ours.lora_A.copy_(layer.lora_A["default"].weight)
        ours.lora_B.copy_(layer.lora_B["default"].weight)
        assert torch.allclose(wrapped(x), ours(x), atol=1e-6)
        layer.set_scale("default", 0.5)  # what set_adapters(..., weights=0.5) calls
        assert layer.scaling["default"] == 0.5 * 8 / 4
        half = LoRALinear(base, rank=4, lora_alpha=8, lora_scale=0.5)
        half.lora_A.copy_(ours.lora_A)
        half.lora_B.copy_(ours.lora_B)
        assert torch.allclose(wrapped(x), half(x), atol=1e-6)
        layer.set_scale("default", 1.0)
        merged = wrapped.merge_and_unload()[0]
        assert torch.allclose(merged.weight, ours.merge().weight, atol=1e-6)


def test_diffsynth_fuses_w_plus_alpha_b_a_and_folds_stored_alpha_over_rank():
    convert = load_method("utils/lora/general.py", "GeneralLoRALoader", "convert_state_dict")
    get_name_dict = load_method("utils/lora/general.py", "GeneralLoRALoader", "get_name_dict")

    class Loader:
        pass

    loader = Loader()
    loader.get_name_dict = get_name_dict.__get__(loader)
    torch.manual_seed(0)
    A, B = torch.randn(4, 12), torch.randn(10, 4)
    plain = {"blocks.0.proj.lora_A.weight": A, "blocks.0.proj.lora_B.weight": B}
    with_alpha = {**plain, "blocks.0.proj.alpha": torch.tensor(8.0)}
    namespace = convert.__globals__
    namespace["warnings"] = warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DiffSynth warns when it finds an alpha
        folded = convert(loader, with_alpha)
    assert torch.equal(convert(loader, plain)["blocks.0.proj.lora_A.weight"], A)  # no alpha: s = 1
    assert torch.allclose(folded["blocks.0.proj.lora_A.weight"], A * 8 / 4)  # alpha / rank folded into A
    fuse = load_method("utils/lora/general.py", "GeneralLoRALoader", "fuse_lora_to_base_model")
    loader.convert_state_dict = convert.__get__(loader)
    loader.device, loader.torch_dtype = "cpu", torch.float32
    model = nn.Module()
    model.blocks = nn.ModuleList([nn.Module()])
    model.blocks[0].proj = nn.Linear(12, 10)
    w = model.blocks[0].proj.weight.detach().clone()
    fuse.__globals__["torch"] = torch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fuse(loader, model, plain, alpha=0.7)  # prints how many layers it fused
    assert torch.allclose(model.blocks[0].proj.weight, w + 0.7 * B @ A, atol=1e-6)
