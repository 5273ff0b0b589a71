"""The bucket plan: DDP's size-threshold grouping of gradients in ready order (the real reducer: tests/upstream)."""

import pytest

from infralens.distributed import ddp_bucket_plan


def test_a_bucket_closes_once_it_reaches_the_cap_so_it_may_exceed_it():
    assert ddp_bucket_plan([128, 4096] * 4, 4194) == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert ddp_bucket_plan([100, 100, 100], 200) == [[0, 1], [2]]  # exactly the cap closes it


def test_the_first_bucket_has_its_own_cap():
    mib = 2**20
    sizes = [2048, mib] * 3  # three Linear(512, 512), bias ready first
    assert ddp_bucket_plan(sizes, 25 * mib) == [[0, 1, 2, 3, 4, 5]]
    assert ddp_bucket_plan(sizes, 25 * mib, first_bucket_cap_bytes=mib) == [[0, 1], [2, 3, 4, 5]]


def test_a_remainder_below_the_cap_is_its_own_last_bucket():
    assert ddp_bucket_plan([10, 10, 10], 15) == [[0, 1], [2]]
    assert ddp_bucket_plan([], 15) == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_sizes_are_refused_with_an_example(bad):
    with pytest.raises(ValueError, match=r"e\.g\."):
        ddp_bucket_plan([bad], 100)
    with pytest.raises(ValueError, match=r"e\.g\."):
        ddp_bucket_plan([1], bad)


def test_a_bucket_one_byte_short_of_the_cap_stays_open():
    assert ddp_bucket_plan([100, 99, 5], 200) == [[0, 1, 2]]  # 199 < 200: the third joins
    assert ddp_bucket_plan([200, 100, 99, 5], 200) == [[0], [1, 2, 3]]  # the same after a closed bucket
