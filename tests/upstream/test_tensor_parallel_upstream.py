"""torch's DTensor tensor parallelism on two real gloo processes: ColwiseParallel, RowwiseParallel, one all-reduce."""

from pathlib import Path

import pytest
import torch
import torch.nn as nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

from infralens.distributed import run_ranks

pytestmark = pytest.mark.upstream

HERE = Path(__file__).resolve()


class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.up, self.down = nn.Linear(8, 32), nn.Linear(32, 8)

    def forward(self, x):
        return self.down(torch.relu(self.up(x)))


def tp_facts(rank, world_size):
    torch.manual_seed(0)
    ref = MLP()
    model = MLP()
    model.load_state_dict(ref.state_dict())
    mesh = init_device_mesh("cpu", (world_size,))
    parallelize_module(model, mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    comm = CommDebugMode()
    with comm:
        y = model(x)
    alone = MLP()
    alone.load_state_dict(ref.state_dict())
    parallelize_module(alone, mesh, {"up": ColwiseParallel()})  # a column-parallel layer on its own
    h = alone.up(x)
    return {
        "placements": {n: str(p.placements) for n, p in model.named_parameters()},
        "local_shapes": {n: tuple(p.to_local().shape) for n, p in model.named_parameters()},
        "counts": {str(op): n for op, n in comm.get_comm_counts().items()},
        "err": (y - ref(x)).abs().max().item(),
        "output": (type(y).__name__, tuple(y.shape)),
        "colwise_alone": (tuple(h.shape), (h - ref.up(x)[:, 16 * rank : 16 * rank + 16]).abs().max().item()),
    }


@pytest.fixture(scope="module")
def facts():
    return run_ranks(f"{HERE}:tp_facts", 2, timeout=120)


def test_colwise_shards_output_features_rowwise_shards_input_features(facts):
    for f in facts:
        assert f["placements"] == {
            "up.weight": "(Shard(dim=0),)",  # (out, in): rows are output features
            "up.bias": "(Shard(dim=0),)",
            "down.weight": "(Shard(dim=1),)",  # columns are input features
            "down.bias": "(Replicate(),)",  # added once, after the sum
        }
        assert f["local_shapes"] == {"up.weight": (16, 8), "up.bias": (16,), "down.weight": (8, 16), "down.bias": (8,)}


def test_the_megatron_mlp_needs_one_all_reduce_in_forward_and_equals_the_unsharded_mlp(facts):
    for f in facts:
        assert f["counts"] == {"c10d_functional.all_reduce": 1}
        assert f["err"] < 1e-6
        assert f["output"][1] == (4, 8)


def test_a_column_parallel_layer_alone_returns_this_ranks_slice_of_the_output_features(facts):
    for f in facts:  # ColwiseParallel's default output layout is Shard(-1), handed on as a local tensor
        shape, err = f["colwise_alone"]
        assert shape == (4, 16) and err < 1e-6  # this rank's 16 of the 32 output features, not a sum
