"""mesh_layout: torch's DeviceMesh groups, read from fake worlds, against the row-major rank formula.

``torch.testing._internal.distributed.fake_pg`` is private; these tests are
the alarm if a torch upgrade moves or changes it.
"""

import itertools

import pytest
import torch
import torch.distributed as dist

from infralens.distributed import mesh_layout


def test_the_private_fake_process_group_still_exists():
    from torch.testing._internal.distributed.fake_pg import FakeStore

    assert torch.__version__.startswith("2.13.0")  # the book pins it; bump this line with the pin
    dist.init_process_group("fake", rank=3, world_size=8, store=FakeStore())
    try:
        assert (dist.get_rank(), dist.get_world_size(), dist.get_backend()) == (3, 8, "fake")
    finally:
        dist.destroy_process_group()


SHAPES = [{"pp": 4, "dp": 2, "tp": 8}, {"dp": 3, "tp": 2}, {"pp": 2, "dp": 2, "cp": 2, "tp": 2}]


@pytest.mark.parametrize("shape", SHAPES)
def test_groups_are_the_row_major_slices(shape):
    layout = mesh_layout(shape)
    sizes = tuple(shape.values())
    strides = [1] * len(sizes)
    for i in range(len(sizes) - 2, -1, -1):
        strides[i] = strides[i + 1] * sizes[i + 1]
    for coord in itertools.product(*map(range, sizes)):
        rank = sum(c * s for c, s in zip(coord, strides, strict=True))
        assert layout.mesh[coord].item() == rank
        for axis, name in enumerate(shape):  # vary one coordinate, keep the others
            expected = tuple(rank + (j - coord[axis]) * strides[axis] for j in range(sizes[axis]))
            assert layout.group_of(rank, name) == expected
    for name, size in shape.items():
        assert len(layout.groups[name]) == layout.mesh.numel() // size


def test_which_groups_leave_a_node():
    layout = mesh_layout({"pp": 4, "dp": 2, "tp": 8})
    assert layout.groups["tp"][0] == tuple(range(8))
    assert layout.groups["dp"][0] == (0, 8) and layout.groups["pp"][0] == (0, 16, 32, 48)
    spans = {name: layout.nodes_spanned(name, gpus_per_node=8) for name in ("pp", "dp", "tp")}
    assert spans == {"pp": 4, "dp": 2, "tp": 1}
    # the same 64 ranks with tp outermost: now every TP group spans 8 nodes
    wrong = mesh_layout({"tp": 8, "pp": 4, "dp": 2})
    assert wrong.nodes_spanned("tp", gpus_per_node=8) == 8


def test_refuses_inside_a_process_group_and_bad_shapes():
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", rank=0, world_size=2, store=FakeStore())
    try:
        with pytest.raises(ValueError, match="outside an initialised process group"):
            mesh_layout({"dp": 2})
    finally:
        dist.destroy_process_group()
    with pytest.raises(ValueError, match=r"shape must map dimension names to sizes"):
        mesh_layout({})
    with pytest.raises(ValueError, match=r"shape\['tp'\] must be >= 1"):
        mesh_layout({"dp": 2, "tp": 0})
    with pytest.raises(ValueError, match=r"gpus_per_node must be >= 1"):
        mesh_layout({"dp": 2}).nodes_spanned("dp", 0)
