"""rank_memory and step_traffic against torch itself: DTensor shards, saved tensors and counted collectives.

* parameters per rank: a tiny Llama-style stage parallelised with DTensor
  (``ColwiseParallel``/``RowwiseParallel``) on a fake 4-rank world; the local
  shards of rank 0 add up to ``stage_params``;
* activations: a checkpointed layer keeps only its input, measured with
  ``saved_tensors_hooks``;
* TP collectives: the all-reduces of one Megatron-style block (QKV and gate/up
  fused, as Megatron fuses them), counted as DTensor issues them: 2 forward,
  2 backward; torch's non-reentrant checkpoint repeats only 1 of the 2 when it
  recomputes (it stops at the last tensor backward needs), Megatron's full
  recomputation both, which is what the model counts.
"""

from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.utils.checkpoint as checkpoint
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from infralens.distributed import (
    ClusterSpec,
    ModelSpec,
    ParallelismPlan,
    collective_terms,
    load_plan,
    rank_memory,
    ring_allreduce_bytes,
    stage_params,
    step_traffic,
    zero_bytes_per_rank,
)

from .test_plan import PLAN

TINY = ModelSpec("tiny", layers=4, hidden_size=64, ffn_hidden_size=96, heads=8, kv_heads=4, vocab_size=101)


def plan(model=TINY, **degrees) -> ParallelismPlan:
    kw = dict(tp=4, pp=2, dp=1, zero_stage=1, micro_batch_size=2, micro_batches=8, seq_len=16) | degrees
    world = kw["tp"] * kw["pp"] * kw["dp"]
    return ParallelismPlan(model, ClusterSpec(1, world, 80), **kw)


class Attention(nn.Module):
    def __init__(self, m: ModelSpec, fused: bool = False):
        super().__init__()
        d, dh = m.hidden_size, m.head_dim
        if fused:
            self.qkv = nn.Linear(d, (m.heads + 2 * m.kv_heads) * dh, bias=False)
        else:
            self.q = nn.Linear(d, m.heads * dh, bias=False)
            self.k = nn.Linear(d, m.kv_heads * dh, bias=False)
            self.v = nn.Linear(d, m.kv_heads * dh, bias=False)
        self.o = nn.Linear(m.heads * dh, d, bias=False)


class Block(nn.Module):
    """Parameters of one Llama block, and a forward with the collectives' structure (attention simplified)."""

    def __init__(self, m: ModelSpec, fused: bool = False):
        super().__init__()
        self.m, d, f = m, m.hidden_size, m.ffn_hidden_size
        self.input_norm, self.post_norm = nn.RMSNorm(d), nn.RMSNorm(d)
        self.attn = Attention(m, fused)
        self.mlp = nn.ModuleDict(
            {"gate_up": nn.Linear(d, 2 * f, bias=False)}
            if fused
            else {"gate": nn.Linear(d, f, bias=False), "up": nn.Linear(d, f, bias=False)}
        )
        self.mlp["down"] = nn.Linear(f, d, bias=False)

    def forward(self, x):  # fused layout only
        heads_local = self.attn.o.weight.to_local().shape[1]  # (h d_h / t) columns of this rank
        x = x + self.attn.o(self.attn.qkv(self.input_norm(x))[..., :heads_local])
        gate, up = self.mlp["gate_up"](self.post_norm(x)).chunk(2, dim=-1)
        return x + self.mlp["down"](torch.nn.functional.silu(gate) * up)


def fake_world(world: int, rank: int = 0):
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=rank, world_size=world, store=FakeStore())
    from torch.distributed.device_mesh import init_device_mesh

    return init_device_mesh("cpu", (world,))


def test_parameters_per_rank_are_dtensor_shards():
    from torch.distributed.tensor import DTensor
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    p = plan()
    m = p.model
    last_stage = nn.ModuleDict(
        {
            "layers": nn.ModuleList(Block(m) for _ in range(m.layers // p.pp)),
            "norm": nn.RMSNorm(m.hidden_size),
            "lm_head": nn.Linear(m.hidden_size, m.vocab_size, bias=False),
        }
    )
    col, row = ColwiseParallel(), RowwiseParallel()
    tp_plan = {"lm_head": col}
    for i in range(m.layers // p.pp):
        for name in ("attn.q", "attn.k", "attn.v", "mlp.gate", "mlp.up"):
            tp_plan[f"layers.{i}.{name}"] = col
        tp_plan |= {f"layers.{i}.attn.o": row, f"layers.{i}.mlp.down": row}
    mesh = fake_world(p.tp, rank=0)
    try:
        parallelize_module(last_stage, mesh, tp_plan)
        local = sum((t.to_local() if isinstance(t, DTensor) else t).numel() for t in last_stage.parameters())
    finally:
        dist.destroy_process_group()
    assert local == stage_params(p, stage=p.pp - 1)  # TP rank 0 holds ceil(101 / 4) = 26 rows of the head
    whole = sum(t.numel() for t in nn.ModuleList([Block(m) for _ in range(m.layers)]).parameters())
    assert stage_params(plan(tp=1, pp=1)) == m.params == whole + 2 * 101 * 64 + 64


def test_a_checkpointed_layer_keeps_only_its_input():
    m = ModelSpec("t", 3, 32, 48, 4, 4, 10)
    p = plan(m, tp=1, pp=1, micro_batch_size=2, seq_len=8, micro_batches=1)
    blocks = [nn.Sequential(nn.Linear(32, 48), nn.GELU(), nn.Linear(48, 32)).bfloat16() for _ in range(3)]
    x = torch.randn(2, 8, 32, dtype=torch.bfloat16, requires_grad=True)  # (b, s, h)
    saved = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            saved[id(t)] = t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        h = x
        for block in blocks:
            h = h + checkpoint.checkpoint(block, h, use_reentrant=False)
    assert sum(saved.values()) == rank_memory(p).activation_bytes == 3 * 2 * 8 * 32 * 2


class CountAllReduce(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += "all_reduce" in str(func)
        return func(*args, **(kwargs or {}))


def test_tp_all_reduces_per_layer():
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    m = ModelSpec("t", 1, 64, 96, 8, 8, 10)
    block = Block(m, fused=True)
    mesh = fake_world(4, rank=1)
    try:
        col, row = ColwiseParallel(), RowwiseParallel()
        parallelize_module(block, mesh, {"attn.qkv": col, "attn.o": row, "mlp.gate_up": col, "mlp.down": row})
        x = torch.randn(2, 16, 64, requires_grad=True)
        counts = []
        for run in (lambda: block(x), lambda: checkpoint.checkpoint(block, x, use_reentrant=False)):
            with CountAllReduce() as fwd:
                out = run()
            with CountAllReduce() as bwd:
                out.sum().backward()
            counts.append((fwd.calls, bwd.calls))
    finally:
        dist.destroy_process_group()
    assert counts == [(2, 2), (2, 2 + 1)]
    p = plan(m, tp=4, pp=1, micro_batches=3)
    ((op, calls, nbytes),) = step_traffic(p)[0].ops
    assert (op, calls, nbytes) == ("all_reduce", 6 * 1 * 3, 2 * 16 * 64 * 2)  # 2 fwd + 2 recomputed + 2 bwd


def test_the_lab_plan():
    p = load_plan(PLAN)
    per_layer = (p.model.layer_params - 2 * 8192) // 8 + 2 * 8192
    first, last = rank_memory(p, 0), rank_memory(p, 3)
    assert first.params == 20 * per_layer + 32000 * 8192 // 8  # the embedding's shard
    assert last.params == 20 * per_layer + 32000 * 8192 // 8 + 8192  # the head's shard and the final norm
    assert [rank_memory(p, s).in_flight for s in range(4)] == [4, 3, 2, 1]  # 1F1B: p - s micro-batches
    mem = rank_memory(p)
    assert mem == first  # four micro-batches of activations outweigh a norm
    assert mem.state_bytes == zero_bytes_per_rank(mem.params, 2, 1) == mem.params * (2 + 2 + 12 / 2)
    assert mem.activation_bytes == 4 * 20 * 4096 * 8192 * 2 / 8
    assert mem.total_bytes < 80 * 2**30  # fits an 80 GiB GPU
    tp, pp, dp = step_traffic(p)
    assert tp.bytes_sent == pytest.approx(6 * 20 * 16 * ring_allreduce_bytes(4096 * 8192 * 2, 8))
    assert pp.ops == (("send_recv", 16, 4096 * 8192 * 2 / 8),)  # the first stage only sends forward
    assert step_traffic(p, stage=1)[1].ops[0][1] == 32  # a middle stage sends both ways
    assert dp.bytes_sent == pytest.approx(ring_allreduce_bytes(mem.params * 2, 2))


def test_stage_errors():
    p = load_plan(PLAN)
    for bad in (-1, 4, 1.0, True):
        with pytest.raises(ValueError, match=r"stage must be a pipeline stage 0 to 3 \(pp=4\), e\.g\. stage=0"):
            rank_memory(p, bad)


def test_zero_3_gathers_parameters_twice_more():
    p = plan(pp=1, dp=2, tp=4, zero_stage=3)
    dp = step_traffic(p)[2]
    grads = stage_params(p) * 2
    v = collective_terms("all_gather", 2).volume  # (n - 1) / n
    assert dp.bytes_sent == pytest.approx(3 * v * grads)  # reduce-scatter + 2 all-gathers
    assert dp.bytes_sent == pytest.approx(1.5 * step_traffic(replace(p, zero_stage=2))[2].bytes_sent)


def test_single_axes_send_nothing():
    p = plan(tp=1, pp=1, dp=1)
    assert [a.bytes_sent for a in step_traffic(p)] == [0, 0, 0]
    assert [a.ops for a in step_traffic(p)] == [(), (), ()]  # and no collective is called at all
    pair = plan(tp=2, pp=1, dp=1)  # two ranks are already tensor parallel: six all-reduces a layer
    assert step_traffic(pair)[0].ops[0][:2] == ("all_reduce", 6 * (pair.model.layers // pair.pp) * pair.micro_batches)
    two = plan(tp=1, pp=2, dp=1)
    assert [step_traffic(two, s)[1].ops[0][1] for s in (0, 1)] == [two.micro_batches] * 2  # one way each


@pytest.mark.parametrize(("pp", "m"), [(4, 16), (4, 2), (2, 8), (8, 8)])
def test_in_flight_micro_batches_are_the_1f1b_simulators_peaks(pp, m):
    from infralens.distributed import simulate_pipeline

    p = plan(ModelSpec("t", 8, 64, 96, 8, 8, 100), tp=1, pp=pp, micro_batches=m)
    peaks = simulate_pipeline("1f1b", pp, m).peak_activations()
    assert [rank_memory(p, s).in_flight for s in range(pp)] == peaks
