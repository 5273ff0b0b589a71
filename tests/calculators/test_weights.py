"""weight_memory and dtype_bytes against hand arithmetic and real tensors."""

import math

import pytest
import torch

from infralens.calculators import DEFAULT_INT4_GROUP, weight_memory
from infralens.core import DTYPE_BYTES, dtype_bytes


@pytest.mark.parametrize(
    ("dtype", "torch_dtype"),
    [("fp32", torch.float32), ("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp8", torch.float8_e4m3fn),
     ("int8", torch.int8)],
)  # fmt: skip
def test_bytes_per_value_are_torch_s(dtype, torch_dtype):
    assert dtype_bytes(dtype) == torch.empty((), dtype=torch_dtype).element_size()
    assert weight_memory(params=1000, dtype=dtype).total_bytes == 1000 * dtype_bytes(dtype)


def test_int4_with_group_scales():
    assert DTYPE_BYTES["int4"] == 0.5 and DEFAULT_INT4_GROUP == 128
    m = weight_memory(params=1024, dtype="int4")
    assert (m.group_size, m.weight_bytes, m.scale_bytes) == (128, 512, 1024 / 128 * 2)
    assert weight_memory(params=1024, dtype="int4", group_size=32).scale_bytes == 64
    assert weight_memory(params=1024, dtype="int4", group_size=32, zero_points=True).scale_bytes == 128
    assert weight_memory(params=1024, dtype="int8", group_size=64).scale_bytes == 32
    assert weight_memory(params=1024, dtype="fp8").scale_bytes == 0


def test_int4_on_real_tensors():
    P, G = 2048, 64
    packed = torch.empty(P // 2, dtype=torch.uint8)  # two int4 values per byte
    scales, zeros = torch.empty(P // G, dtype=torch.float16), torch.empty(P // G, dtype=torch.float16)
    m = weight_memory(params=P, dtype="int4", group_size=G, zero_points=True)
    assert m.total_bytes == packed.nbytes + scales.nbytes + zeros.nbytes


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(params=0, dtype="bf16"), ["params", "> 0", "params=8e9"]),
        (dict(params=-1.0, dtype="bf16"), ["params"]),
        (dict(params=math.inf, dtype="bf16"), ["params", "finite"]),
        (dict(params=math.nan, dtype="bf16"), ["params"]),
        (dict(params="8B", dtype="bf16"), ["params"]),
        (dict(params=True, dtype="bf16"), ["params"]),
        (dict(params=8, dtype="int4", group_size=0), ["group_size", "group_size=128"]),
        (dict(params=8, dtype="bf16", zero_points=True), ["zero_points", "group_size=128"]),
        (dict(params=8, dtype="int2"), ["dtype", "int4", "'int2'"]),
        (dict(params=8, dtype=None), ["dtype", "None"]),
    ],
)
def test_errors(kwargs, words):
    with pytest.raises(ValueError) as err:
        weight_memory(**kwargs)
    assert all(w in str(err.value) for w in words)
