"""ZeRO bytes per rank: the paper's own numbers, the stage structure, and every argument error.

The measured referent (FSDP2's shards on two real processes) is in
``tests/upstream/test_fsdp_upstream.py``.
"""

import pytest

from infralens.distributed import ZERO_STAGES, zero_bytes_per_rank


def test_the_zero_papers_figure_1():
    """Rajbhandari et al. 2020, Figure 1: Psi = 7.5B, N_d = 64, K = 12 -> 120, 31.4, 16.6 and 1.9 GB."""
    got = [zero_bytes_per_rank(7.5e9, 64, s) / 1e9 for s in ZERO_STAGES]
    assert [round(g, 1) for g in got] == [120.0, 31.4, 16.6, 1.9]


def test_7b_on_8_ranks_under_both_conventions():
    assert zero_bytes_per_rank(7_000_000_000, 8, 3) == 14.0e9  # 2 + 2 + 12 = 16 bytes per parameter
    # the original site's 10.5 GB is 12 bytes per parameter, e.g. bf16 weights and grads with fp32 Adam moments only
    assert zero_bytes_per_rank(7e9, 8, 3, optimizer_bytes=8) == 10.5e9
    assert zero_bytes_per_rank(7e9, 8, 3, param_bytes=0, grad_bytes=0) == 10.5e9  # or the optimizer state alone


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_stages_shard_optimizer_then_gradients_then_weights(n):
    psi, bp, bg, bo = 1000, 2, 2, 12
    m = [zero_bytes_per_rank(psi, n, s) for s in ZERO_STAGES]
    assert m[0] == (bp + bg + bo) * psi  # plain DDP: everything on every rank
    assert m[0] - m[1] == pytest.approx(bo * psi * (1 - 1 / n))  # stage 1 keeps 1/n of the optimizer state
    assert m[1] - m[2] == pytest.approx(bg * psi * (1 - 1 / n))
    assert m[2] - m[3] == pytest.approx(bp * psi * (1 - 1 / n))
    assert m[3] * n == pytest.approx(m[0])  # stage 3: the replicated total, divided exactly
    assert m == sorted(m, reverse=True)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_params": 0}, r"num_params must be >= 1, e.g. num_params=7_000_000_000; got 0"),
        ({"num_params": 7.5}, r"num_params must be a whole number \(nothing is rounded\), e.g. num_params="),
        ({"num_params": "7B"}, r"num_params must be a whole number >= 1, e.g. num_params=7_000_000_000; got '7B'"),
        ({"world_size": 0}, r"world_size must be >= 1, e.g. world_size=8; got 0"),
        ({"stage": 4}, r"stage must be one of 0, 1, 2, 3 \(0 = plain DDP, 3 = weights sharded too\), e.g. stage=3"),
        ({"stage": 3.0}, r"stage must be one of 0, 1, 2, 3 .*; got 3.0"),
        ({"stage": True}, r"stage must be one of 0, 1, 2, 3 .*; got True"),
        ({"param_bytes": -1}, r"param_bytes must be >= 0, e.g. param_bytes=2; got -1"),
        ({"grad_bytes": float("nan")}, r"grad_bytes must be a finite number >= 0, e.g. grad_bytes=2; got nan"),
        ({"optimizer_bytes": None}, r"optimizer_bytes must be a finite number >= 0, e.g. optimizer_bytes=12"),
    ],
)
def test_errors_name_the_argument_the_rule_and_a_valid_value(kwargs, message):
    call = {"num_params": 7e9, "world_size": 8, "stage": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        zero_bytes_per_rank(call.pop("num_params"), call.pop("world_size"), call.pop("stage"), **call)
