"""The two-expert switch: the closed form, the scan over the loop's timesteps, and bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from infralens.diffusion import EXPERTS, expert_schedule, expert_switch_step, flow_sigmas


def closed_form(n: int, b: float, s: float) -> int:
    """k = floor(N (1 - u*)) + 1 with u* = b / (s - (s - 1) b): solved by hand from sigma(u) < b."""
    b, s = Fraction(str(b)), Fraction(str(s))  # exact: ties (t = bT) must stay with the high-noise expert
    u_star = b / (s - (s - 1) * b)
    return min(n, math.floor(n * (1 - u_star)) + 1)


@pytest.mark.parametrize("n", [4, 10, 40, 50])
@pytest.mark.parametrize("s", [1.0, 3.0, 5.0, 12.0])
@pytest.mark.parametrize("b", [0.3, 0.875, 0.9])
def test_scan_agrees_with_the_closed_form(n, s, b):
    assert expert_switch_step(n, b, shift=s) == closed_form(n, b, s)


def test_every_step_after_the_switch_is_below_the_boundary():
    t = flow_sigmas("Wan", 40, shift=12.0) * 1000
    k = expert_switch_step(40, 0.875, shift=12.0)
    assert k == 26
    assert (t[:k] >= 875).all() and (t[k:] < 875).all()


def test_endpoints_and_monotonicity():
    assert expert_switch_step(10, 0.0, shift=5.0) == 10  # nothing is below 0: the high-noise expert runs it all
    assert expert_switch_step(10, 1.0, shift=5.0) == 1  # t_0 = 1000 is not below 1000
    ks = [expert_switch_step(50, b, shift=5.0) for b in (0.5, 0.8, 0.875, 0.9, 0.95)]
    assert ks == sorted(ks, reverse=True)  # a higher boundary switches earlier
    assert expert_switch_step(50, 0.9, shift=1.0) < expert_switch_step(50, 0.9, shift=5.0)  # shift delays it


def test_schedule_names_and_order():
    sched = expert_schedule(40, 0.9, shift=5.0)
    assert len(sched) == 40 and sched.count(EXPERTS[0]) == 15 and sched[15:] == (EXPERTS[1],) * 25
    assert expert_schedule(4, 0.5, shift=1.0, experts=("high", "low")) == ("high",) * 3 + ("low",)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"num_inference_steps": 0, "boundary": 0.9}, "num_inference_steps"),
        ({"num_inference_steps": 10, "boundary": 1.5}, "boundary must be a fraction"),
        ({"num_inference_steps": 10, "boundary": 875}, "boundary=0.9"),
        ({"num_inference_steps": 10, "boundary": True}, "boundary"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        expert_switch_step(**kwargs)


def test_bad_expert_names():
    with pytest.raises(ValueError, match="two different names"):
        expert_schedule(4, 0.5, experts=("dit", "dit"))
