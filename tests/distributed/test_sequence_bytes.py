"""Bytes per layer of the three sequence-parallel schemes: properties and errors (the wire counts are measured
in test_ulysses.py, test_ring_attention.py and test_sequence_shards.py)."""

import pytest

from infralens.distributed import SEQUENCE_SCHEMES, ring_allreduce_bytes, sequence_parallel_bytes

KW = {"batch": 1, "seq_len": 32_768, "heads": 32, "head_dim": 128}


def test_ulysses_falls_with_ranks_ring_does_not():
    ulysses = [sequence_parallel_bytes("ulysses", **KW, world_size=n) for n in (2, 4, 8, 16)]
    ring = [sequence_parallel_bytes("ring", **KW, world_size=n) for n in (2, 4, 8, 16)]
    assert ulysses == sorted(ulysses, reverse=True) and ulysses[-1] < ulysses[0] / 4
    activation = KW["batch"] * KW["seq_len"] * KW["heads"] * KW["head_dim"] * 2  # one (B, S, D) tensor in bf16
    assert ring == [(n - 1) / n * 2 * activation for n in (2, 4, 8, 16)]  # K and V of the whole sequence, almost


def test_megatron_moves_the_bytes_of_two_tensor_parallel_all_reduces():
    activation = KW["batch"] * KW["seq_len"] * KW["heads"] * KW["head_dim"] * 2
    for n in (2, 4, 8):
        assert sequence_parallel_bytes("megatron", **KW, world_size=n) == pytest.approx(
            2 * ring_allreduce_bytes(activation, n)
        )


def test_grouped_query_attention_shrinks_what_ring_attention_sends():
    full = sequence_parallel_bytes("ring", **KW, world_size=8)
    assert sequence_parallel_bytes("ring", **KW, world_size=8, kv_heads=8) == full / 4


def test_one_rank_sends_nothing():
    assert [sequence_parallel_bytes(s, **KW, world_size=1) for s in SEQUENCE_SCHEMES] == [0, 0, 0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scheme": "zigzag"}, r"scheme must be one of ulysses, ring, megatron, e.g. scheme='ulysses'; got 'zigzag'"),
        ({"world_size": 0}, r"world_size must be >= 1, e.g. world_size=8; got 0"),
        ({"heads": 0}, r"heads must be >= 1, e.g. heads=32; got 0"),
        ({"kv_heads": 0}, r"kv_heads must be >= 1, e.g. kv_heads=8; got 0"),
        ({"dtype": "fp64"}, r"dtype must be one of fp32, bf16"),
    ],
)
def test_errors(kwargs, message):
    call = {"scheme": "ring", **KW, "world_size": 8, **kwargs}
    with pytest.raises(ValueError, match=message):
        sequence_parallel_bytes(call.pop("scheme"), **call)


@pytest.mark.parametrize("scheme", SEQUENCE_SCHEMES)
def test_bytes_grow_linearly_with_the_batch(scheme):
    # every scheme sends activations: twice the sequences, twice the bytes
    args = {"seq_len": 4096, "heads": 8, "head_dim": 64, "world_size": 4, "kv_heads": 2}
    assert sequence_parallel_bytes(scheme, batch=2, **args) == 2 * sequence_parallel_bytes(scheme, batch=1, **args)
