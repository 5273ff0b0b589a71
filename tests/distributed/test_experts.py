"""Expert capacity: a balanced routing fills it exactly, the factor is applied without float drift, errors."""

import math

import pytest
import torch

from infralens.distributed import expert_capacity


@pytest.mark.parametrize(("tokens", "experts", "k"), [(4096, 8, 2), (96, 4, 1), (60, 6, 3)])
def test_capacity_factor_one_is_what_a_perfectly_balanced_router_sends(tokens, experts, k):
    # token t picks experts t, t+1, ..., t+k-1 (mod E): every expert receives the same number of tokens
    choices = (torch.arange(tokens)[:, None] + torch.arange(k)[None, :]) % experts  # (T, k)
    per_expert = torch.bincount(choices.flatten(), minlength=experts)  # (E,)
    assert per_expert.min() == per_expert.max() == expert_capacity(tokens, experts, top_k=k)


def test_the_catalogue_example_and_slack():
    assert expert_capacity(4096, 8, top_k=2, capacity_factor=1.25) == 1280  # 1024 balanced, 25% slack
    assert expert_capacity(10, 4) == 3  # 2.5 rounds up: no token of a balanced batch is dropped


def test_the_factor_is_taken_as_written():
    assert math.ceil(100 * 1.1) == 111  # float arithmetic overshoots
    assert expert_capacity(100, 1, capacity_factor=1.1) == 110
    assert expert_capacity(100, 1, capacity_factor=1) == 100


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_tokens": 0}, r"num_tokens must be >= 1, e.g. num_tokens=4096; got 0"),
        ({"num_experts": 2.5}, r"num_experts must be a whole number \(nothing is rounded\), e.g. num_experts=8"),
        ({"top_k": 9}, r"top_k must be <= num_experts=8 \(a token picks distinct experts\), e.g. top_k=2; got 9"),
        ({"capacity_factor": 0}, r"capacity_factor must be a number > 0, e.g. capacity_factor=1.25; got 0"),
        ({"capacity_factor": float("inf")}, r"capacity_factor must be a number > 0, .*; got inf"),
    ],
)
def test_errors(kwargs, message):
    call = {"num_tokens": 4096, "num_experts": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        expert_capacity(call.pop("num_tokens"), call.pop("num_experts"), **call)
