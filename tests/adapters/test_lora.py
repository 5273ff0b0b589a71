"""LoRA: frozen W, delta = (alpha / r) B A, B = 0 at start, merged == unmerged, parameter counts, errors."""

import re
from pathlib import Path

import pytest
import torch
from torch import nn

from infralens.adapters import LoRALinear, lora_param_count

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffuser/lab-08-lora-injection-reading/lora_injection.py"


def trained(layer: LoRALinear, seed: int = 1) -> LoRALinear:
    """Give B values, as training would."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=g))
    return layer


@pytest.mark.parametrize(("d_in", "d_out", "rank", "shape"), [(64, 32, 4, (2, 10)), (8, 8, 8, ()), (5, 3, 1, (7,))])
def test_new_adapter_is_an_exact_no_op(d_in, d_out, rank, shape):
    torch.manual_seed(0)
    base = nn.Linear(d_in, d_out)
    layer = LoRALinear(base, rank=rank, lora_alpha=16)
    x = torch.randn(*shape, d_in)
    assert torch.equal(layer(x), base(x))
    assert torch.count_nonzero(layer.lora_B) == 0
    assert torch.count_nonzero(layer.lora_A) == layer.lora_A.numel()  # A is random, not zero


@pytest.mark.parametrize(
    ("rank", "alpha", "scale", "expected"), [(4, 8, 1.0, 2.0), (8, None, 1.0, 1.0), (16, 8, 0.5, 0.25)]
)
def test_output_is_wx_plus_b_plus_s_bax(rank, alpha, scale, expected):
    torch.manual_seed(0)
    base = nn.Linear(32, 24).double()
    layer = trained(LoRALinear(base, rank=rank, lora_alpha=alpha, lora_scale=scale))
    assert layer.scaling == expected
    x = torch.randn(3, 5, 32, dtype=torch.float64)
    W, b, A, B = base.weight, base.bias, layer.lora_A, layer.lora_B
    manual = torch.einsum("oi,bli->blo", W + expected * B @ A, x) + b
    assert torch.allclose(layer(x), manual, atol=1e-12)


def test_only_a_and_b_train_and_a_gets_no_gradient_while_b_is_zero():
    torch.manual_seed(0)
    base = nn.Linear(16, 12)
    layer = LoRALinear(base, rank=4)
    assert [n for n, p in layer.named_parameters() if p.requires_grad] == ["lora_A", "lora_B"]
    layer(torch.randn(4, 16)).pow(2).sum().backward()
    assert base.weight.grad is None and base.bias.grad is None
    assert torch.count_nonzero(layer.lora_A.grad) == 0  # dL/dA = s B^T (...) = 0 while B = 0
    assert torch.count_nonzero(layer.lora_B.grad) > 0  # B moves first


def test_delta_has_rank_at_most_r_and_the_base_dtype():
    torch.manual_seed(0)
    layer = trained(LoRALinear(nn.Linear(40, 30), rank=3, lora_alpha=6))
    delta = layer.delta_weight()
    assert delta.shape == (30, 40) and delta.dtype == torch.float32
    assert int(torch.linalg.matrix_rank(delta)) == 3
    assert torch.allclose(delta, 2.0 * layer.lora_B @ layer.lora_A, atol=1e-6)


@pytest.mark.parametrize("bias", [True, False])
def test_merge_gives_the_adapter_output_and_leaves_the_adapter_alone(bias):
    torch.manual_seed(0)
    base = nn.Linear(64, 48, bias=bias)
    w_before = base.weight.detach().clone()
    layer = trained(LoRALinear(base, rank=8, lora_alpha=4))
    x = torch.randn(2, 16, 64)
    rng = torch.random.get_rng_state()
    merged = layer.merge()
    assert torch.equal(torch.random.get_rng_state(), rng)  # merging draws no random numbers
    assert isinstance(merged, nn.Linear) and not any(p.requires_grad for p in merged.parameters())
    assert torch.allclose(merged.weight, w_before + 0.5 * layer.lora_B @ layer.lora_A, atol=1e-6)
    assert torch.allclose(merged(x), layer(x), atol=1e-5)
    assert torch.equal(base.weight, w_before)  # W itself was not touched
    assert (merged.bias is None) == (not bias)


def test_merge_in_bfloat16_is_close_not_equal():
    torch.manual_seed(0)
    layer = trained(LoRALinear(nn.Linear(64, 64).to(torch.bfloat16), rank=8))
    x = torch.randn(4, 64, dtype=torch.bfloat16)
    merged = layer.merge()
    assert merged.weight.dtype == torch.bfloat16
    exact = x.double() @ (layer.base.weight.double() + layer._delta().double()).T + layer.base.bias.double()
    # W + s B A rounded once to bf16 (relative 2^-8), then a bf16 matmul: a few bf16 steps of the output's size
    err = (merged(x).double() - exact).abs().max() / exact.abs().max()
    assert err < 2**-5


def test_lora_scale_zero_switches_the_adapter_off():
    torch.manual_seed(0)
    base = nn.Linear(10, 10)
    layer = trained(LoRALinear(base, rank=2, lora_scale=0.0))
    x = torch.randn(3, 10)
    assert torch.equal(layer(x), base(x))


@pytest.mark.parametrize(("d_in", "d_out", "rank"), [(3072, 3072, 16), (64, 48, 4), (4096, 3072, 1), (7, 5, 5)])
def test_param_count_is_the_size_of_a_and_b(d_in, d_out, rank):
    expected = rank * (d_in + d_out)
    assert lora_param_count(d_in, d_out, rank) == expected
    if d_in * d_out < 10**6:
        layer = LoRALinear(nn.Linear(d_in, d_out), rank=rank)
        assert sum(p.numel() for p in layer.parameters() if p.requires_grad) == expected


def test_param_count_of_a_flux_projection():
    assert lora_param_count(3072, 3072, rank=16) == 98_304
    assert lora_param_count(3072, 3072, rank=16) * 96 == 3072 * 3072  # 1/96 of W


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"base": nn.Conv2d(4, 4, 1), "rank": 4},
            "base must be a torch.nn.Linear, e.g. LoRALinear(nn.Linear(3072, 3072), rank=8); got Conv2d",
        ),
        ({"rank": 0}, "rank must be >= 1, e.g. rank=8; got 0"),
        ({"rank": 2.5}, "rank must be a whole number >= 1, e.g. rank=8; got 2.5"),
        (
            {"rank": 17},
            "rank must be <= min(in_features, out_features) = 12: B A has rank at most 12, so a larger rank adds "
            "parameters but no expressiveness; e.g. rank=8; got 17",
        ),
        ({"rank": 4, "lora_alpha": 0}, "lora_alpha must be > 0, e.g. lora_alpha=16; got 0"),
        ({"rank": 4, "lora_alpha": float("nan")}, "lora_alpha must be a finite number, e.g. lora_alpha=16; got nan"),
        ({"rank": 4, "lora_alpha": "8"}, "lora_alpha must be a finite number, e.g. lora_alpha=16; got '8'"),
        ({"rank": 4, "lora_scale": float("inf")}, "lora_scale must be a finite number, e.g. lora_scale=1.0; got inf"),
        ({"rank": 4, "lora_scale": True}, "lora_scale must be a finite number, e.g. lora_scale=1.0; got True"),
    ],
)
def test_constructor_errors(kwargs, message):
    kwargs = {"base": nn.Linear(16, 12), **kwargs}
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        LoRALinear(**kwargs)


def test_rank_limit_example_stays_valid_for_tiny_layers():
    with pytest.raises(ValueError, match=re.escape("e.g. rank=3; got 4")):
        LoRALinear(nn.Linear(3, 5), rank=4)


@pytest.mark.parametrize("x", [torch.randn(2, 15), torch.tensor(1.0), [1.0] * 16])
def test_forward_input_errors(x):
    layer = LoRALinear(nn.Linear(16, 12), rank=4)
    got = tuple(x.shape) if isinstance(x, torch.Tensor) else "list"
    message = f"x must be a tensor whose last axis has in_features = 16, e.g. torch.randn(2, 10, 16); got {got}"
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        layer(x)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 8, 4), "in_features must be >= 1, e.g. in_features=3072; got 0"),
        ((8, -1, 4), "out_features must be >= 1, e.g. out_features=3072; got -1"),
        ((8, 8, 0), "rank must be >= 1, e.g. rank=8; got 0"),
        ((8, 6, 7), "rank must be <= min(in_features, out_features) = 6"),
    ],
)
def test_param_count_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        lora_param_count(*args)


def test_starter_prints_checked_values(starter):
    out = starter(STARTER)
    assert re.search(r"^\s+x\s+\(2, 16, 64\)", out, re.M)
    assert re.search(r"^\s+A\s+\(4, 64\)", out, re.M) and re.search(r"^\s+B\s+\(48, 4\)", out, re.M)
    assert re.search(r"^\s+delta\s+\(48, 64\)\s+s \* B @ A, rank 4 <= r = 4$", out, re.M)
    assert "scaling s = lora_alpha / r = 8 / 4 = 2.0" in out
    assert "new adapter (B = 0) is a no-op: True" in out
    assert "merged weight gives the adapter path's output: True" in out
    assert "trainable parameters: ['lora_A', 'lora_B']" in out
    assert "base W and b frozen: True" in out
    assert f"W has {3072 * 3072:,} parameters" in out
    rows = re.findall(r"^\s+(\d+)\s+([\d,]+)\s+([\d.]+)%$", out, re.M)
    assert [int(r) for r, _, _ in rows] == [4, 16, 64, 128]
    for r, n, pct in rows:
        assert int(n.replace(",", "")) == int(r) * (3072 + 3072)
        assert float(pct) == pytest.approx(100 * int(r) * 6144 / 3072**2, abs=0.005)


def test_an_alpha_below_one_is_a_small_scaling_not_an_error():
    # PEFT accepts any lora_alpha > 0: alpha 0.5 at rank 4 scales the update by 1/8
    layer = LoRALinear(nn.Linear(8, 8), rank=4, lora_alpha=0.5)
    assert layer.scaling == 0.125
    with pytest.raises(ValueError, match="lora_alpha must be > 0"):
        LoRALinear(nn.Linear(8, 8), rank=4, lora_alpha=0)
