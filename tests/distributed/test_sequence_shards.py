"""Sequence shards: padding, positions, masks, and Megatron's all-gather / reduce-scatter pair on real processes."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from infralens.distributed import (
    BytesSent,
    all_gather_bytes,
    gather_sequence,
    key_visible,
    padded_length,
    reduce_scatter_bytes,
    reduce_scatter_sequence,
    run_ranks,
    shard_positions,
    split_sequence,
)

HERE = Path(__file__).resolve()


def test_shards_cover_the_padded_sequence_in_order():
    x = torch.randn(2, 3, 13, 4)  # (B, H, S, d)
    shards = [split_sequence(x, r, 4) for r in range(4)]
    assert [s.shape[2] for s in shards] == [4, 4, 4, 4]
    joined = torch.cat(shards, dim=2)
    assert torch.equal(joined[:, :, :13], x) and joined[:, :, 13:].abs().sum() == 0  # zeros at the end
    assert torch.cat([shard_positions(13, r, 4) for r in range(4)]).tolist() == list(range(16))


def test_key_visible_hides_padding_and_the_future():
    assert key_visible(torch.arange(4), torch.arange(4), seq_len=4, causal=False) is None
    v = key_visible(torch.arange(4), torch.arange(4), seq_len=3, causal=False)
    assert v.tolist() == [[True, True, True, False]] * 4


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: padded_length(0, 2), r"seq_len must be >= 1, e.g. seq_len=4096; got 0"),
        (lambda: padded_length(8, 0), r"world_size must be >= 1, e.g. world_size=2; got 0"),
        (lambda: split_sequence(torch.zeros(1, 4), 2, 2, dim=1), r"rank must be a whole number in \[0, world_size=2\)"),
    ],
)
def test_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def megatron_collectives(rank, world_size):
    g = torch.Generator().manual_seed(rank)
    partial = torch.randn(2, 12, 8, generator=g)  # (B, S, D): this rank's partial sum of a row-parallel output
    with BytesSent() as rs_wire:
        mine = reduce_scatter_sequence(partial, dim=1)  # (B, S/N, D)
    total = partial.clone()
    dist.all_reduce(total)
    with BytesSent() as ag_wire:
        whole = gather_sequence(mine, dim=1)  # (B, S, D)
    try:
        reduce_scatter_sequence(torch.zeros(1, 5, 2), dim=1)
    except ValueError as exc:
        error = str(exc)
    return {
        "rs_equal": torch.allclose(mine, split_sequence(total, rank, world_size, dim=1), atol=1e-6),
        "ag_equal": torch.allclose(whole, total, atol=1e-6),
        "rs_wire": rs_wire.bytes,
        "ag_wire": ag_wire.bytes,
        "error": error,
    }


@pytest.fixture(scope="module")
def three_ranks():
    return run_ranks(f"{HERE}:megatron_collectives", 3, timeout=60)


def test_reduce_scatter_then_all_gather_is_an_all_reduce(three_ranks):
    assert all(r["rs_equal"] and r["ag_equal"] for r in three_ranks)


def test_the_pair_sends_what_one_ring_all_reduce_sends(three_ranks):
    nbytes = 2 * 12 * 8 * 4
    for r in three_ranks:  # plus a few messages' headers (gloo frames each with 144 bytes in torch 2.13)
        assert 0 <= r["rs_wire"] - reduce_scatter_bytes(nbytes, 3) <= 1024
        assert 0 <= r["ag_wire"] - all_gather_bytes(nbytes, 3) <= 1024


def test_an_uneven_sequence_is_refused_with_the_padded_length(three_ranks):
    assert three_ranks[0]["error"] == (
        "x.shape[1]=5 must be divisible by world_size=3: pad the sequence with split_sequence first, e.g. to 6"
    )


def reduce_scatter_in_a_subgroup(rank, world_size):
    # ranks 1, 2, 3 shard the sequence among themselves; x is (B, H, S, d), the default axis 2
    group = dist.new_group([1, 2, 3])
    if rank == 0:
        return None
    partial = torch.randn(1, 2, 6, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(rank))
    mine = reduce_scatter_sequence(partial, group=group)
    total = partial.clone()
    dist.all_reduce(total, group=group)
    return torch.allclose(mine, split_sequence(total, dist.get_rank(group), 3))


def test_reduce_scatter_runs_inside_a_subgroup_on_the_default_axis():
    assert run_ranks(f"{HERE}:reduce_scatter_in_a_subgroup", 4, timeout=30) == [None, True, True, True]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_padding_keeps_the_dtype(dtype):
    x = torch.ones(1, 2, 5, 3, dtype=dtype)
    last = split_sequence(x, 1, 2)  # positions 3, 4 and one zero of padding
    assert last.dtype == dtype and last[:, :, 2].abs().sum() == 0
