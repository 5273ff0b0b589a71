"""Llama parameter counts: against torch layers assembled by hand, published widths, and every argument error.

The count against transformers' own ``LlamaForCausalLM`` runs in
tests/upstream/test_transformer_params_upstream.py.
"""

import pytest
import torch
from torch import nn

from infralens.core import gated_ffn_params
from infralens.transformer import LLAMA2_7B, llama_param_breakdown, llama_param_count, swiglu_intermediate_size


def hand_built(V, d, f, L, h, h_kv, dh, tied):
    """A Llama-shaped module tree from torch layers only (no infralens code)."""
    layers = nn.ModuleList()
    for _ in range(L):
        layers.append(
            nn.ModuleDict(
                {
                    "q": nn.Linear(d, h * dh, bias=False),
                    "k": nn.Linear(d, h_kv * dh, bias=False),
                    "v": nn.Linear(d, h_kv * dh, bias=False),
                    "o": nn.Linear(h * dh, d, bias=False),
                    "gate": nn.Linear(d, f, bias=False),
                    "up": nn.Linear(d, f, bias=False),
                    "down": nn.Linear(f, d, bias=False),
                    "norm1": nn.RMSNorm(d),
                    "norm2": nn.RMSNorm(d),
                }
            )
        )
    model = nn.ModuleDict({"embed": nn.Embedding(V, d), "layers": layers, "norm": nn.RMSNorm(d)})
    head = nn.Linear(d, V, bias=False)
    if tied:
        head.weight = model["embed"].weight
    model["head"] = head
    return model


@pytest.mark.parametrize(
    ("V", "d", "f", "L", "h", "h_kv", "head_dim", "tied"),
    [
        (101, 32, 88, 2, 4, 4, None, False),  # multi-head
        (101, 32, 88, 3, 4, 2, None, True),  # grouped-query, tied
        (50, 24, 64, 1, 6, 1, None, False),  # multi-query
        (50, 24, 64, 2, 4, 2, 10, False),  # head_dim != d / h
    ],
)
def test_count_equals_numel_of_torch_layers(V, d, f, L, h, h_kv, head_dim, tied):
    model = hand_built(V, d, f, L, h, h_kv, head_dim or d // h, tied)
    counted = sum(p.numel() for p in model.parameters())  # a tied weight is one parameter, counted once
    kwargs = dict(vocab_size=V, hidden_size=d, intermediate_size=f, num_hidden_layers=L, num_attention_heads=h)
    kwargs |= dict(num_key_value_heads=h_kv, tie_word_embeddings=tied, head_dim=head_dim)
    assert llama_param_count(**kwargs) == counted
    parts = llama_param_breakdown(**kwargs)
    assert parts.ffn == sum(
        p.numel() for layer in model["layers"] for k in ("gate", "up", "down") for p in layer[k].parameters()
    )
    assert parts.norms == sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.RMSNorm))
    assert parts.head == (0 if tied else V * d)
    assert parts.per_layer == sum(p.numel() for p in model["layers"][0].parameters())


def test_llama2_7b_by_hand():
    V, d, f, L = 32000, 4096, 11008, 32
    expected = 2 * V * d + L * (4 * d * d + 3 * d * f + 2 * d) + d
    assert expected == 6_738_415_616  # the published "6.7B"
    assert llama_param_count(**LLAMA2_7B) == expected
    parts = llama_param_breakdown(**LLAMA2_7B)
    assert parts.ffn_share_of_block == pytest.approx(3 * d * f / (4 * d * d + 3 * d * f + 2 * d))
    assert 0.66 < parts.ffn_share_of_block < 0.67
    tied = llama_param_count(**LLAMA2_7B | {"tie_word_embeddings": True})
    assert llama_param_count(**LLAMA2_7B) - tied == V * d


def test_gqa_saves_only_k_and_v():
    mha = llama_param_breakdown(**LLAMA2_7B)
    gqa = llama_param_breakdown(**LLAMA2_7B | {"num_key_value_heads": 8})
    d, L = 4096, 32
    assert mha.attention - gqa.attention == L * 2 * d * (32 - 8) * 128
    assert (mha.ffn, mha.embeddings, mha.norms) == (gqa.ffn, gqa.embeddings, gqa.norms)


@pytest.mark.parametrize(
    ("d", "multiple_of", "mult", "f"),
    [
        (4096, 256, None, 11008),  # Llama 2 7B
        (5120, 256, None, 13824),  # Llama 2 13B
        (8192, 4096, 1.3, 28672),  # Llama 2 70B
        (4096, 1024, 1.3, 14336),  # Llama 3 8B
    ],
)
def test_swiglu_width_rule_gives_the_published_widths(d, multiple_of, mult, f):
    assert swiglu_intermediate_size(d, multiple_of=multiple_of, ffn_dim_multiplier=mult) == f


def test_swiglu_width_keeps_the_mlp_budget():
    for d in (512, 1024, 4096, 8192):
        f = swiglu_intermediate_size(d)
        assert f % 256 == 0 and f >= 8 * d / 3 > f - 256
        assert gated_ffn_params(d, f) / (8 * d * d) == pytest.approx(1, abs=3 * 256 / (8 * d))


def test_a_swiglu_ffn_has_three_matrices():
    d, f = 16, 48
    gate, up, down = nn.Linear(d, f, bias=False), nn.Linear(d, f, bias=False), nn.Linear(f, d, bias=False)
    x = torch.randn(5, d)
    y = down(nn.functional.silu(gate(x)) * up(x))  # (5, d): gate and up both read x
    assert y.shape == (5, d)
    assert gated_ffn_params(d, f) == sum(m.weight.numel() for m in (gate, up, down)) == 3 * d * f


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"num_key_value_heads": 5}, ["num_attention_heads=32", "multiple of num_key_value_heads=5", "4 or 8"]),
        (
            {"hidden_size": 4000, "num_attention_heads": 48, "num_key_value_heads": 8},
            ["hidden_size=4000", "head_dim=83"],
        ),
        ({"vocab_size": 0}, ["vocab_size", ">= 1", "vocab_size=32000"]),
        ({"intermediate_size": 1.5}, ["intermediate_size", "whole number"]),
        ({"num_hidden_layers": True}, ["num_hidden_layers", "whole number"]),
        ({"head_dim": 0}, ["head_dim", ">= 1"]),
        ({"tie_word_embeddings": "yes"}, ["tie_word_embeddings", "True or False"]),
    ],
)
def test_errors_name_the_argument(change, words):
    with pytest.raises(ValueError) as err:
        llama_param_count(**LLAMA2_7B | change)
    assert all(w in str(err.value) for w in words), str(err.value)


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"hidden_size": 0}, ["hidden_size", ">= 1"]),
        ({"hidden_size": 4096, "multiple_of": 0}, ["multiple_of", ">= 1"]),
        ({"hidden_size": 4096, "ffn_dim_multiplier": 0}, ["ffn_dim_multiplier", "> 0", "1.3"]),
        ({"hidden_size": 4096, "ffn_dim_multiplier": float("nan")}, ["ffn_dim_multiplier", "finite"]),
    ],
)
def test_swiglu_errors(kwargs, words):
    d = kwargs.pop("hidden_size")
    with pytest.raises(ValueError) as err:
        swiglu_intermediate_size(d, **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_gated_ffn_errors():
    with pytest.raises(ValueError, match=r"hidden must be >= 1, e\.g\. hidden=11008"):
        gated_ffn_params(4096, 0)


def test_breakdown_takes_the_keywords_of_the_count_and_no_others():
    with pytest.raises(TypeError, match="vocab"):
        llama_param_breakdown(**LLAMA2_7B, vocab=3)
    missing = {k: v for k, v in LLAMA2_7B.items() if k != "hidden_size"}
    with pytest.raises(TypeError, match="hidden_size"):
        llama_param_breakdown(**missing)
    assert llama_param_breakdown(**LLAMA2_7B).total == llama_param_count(**LLAMA2_7B)


def test_a_multiplier_below_one_narrows_the_ffn():
    # by hand: floor(2 * 4 * 4096 / 3) = 10922, half of it 5461, rounded up to a multiple of 256: 22 * 256
    assert swiglu_intermediate_size(4096, multiple_of=256, ffn_dim_multiplier=0.5) == 5632
