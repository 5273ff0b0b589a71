"""TinyTextEncoder and its byte tokenizer: Wan's prompt contract at toy size."""

from __future__ import annotations

import pytest
import torch

from infralens.nets import TinyTextEncoder, tokenize


def test_tokenize_bytes_end_and_padding():
    ids, mask = tokenize(["ab", "é"], max_length=5)
    # 'a' = 97, 'b' = 98 shifted by 2; 'é' is two UTF-8 bytes (195, 169); 1 ends, 0 pads
    assert ids.tolist() == [[99, 100, 1, 0, 0], [197, 171, 1, 0, 0]]
    assert mask.tolist() == [[True, True, True, False, False], [True, True, True, False, False]]
    assert ids.dtype == torch.long and mask.dtype == torch.bool
    one, _ = tokenize("ab", max_length=5)
    assert torch.equal(one, ids[:1])


@pytest.mark.parametrize(
    ("prompts", "max_length", "message"),
    [
        (
            "abc",
            3,
            "prompt 0 is 3 bytes, but max_length=3 holds at most 2 bytes and the end token; shorten it or "
            "raise max_length to 4",
        ),
        ("a", 0, "max_length must be >= 1, e.g. max_length=32; got 0"),
        ([], 4, "prompts must be a string or a non-empty list of strings, e.g. ['a cat']; got []"),
        (["a", 3], 4, "prompts must be a string or a non-empty list of strings, e.g. ['a cat']; got ['a', 3]"),
    ],
)
def test_tokenize_refuses(prompts, max_length, message):
    with pytest.raises(ValueError) as info:
        tokenize(prompts, max_length)
    assert str(info.value) == message


def test_output_shape_dtype_and_zeroed_padding():
    te = TinyTextEncoder(dim=32, max_length=16).to(torch.bfloat16)
    out = te.encode(["a red fox", "hi"])
    assert out.shape == (2, 16, 32) and out.dtype == torch.bfloat16
    _, mask = tokenize(["a red fox", "hi"], 16)
    assert torch.equal(out[~mask], torch.zeros_like(out[~mask]))
    assert bool(out[mask].ne(0).all())


def test_padding_does_not_change_the_real_tokens():
    """The mask hides padded keys: the same prompt padded to 8 or to 32 gives the same features."""
    te = TinyTextEncoder(dim=32, max_length=32)
    short_ids, short_mask = tokenize("a cat", 8)
    long_ids, long_mask = tokenize("a cat", 32)
    short, long = te(short_ids, short_mask), te(long_ids, long_mask)
    assert torch.allclose(short[0, :6], long[0, :6], atol=1e-6)
    # without the mask, padded positions would leak into the real ones
    leaky = te(long_ids, torch.ones_like(long_mask))
    assert not torch.allclose(leaky[0, :6], long[0, :6], atol=1e-3)


def test_weights_are_fixed_by_the_seed():
    a, b, c = TinyTextEncoder(seed=0), TinyTextEncoder(seed=0), TinyTextEncoder(seed=1)
    assert torch.equal(a.encode("x"), b.encode("x"))
    assert not torch.equal(a.encode("x"), c.encode("x"))
    state = torch.random.get_rng_state()
    TinyTextEncoder(seed=3)
    assert torch.equal(state, torch.random.get_rng_state())  # the global generator is left alone


def test_parameter_count_from_the_architecture():
    V, D, layers = 258, 32, 2
    te = TinyTextEncoder(vocab_size=V, dim=D, num_layers=layers)
    # embedding V*D; per block: 2 RMSNorm scales, qkv 3D^2, out D^2, gate + value 2 * 2D^2, down 2D^2; final norm D
    per_block = 2 * D + 3 * D * D + D * D + 2 * (2 * D * D) + 2 * D * D
    assert sum(p.numel() for p in te.parameters()) == V * D + layers * per_block + D


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"vocab_size": 256}, "vocab_size must be >= 258 (pad, end and 256 byte values), e.g. vocab_size=258; got 256"),
        ({"dim": 30, "num_heads": 4}, "num_heads must divide dim=30, e.g. num_heads=2; got 4"),
        ({"dim": 0}, "dim must be >= 1, e.g. dim=32; got 0"),
        ({"num_layers": 1.5}, "num_layers must be a whole number >= 1, e.g. num_layers=2; got 1.5"),
        ({"max_length": 0}, "max_length must be >= 1, e.g. max_length=32; got 0"),
    ],
)
def test_constructor_refuses(kwargs, message):
    with pytest.raises(ValueError) as info:
        TinyTextEncoder(**kwargs)
    assert str(info.value) == message


def test_forward_refuses_bad_inputs():
    te = TinyTextEncoder()
    ids, mask = tokenize("a", 4)
    with pytest.raises(ValueError, match=r"^input_ids must be integer ids of shape \(B, L\), .*got \(4,\)$"):
        te(ids[0], mask[0])
    with pytest.raises(ValueError, match=r"^input_ids must be integer ids .*got \(1, 4\)$"):
        te(ids.float(), mask)
    with pytest.raises(ValueError, match=r"^attention_mask must have the shape of input_ids \(1, 4\); got \(1, 3\)$"):
        te(ids, mask[:, :3])
    with pytest.raises(ValueError, match=r"^input_ids must lie in \[0, 258\), the vocab_size; got 300$"):
        te(torch.tensor([[300, 1]]), torch.tensor([[True, True]]))
