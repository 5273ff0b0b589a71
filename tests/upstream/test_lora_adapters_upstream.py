"""Several LoRA adapters on one diffusers model: ``set_adapters`` weights and ``fuse_lora`` (diffusers 0.42.1, PEFT).

Two rank-4 adapters on the ``to_q`` projections of a tiny random ``UNet2DConditionModel``. ``set_adapters``
with weights multiplies each adapter's ``lora_alpha / r`` by its weight, so a layer returns
``W x + sum_i w_i (alpha / r) B_i A_i x``; ``fuse_lora`` folds the active adapters into the weights and the
model's output does not change.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")

from ._tiny import tiny_sd_unet  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def unet_with_two_adapters():
    unet = tiny_sd_unet()
    for name in ("a", "b"):
        config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=["to_q"], init_lora_weights=True)
        unet.add_adapter(config, adapter_name=name)
    with torch.no_grad():
        for name, param in unet.named_parameters():
            if "lora_B" in name:
                param.normal_()  # "trained": a fresh adapter is a no-op
    return unet


def test_set_adapters_weights_each_adapter_linearly():
    unet = unet_with_two_adapters()
    unet.set_adapters(["a", "b"], weights=[0.5, 2.0])
    layer = next(m for n, m in unet.named_modules() if n.endswith("attn1.to_q"))
    assert layer.scaling == {"a": 0.5 * 8 / 4, "b": 2.0 * 8 / 4}
    x = torch.randn(2, 7, layer.in_features)
    with torch.no_grad():
        delta = {k: layer.lora_B[k](layer.lora_A[k](x)) * (8 / 4) for k in ("a", "b")}
        assert torch.allclose(layer(x), layer.base_layer(x) + 0.5 * delta["a"] + 2.0 * delta["b"], atol=1e-5)


def test_fuse_lora_keeps_the_output():
    unet = unet_with_two_adapters()
    unet.set_adapters(["a", "b"], weights=[1.0, 1.0])
    t, latents, text = torch.tensor([500]), torch.randn(1, 4, 8, 8), torch.randn(1, 5, 12)
    with torch.no_grad():
        unfused = unet(latents, t, encoder_hidden_states=text).sample
        unet.fuse_lora(lora_scale=1.0)
        fused = unet(latents, t, encoder_hidden_states=text).sample
        base = tiny_sd_unet()(latents, t, encoder_hidden_states=text).sample
    assert torch.allclose(unfused, fused, atol=1e-5)
    assert not torch.allclose(fused, base, atol=1e-3)  # the adapters did change the model
