"""torch's DTensor tensor parallelism on two real gloo processes: ColwiseParallel, RowwiseParallel, one all-reduce."""

from pathlib import Path

import pytest
import torch
import torch.distributed as dist
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


def backward_facts(rank, world_size):
    """The backward of the Megatron MLP: by hand (Megatron's f: identity forward, all-reduce backward) and DTensor."""
    torch.manual_seed(0)
    ref = MLP()
    x = torch.randn(4, 8, generator=torch.Generator().manual_seed(1))
    gy = torch.randn(4, 8, generator=torch.Generator().manual_seed(2))  # dL/dy, the same on every rank
    x_ref = x.clone().requires_grad_()
    ref(x_ref).backward(gy)  # one process: the input gradient and every weight gradient
    # by hand: rank r owns hidden features `cols`; the forward all-reduce (g) passes dL/dy through unchanged
    cols = slice(16 * rank, 16 * rank + 16)
    x_local = x.clone().requires_grad_()
    W1, b1 = ref.up.weight[cols].detach().requires_grad_(), ref.up.bias[cols].detach().requires_grad_()
    W2 = ref.down.weight[:, cols].detach().requires_grad_()
    partial = torch.relu(x_local @ W1.T + b1) @ W2.T  # (B, D): this rank's term of the row-parallel sum
    partial.backward(gy)
    local_dx = x_local.grad.clone()  # only this rank's hidden features' share of dL/dx
    summed_dx = local_dx.clone()
    dist.all_reduce(summed_dx)  # f's backward: the one all-reduce of the backward pass
    # DTensor: count the collectives of the backward alone
    model = MLP()
    model.load_state_dict(ref.state_dict())
    mesh = init_device_mesh("cpu", (world_size,))
    parallelize_module(model, mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    x_tp = x.clone().requires_grad_()
    y = model(x_tp)
    comm = CommDebugMode()
    with comm:
        y.backward(gy)
    grads = {n: p.grad.to_local() for n, p in model.named_parameters()}
    ref_grads = {
        "up.weight": ref.up.weight.grad[cols],
        "up.bias": ref.up.bias.grad[cols],
        "down.weight": ref.down.weight.grad[:, cols],
        "down.bias": ref.down.bias.grad,
    }
    return {
        "local_dx_err": (local_dx - x_ref.grad).abs().max().item(),
        "summed_dx_err": (summed_dx - x_ref.grad).abs().max().item(),
        "hand_weight_err": max(
            (W1.grad - ref.up.weight.grad[cols]).abs().max().item(),
            (W2.grad - ref.down.weight.grad[:, cols]).abs().max().item(),
        ),
        "backward_counts": {str(op): n for op, n in comm.get_comm_counts().items()},
        "dtensor_dx_err": (x_tp.grad - x_ref.grad).abs().max().item(),
        "dtensor_grad_err": max((grads[n] - g).abs().max().item() for n, g in ref_grads.items()),
    }


@pytest.fixture(scope="module")
def backward():
    return run_ranks(f"{HERE}:backward_facts", 2, timeout=120)


def test_the_input_gradient_needs_one_all_reduce_in_backward_in_front_of_the_column_layer(backward):
    for f in backward:
        assert f["local_dx_err"] > 1e-3  # each rank's own dL/dx is a partial sum over its hidden features
        assert f["summed_dx_err"] < 1e-6  # summed over ranks: the unsharded input gradient
        assert f["hand_weight_err"] < 1e-6  # weight gradients need no communication: each rank owns its slices
        assert f["backward_counts"] == {"c10d_functional.all_reduce": 1}  # DTensor inserts exactly that one
        assert f["dtensor_dx_err"] < 1e-6
        assert f["dtensor_grad_err"] < 1e-6


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
