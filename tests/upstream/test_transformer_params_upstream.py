"""infralens.transformer's parameter counts against transformers' LlamaForCausalLM, built on the meta device.

The meta device gives every parameter its shape and no storage, so a 7B or 8B
model costs nothing to build; ``sum(p.numel())`` is transformers' own count.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402

from infralens.transformer import (  # noqa: E402
    LLAMA2_7B,
    llama_param_breakdown,
    llama_param_count,
    swiglu_intermediate_size,
)

pytestmark = [pytest.mark.upstream]

FIELDS = tuple(LLAMA2_7B)
GQA_8B = {  # shaped like Llama 3 8B's published config: grouped-query attention, a 128,256-token vocabulary
    "vocab_size": 128256,
    "hidden_size": 4096,
    "intermediate_size": 14336,
    "num_hidden_layers": 32,
    "num_attention_heads": 32,
    "num_key_value_heads": 8,
    "tie_word_embeddings": False,
}
CONFIGS = {
    "llama-2-7b": LLAMA2_7B,
    "gqa-8b": GQA_8B,
    "tied-gqa": GQA_8B | {"tie_word_embeddings": True, "num_hidden_layers": 2},
    "head-dim": {
        **LLAMA2_7B,
        "num_hidden_layers": 2,
        "num_attention_heads": 16,
        "num_key_value_heads": 4,
        "head_dim": 96,
    },
}


def meta_model(fields: dict) -> LlamaForCausalLM:
    with torch.device("meta"):
        return LlamaForCausalLM(LlamaConfig(**fields))


def numel(params) -> int:
    return sum(p.numel() for p in params)


@pytest.mark.parametrize("name", CONFIGS)
def test_llama_param_count_equals_transformers(name):
    fields = CONFIGS[name]
    model = meta_model(fields)
    assert llama_param_count(**fields) == numel(model.parameters())


def test_llama2_7b_is_6_738_415_616():
    assert numel(meta_model(LLAMA2_7B).parameters()) == llama_param_count(**LLAMA2_7B) == 6_738_415_616


def test_breakdown_by_module():
    """Each part of the breakdown is the parameters of the modules transformers names for it."""
    for fields in (LLAMA2_7B, GQA_8B):
        model = meta_model(fields)
        named = dict(model.named_parameters())
        parts = llama_param_breakdown(**fields)

        def total(*words, named=named):
            return numel(p for k, p in named.items() if any(w in k for w in words))

        assert parts.embeddings == total("embed_tokens")
        assert parts.attention == total("self_attn.")
        assert parts.ffn == total("mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
        assert parts.norms == total("layernorm", "model.norm")
        assert parts.head == total("lm_head")
        assert parts.per_layer == numel(model.model.layers[0].parameters())


def test_tied_head_shares_the_embedding_table():
    model = meta_model(CONFIGS["tied-gqa"])
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert llama_param_breakdown(**CONFIGS["tied-gqa"]).head == 0


def test_llama_config_defaults_are_llama2_7b():
    config = LlamaConfig()
    assert {k: getattr(config, k) for k in FIELDS} == LLAMA2_7B
    assert config.head_dim == 4096 // 32
    assert config.attention_bias is False and config.mlp_bias is False  # the count has no biases


def test_default_intermediate_size_is_the_swiglu_rule():
    assert LlamaConfig().intermediate_size == swiglu_intermediate_size(4096) == 11008


def test_llama_mlp_is_three_matrices_and_silu():
    """The FFN computes down(silu(gate(x)) * up(x)) with no other weights."""
    config = LlamaConfig(
        vocab_size=10, hidden_size=16, intermediate_size=48, num_attention_heads=2, num_hidden_layers=1
    )
    torch.manual_seed(0)
    mlp = LlamaForCausalLM(config).model.layers[0].mlp
    assert config.hidden_act == "silu"
    assert [n for n, _ in mlp.named_parameters()] == ["gate_proj.weight", "up_proj.weight", "down_proj.weight"]
    x = torch.randn(3, 16)
    gate, up = x @ mlp.gate_proj.weight.T, x @ mlp.up_proj.weight.T  # (3, f) each
    expected = (torch.nn.functional.silu(gate) * up) @ mlp.down_proj.weight.T  # (3, d)
    torch.testing.assert_close(mlp(x), expected)


def test_other_families_differ_where_the_page_says():
    """GPT-2: biases, LayerNorm shifts, a two-matrix MLP, tied embeddings; Gemma ties; Qwen2 biases Q, K, V only."""
    from transformers import GemmaConfig, GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM

    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_positions=16, n_embd=16, n_layer=1, n_head=2))
    block = gpt2.transformer.h[0]
    assert gpt2.config.tie_word_embeddings and gpt2.lm_head.weight is gpt2.transformer.wte.weight
    assert block.attn.c_attn.bias is not None and block.ln_1.bias is not None
    assert [n for n, _ in block.mlp.named_parameters() if n.endswith("weight")] == ["c_fc.weight", "c_proj.weight"]
    assert GemmaConfig().tie_word_embeddings
    qwen = Qwen2ForCausalLM(Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                        num_attention_heads=2, num_key_value_heads=1))  # fmt: skip
    attn = qwen.model.layers[0].self_attn
    assert all(getattr(attn, f"{p}_proj").bias is not None for p in "qkv") and attn.o_proj.bias is None
    assert all(m.bias is None for m in (qwen.model.layers[0].mlp.gate_proj, qwen.model.layers[0].mlp.down_proj))
