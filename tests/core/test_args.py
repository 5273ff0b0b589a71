"""infralens.core: suggestions pass the whole rule, seeding leaves the caller's stream alone, one dtype vocabulary."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from infralens.core import dtype_bytes, dtype_name, exact_keys, multiple_of, nearest_valid, seeded, torch_dtype


@given(value=st.integers(1, 5000), step=st.integers(1, 64), offset=st.integers(0, 3))
def test_every_suggestion_passes_the_rule_and_brackets_the_value(value, step, offset):
    def rule(v):
        return v >= offset and (v - offset) % step == 0

    near = nearest_valid(value, rule)
    assert near and all(rule(v) for v in near) and value not in near
    below = [v for v in near if v < value]
    above = [v for v in near if v > value]
    # nothing valid lies strictly between a suggestion and the value
    assert all(not rule(v) for lo in below for v in range(lo + 1, value))
    assert all(not rule(v) for hi in above for v in range(value + 1, hi))


def test_multiple_of_names_the_argument_the_rule_and_valid_values():
    assert multiple_of("width", 832, 16, why="x") == 832
    with pytest.raises(ValueError, match=r"^width=833 is not a multiple of 16 \(why\); nearest valid: 832 or 848$"):
        multiple_of("width", 833, 16, why="why")
    with pytest.raises(ValueError, match=r"width must be >= 1"):
        multiple_of("width", 0, 16, why="why")


def test_seeded_restores_the_callers_random_stream():
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    with seeded(0):
        inside = torch.rand(3)
    assert torch.equal(torch.rand(3), expected)
    with seeded(0):
        assert torch.equal(torch.rand(3), inside)


@pytest.mark.parametrize(
    ("short", "long", "dtype"), [("bf16", "bfloat16", torch.bfloat16), ("fp32", "float32", torch.float32)]
)
def test_one_dtype_vocabulary(short, long, dtype):
    assert dtype_name(long) == dtype_name(short) == short
    assert dtype_bytes(long) == dtype_bytes(short) == torch.empty((), dtype=dtype).element_size()
    assert torch_dtype(long) is torch_dtype(short) is dtype
    with pytest.raises(ValueError, match=r"dtype must be one of fp32, bf16.*got 'float64'"):
        dtype_name("float64")
    with pytest.raises(ValueError, match="no torch dtype here"):
        torch_dtype("int4")


def test_exact_keys_names_the_full_path_and_a_valid_value():
    rules = {"owner": "the config", "why": "write every key", "examples": {"seed": 0}}
    exact_keys({"seed": 1}, ("seed",), path="", **rules)  # exactly the keys: nothing raised
    with pytest.raises(ValueError) as info:
        exact_keys({"seed": 1, "colour": 2}, ("seed",), path="", **rules)
    assert str(info.value) == "unknown key colour; the config takes: seed"  # no close key, no guess
    with pytest.raises(ValueError) as info:
        exact_keys({}, ("seed", "shift"), path="", **rules)
    assert str(info.value) == "seed is missing: write every key; e.g. seed: 0"
    with pytest.raises(ValueError) as info:
        exact_keys({"seed": 1}, ("seed", "shift"), path="runtime", **rules)
    assert str(info.value) == "runtime.shift is missing: write every key; e.g. shift: {...}"  # no example given
