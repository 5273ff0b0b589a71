"""How ``axpby`` applies its coefficients to bfloat16 tensors (the rule its module docstring states)."""

import torch

from infralens.core.mix import axpby


def test_axpby_on_bfloat16_rounds_alpha_of_the_add_and_not_the_factor_of_the_mul():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200_000, generator=g).bfloat16()
    y = torch.randn(200_000, generator=g).bfloat16()
    a, b = 0.99995, 0.0100005  # sqrt(alpha_bar_0) and sqrt(1 - alpha_bar_0) of the linear schedule
    got = axpby(a, x, b, y)
    first = (x.float() * a).bfloat16()  # mul: the float applied in float32, the product rounded once
    b16 = torch.tensor(b).bfloat16().float()  # add_: alpha rounded to bfloat16 first
    assert b16.item() == 0.010009765625
    assert torch.equal(got, (first.float() + b16 * y.float()).bfloat16())
    assert not torch.equal(got, (first.float() + b * y.float()).bfloat16())  # not a float32 alpha
    assert not torch.equal(got, x)  # the noise survives


def test_axpby_per_sample_coefficients_must_match_in_number():
    x = y = torch.ones(2, 3)
    assert axpby([1.0, 2.0], x, [3.0, 4.0], y)[:, 0].tolist() == [4.0, 6.0]
    try:
        axpby([1.0, 2.0], x, [3.0], y)
    except ValueError:
        pass
    else:
        raise AssertionError("two factors for x and one for y: refused, not truncated to one sample")
