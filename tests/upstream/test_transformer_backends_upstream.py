"""Which SDPA kernel transformers' Llama runs on this machine (torch's CPU build), call by call.

The operators are recorded with a TorchDispatchMode while the model runs, so
these are the kernels that executed, not the ones a configuration names.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

pytestmark = [pytest.mark.upstream]

CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


class _Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def llama(**extra) -> LlamaForCausalLM:
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=2, **extra)  # fmt: skip
    torch.manual_seed(0)
    return LlamaForCausalLM(config)


def attention_ops(model, ids, **kwargs) -> list[str]:
    recorder = _Ops()
    with recorder:
        model(ids, **kwargs)
    return [op for op in recorder.ops if "attention" in op or op in ("bmm", "_safe_softmax", "bernoulli_")]


def test_llama_defaults_to_sdpa_and_runs_the_cpu_flash_kernel():
    model = llama().eval()
    assert model.config._attn_implementation == "sdpa"
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    padded = torch.tensor([[1] * 8, [0, 0] + [1] * 6])  # a left-padded row: an explicit mask reaches SDPA
    with torch.no_grad():
        assert attention_ops(model, ids) == [CPU_FLASH]
        assert attention_ops(model, ids, attention_mask=padded) == [CPU_FLASH]


def test_the_same_model_trains_with_dropout_on_the_math_path():
    """A backend is chosen per call: training with attention dropout leaves the fused kernel."""
    model = llama(attention_dropout=0.1)
    ids = torch.randint(1, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    model.train()
    ops = attention_ops(model, ids)
    assert CPU_FLASH not in ops and ops.count("bmm") == 2 and "bernoulli_" in ops
    model.eval()  # dropout is off in eval mode: the fused kernel again
    with torch.no_grad():
        assert attention_ops(model, ids) == [CPU_FLASH]
