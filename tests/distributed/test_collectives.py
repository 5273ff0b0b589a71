"""Per-rank bytes of the bandwidth-optimal collectives: exact properties and errors.

Measured referents: the hand ring's counted sends (``test_ring.py``) and gloo's
own traffic (``tests/upstream/test_collectives_upstream.py``).
"""

import pytest

from infralens.distributed import all_gather_bytes, all_to_all_bytes, reduce_scatter_bytes, ring_allreduce_bytes


def test_all_reduce_is_a_reduce_scatter_then_an_all_gather():
    for n in (1, 2, 3, 8, 1024):
        assert ring_allreduce_bytes(6e9, n) == pytest.approx(reduce_scatter_bytes(6e9, n) + all_gather_bytes(6e9, n))


def test_the_catalogue_example_and_the_limit():
    assert ring_allreduce_bytes(2e9, 8) == 3.5e9  # 2 GB gradients on 8 ranks: 2 * 7/8 * 2 GB
    assert ring_allreduce_bytes(2e9, 10**6) == pytest.approx(4e9, rel=1e-5)  # tends to 2n
    assert ring_allreduce_bytes(2e9, 1) == 0.0
    assert all_to_all_bytes(800, 4) == 600.0  # keeps its own quarter


@pytest.mark.parametrize("fn", [ring_allreduce_bytes, all_gather_bytes, reduce_scatter_bytes, all_to_all_bytes])
def test_errors(fn):
    with pytest.raises(ValueError, match=r"nbytes must be >= 0, e.g. nbytes=2000000000.0; got -1"):
        fn(-1, 8)
    with pytest.raises(ValueError, match=r"world_size must be >= 1, e.g. world_size=8; got 0"):
        fn(1024, 0)
    with pytest.raises(ValueError, match=r"world_size must be a whole number \(nothing is rounded\)"):
        fn(1024, 2.5)
