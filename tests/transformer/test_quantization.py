"""Symmetric quantization: the codes of torch's reference quantization ops, the rounding bound, measured bytes."""

import pytest
import torch
import torch.ao.quantization.fx._decomposed

from infralens.calculators import weight_memory
from infralens.transformer import pack_int4, quantize_symmetric, unpack_int4

ops = torch.ops.quantized_decomposed


def weight(out=64, inp=256, seed=0):
    return torch.randn(out, inp, generator=torch.Generator().manual_seed(seed)) * 0.02


def test_int8_rows_equal_torch_quantize_per_channel():
    w = weight()
    q = quantize_symmetric(w, bits=8, scheme="row")
    scales = q.scale.float().flatten()  # (out,)
    theirs = ops.quantize_per_channel(w, scales, torch.zeros(64, dtype=torch.int64), 0, -127, 127, torch.int8)
    assert torch.equal(q.codes, theirs)
    back = ops.dequantize_per_channel(theirs, scales, None, 0, -127, 127, torch.int8)
    assert torch.allclose(q.dequantize(), back)


def test_int4_groups_equal_torch_quantize_per_channel_group():
    w = weight()
    q = quantize_symmetric(w, bits=4, scheme="group", group_size=128)
    scales = q.scale.float().flatten()  # (out * in / 128,)
    zeros = torch.zeros_like(scales, dtype=torch.int32)
    theirs = ops.quantize_per_channel_group(w, scales, zeros, -8, 7, torch.int8, 128)
    assert torch.equal(q.codes, theirs)
    assert q.codes.min() >= -7 and q.codes.max() <= 7  # symmetric: -8 is never used
    back = ops.dequantize_per_channel_group(theirs, scales, zeros, -8, 7, torch.int8, 128, torch.float32)
    assert torch.allclose(q.dequantize(), back)


def test_per_tensor_equals_torch_quantize_per_tensor():
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(3))
    q = quantize_symmetric(x, bits=8, scheme="tensor")
    s = q.scale.float().item()
    assert torch.equal(q.codes, ops.quantize_per_tensor(x, s, 0, -127, 127, torch.int8))


@pytest.mark.parametrize(("bits", "scheme"), [(8, "tensor"), (8, "row"), (8, "group"), (4, "row"), (4, "group")])
def test_rounding_error_is_at_most_half_a_step(bits, scheme):
    w = weight(seed=bits)
    q = quantize_symmetric(w, bits=bits, scheme=scheme, group_size=64)
    step = q.scale.float()  # one quantisation step per block
    err = (q.dequantize() - w).abs()
    bound = (step / 2 * 1.001).expand(q.blocks.shape).reshape(w.shape)  # float16 scale rounding: a hair over
    assert (err <= bound).all()
    assert q.codes.abs().max() == 2 ** (bits - 1) - 1  # each block's largest value uses the largest code


def test_measured_bytes_equal_weight_memory():
    w = weight(out=32, inp=512)
    int4 = quantize_symmetric(w, bits=4, scheme="group", group_size=128)
    assert int4.packed().dtype == torch.uint8 and int4.packed().shape == (32, 256)
    assert int4.nbytes == weight_memory(params=w.numel(), dtype="int4", group_size=128).total_bytes
    int8 = quantize_symmetric(w, bits=8, scheme="row")  # one scale per row of 512
    assert int8.nbytes == weight_memory(params=w.numel(), dtype="int8", group_size=512).total_bytes


def test_finer_scales_lower_the_error():
    w = weight(out=128, inp=1024)
    w[:, 3] *= 20  # one large input channel: every row's max, but only one group's
    errs = {
        s: (quantize_symmetric(w, bits=4, scheme=s).dequantize() - w).pow(2).mean().item()
        for s in ("tensor", "row", "group")
    }
    assert errs["group"] < errs["row"] < errs["tensor"]


def test_an_outlier_channel_breaks_per_tensor_int8_activations():
    x = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))  # (tokens, channels)
    x_out = x.clone()
    x_out[:, 7] *= 60  # one outlier channel, as in LLM.int8()'s emergent features
    normal = torch.arange(512) != 7

    def rel_err(t, scheme):
        q = quantize_symmetric(t, bits=8, scheme=scheme).dequantize()
        return ((q - t)[:, normal].norm() / t[:, normal].norm()).item()

    assert rel_err(x, "tensor") < 0.02
    assert rel_err(x_out, "tensor") > 0.3  # steps of about 1.4 for values of size 1
    assert rel_err(x_out, "row") > 10 * rel_err(x, "row")  # per token helps little: the outlier is in every token


def test_pack_roundtrip():
    codes = torch.randint(-8, 8, (5, 64), dtype=torch.int8)
    packed = pack_int4(codes)
    assert packed.shape == (5, 32) and packed.nbytes == codes.nbytes // 2
    assert torch.equal(unpack_int4(packed), codes)


def test_all_zero_block():
    q = quantize_symmetric(torch.zeros(2, 8), scheme="row")
    assert torch.equal(q.dequantize(), torch.zeros(2, 8))


@pytest.mark.parametrize(
    ("x", "kwargs", "words"),
    [
        (torch.zeros(4, 8, dtype=torch.long), {}, ["floating-point"]),
        (torch.tensor(1.0), {}, ["one axis or more"]),
        (torch.zeros(4, 8), {"bits": 3}, ["bits must be 8 or 4"]),
        (torch.zeros(4, 8), {"scheme": "channel"}, ["scheme must be one of tensor, row, group"]),
        (torch.zeros(4, 96), {"scheme": "group", "group_size": 128}, ["group_size=128", "96", "group_size=32"]),
        (torch.zeros(4, 96), {"scheme": "group", "group_size": 0}, ["group_size", ">= 1"]),
        (torch.zeros(4, 7), {"bits": 4}, ["packed in pairs", "7"]),
    ],
)
def test_errors(x, kwargs, words):
    with pytest.raises(ValueError) as err:
        quantize_symmetric(x, **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_pack_errors():
    with pytest.raises(ValueError, match="int8 in"):
        pack_int4(torch.tensor([9, 0], dtype=torch.int8))


def test_int8_rows_equal_torch_quantize_per_channel_which_warns_it_is_deprecated():
    """torch's own per-channel qint8 tensor holds the same codes; creating one warns of its deprecation."""
    w = weight()
    q = quantize_symmetric(w, bits=8, scheme="row")
    scales = q.scale.double().flatten()
    with pytest.warns(UserWarning, match="deprecated"):
        theirs = torch.quantize_per_channel(w, scales, torch.zeros(64, dtype=torch.long), 0, torch.qint8)
    assert torch.equal(theirs.int_repr(), q.codes)
    assert torch.allclose(theirs.dequantize(), q.dequantize())


def test_groups_run_along_the_last_axis_of_any_tensor():
    x = torch.randn(2, 3, 256, generator=torch.Generator().manual_seed(0))
    q = quantize_symmetric(x, bits=8, scheme="group", group_size=128)
    assert q.blocks.shape == (2, 3, 2, 128)  # (..., n / G, G)
    assert torch.allclose(q.dequantize(), x, atol=x.abs().max().item() / 127)
