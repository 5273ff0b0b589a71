"""Layerwise casting: bytes stored, the dtype computed in, exactness of the round trip, skips, errors."""

import copy

import pytest
import torch
from torch import nn

from infralens.memory import LAYERWISE_SKIP_PATTERNS, enable_layerwise_casting, stored_bytes
from infralens.nets import TinyDiT


def test_bytes_by_hand():
    net = nn.Sequential(nn.Linear(8, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    assert stored_bytes(net) == {torch.float32: 4 * (72 + 16 + 18)}
    enable_layerwise_casting(net, torch.float8_e4m3fn, torch.float32)
    assert stored_bytes(net) == {torch.float8_e4m3fn: 72 + 18, torch.float32: 4 * 16}  # weights and biases cast


def test_output_is_a_float_model_with_weights_rounded_to_fp8():
    """The independent referent: round every cast weight by hand, run in float32, compare exactly."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 4))
    rounded = copy.deepcopy(net)
    for i in (0, 3):
        for p in rounded[i].parameters():
            p.data = p.data.to(torch.float8_e4m3fn).to(torch.float32)
    enable_layerwise_casting(net, torch.float8_e4m3fn, torch.float32)
    x = torch.randn(5, 16)
    before = net[0].weight.clone()
    assert torch.equal(net(x), rounded(x))
    assert torch.equal(net[0].weight.view(torch.uint8), before.view(torch.uint8))  # the round trip is exact


def test_compute_dtype_while_running():
    net = nn.Sequential(nn.Linear(4, 4))
    enable_layerwise_casting(net, torch.float8_e4m3fn, torch.float32)
    seen = []
    net[0].register_forward_pre_hook(lambda m, a: seen.append(m.weight.dtype))
    net(torch.randn(2, 4))
    assert seen == [torch.float32] and net[0].weight.dtype == torch.float8_e4m3fn


def test_skip_patterns_on_the_dit():
    dit = TinyDiT(latent_channels=4, text_dim=8, dim=16, num_layers=2)
    cast = enable_layerwise_casting(dit, torch.float8_e4m3fn, torch.float32)
    assert "patch_embed" not in cast and "proj_out" not in cast  # the default patterns
    assert not any("norm" in n for n in cast)
    assert "blocks.0.attn1.to_qkv" in cast and "blocks.1.ffn.2" in cast
    assert dit.scale_shift_table.dtype == torch.float32  # a bare parameter, no leaf layer
    assert LAYERWISE_SKIP_PATTERNS == ("pos_embed", "patch_embed", "norm", "^proj_in$", "^proj_out$")


def test_a_dtype_read_from_a_cast_layer_breaks_unless_skipped():
    """TinyDiT casts its timestep features to the time embedding's weight dtype: fp8 storage breaks that."""
    dit = TinyDiT(latent_channels=4, text_dim=8, dim=16, num_layers=2)
    z, t, text = torch.randn(1, 4, 8, 8), torch.tensor([500.0]), torch.randn(1, 3, 8)
    broken = copy.deepcopy(dit)
    enable_layerwise_casting(broken, torch.float8_e4m3fn, torch.float32)
    with pytest.raises(RuntimeError):
        broken(z, t, text)
    fixed = copy.deepcopy(dit)
    enable_layerwise_casting(
        fixed, torch.float8_e4m3fn, torch.float32, skip_patterns=(*LAYERWISE_SKIP_PATTERNS, "time_embedding")
    )
    assert fixed(z, t, text).shape == z.shape


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda: enable_layerwise_casting("net"), ["model must be an nn.Module"]),
        (lambda: enable_layerwise_casting(nn.Linear(2, 2), torch.int8), ["storage_dtype must be a floating-point"]),
        (lambda: enable_layerwise_casting(nn.Linear(2, 2), compute_dtype="bf16"), ["compute_dtype must be"]),
        (lambda: enable_layerwise_casting(nn.Linear(2, 2), skip_patterns=[1]), ["skip_patterns must be strings"]),
        (lambda: stored_bytes(3), ["model must be an nn.Module"]),
    ],
)
def test_errors(call, words):
    with pytest.raises(ValueError) as err:
        call()
    for w in words:
        assert w in str(err.value)


def test_a_pattern_is_searched_in_the_dotted_name():
    # re.search(pattern, name): "proj" is found inside "block.proj"; "^proj$" matches only a top-level "proj"
    net = nn.Module()
    net.block = nn.Module()
    net.block.proj = nn.Linear(4, 4)
    net.proj = nn.Linear(4, 4)
    net.out = nn.Linear(4, 4)
    assert enable_layerwise_casting(copy.deepcopy(net), skip_patterns=("proj",)) == ["out"]
    assert enable_layerwise_casting(copy.deepcopy(net), skip_patterns=("^proj$",)) == ["block.proj", "out"]
    assert enable_layerwise_casting(copy.deepcopy(net), skip_patterns=(r"block\.",)) == ["proj", "out"]
