r"""The rank layout of a ``DeviceMesh``, with group membership computed by torch itself, without the processes.

``init_device_mesh("cpu", (p, d, t), mesh_dim_names=("pp", "dp", "tp"))``
numbers ranks row-major, so the last dimension varies fastest:

.. math:: \text{rank}(i_p, i_d, i_t) = (i_p\,d + i_d)\,t + i_t

and the ranks of one TP group are consecutive, which keeps them on one node
when :math:`t` divides the GPUs per node. To read the groups torch actually
builds for a 64-rank world, this module initialises torch's *fake* process
group once per rank, in this one process, builds the mesh and asks it for each
rank's groups (``mesh.get_group(name)``). The fake group accepts collectives
without running them, so nothing is communicated.

The fake group lives in ``torch.testing._internal.distributed.fake_pg``, a
private module: the book pins torch, and ``tests/distributed`` checks that it
still imports and still gives these groups.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from infralens.core import positive_int


@dataclass(frozen=True)
class MeshLayout:
    """Which ranks share a group along each mesh dimension, as torch's ``DeviceMesh`` builds them."""

    dim_names: tuple[str, ...]
    shape: tuple[int, ...]
    mesh: torch.Tensor
    """Rank at each mesh coordinate, shape ``shape``."""
    groups: Mapping[str, tuple[tuple[int, ...], ...]]
    """For each dimension, every group's ranks (as ``dist.get_process_group_ranks`` lists them), sorted."""

    def group_of(self, rank: int, dim: str) -> tuple[int, ...]:
        """The ranks that share ``rank``'s group along ``dim``."""
        return next(g for g in self.groups[dim] if rank in g)

    def nodes_spanned(self, dim: str, gpus_per_node: int) -> int:
        """How many nodes one group along ``dim`` touches (the most over its groups), with ranks filling nodes
        in order: rank ``r`` is on node ``r // gpus_per_node``."""
        g = positive_int("gpus_per_node", gpus_per_node, example=8)
        return max(len({r // g for r in group}) for group in self.groups[dim])


def mesh_layout(shape: Mapping[str, int]) -> MeshLayout:
    """Build ``init_device_mesh("cpu", sizes, mesh_dim_names=names)`` on every rank of a fake world; collect groups.

    :param shape: mesh dimension names and sizes, outermost first, e.g. ``{"pp": 4, "dp": 2, "tp": 8}``.

    >>> layout = mesh_layout({"pp": 2, "dp": 2, "tp": 2})
    >>> layout.groups["tp"][:2], layout.groups["pp"][:2]
    (((0, 1), (2, 3)), ((0, 4), (1, 5)))
    """
    if not isinstance(shape, Mapping) or not shape:
        raise ValueError(f"shape must map dimension names to sizes, e.g. {{'pp': 4, 'dp': 2, 'tp': 8}}; got {shape!r}")
    names = tuple(str(n) for n in shape)
    sizes = tuple(positive_int(f"shape[{n!r}]", s, example=2) for n, s in shape.items())
    if dist.is_initialized():
        raise ValueError("mesh_layout builds fake worlds of its own: call it outside an initialised process group")
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore  # private: registers the "fake" backend

    world = math.prod(sizes)
    groups: dict[str, set[tuple[int, ...]]] = {n: set() for n in names}
    mesh = None
    for rank in range(world):
        dist.init_process_group("fake", rank=rank, world_size=world, store=FakeStore())
        try:
            device_mesh = init_device_mesh("cpu", sizes, mesh_dim_names=names)
            mesh = device_mesh.mesh.clone() if mesh is None else mesh
            for n in names:
                groups[n].add(tuple(dist.get_process_group_ranks(device_mesh.get_group(n))))
        finally:
            dist.destroy_process_group()
    frozen = {n: tuple(sorted(g)) for n, g in groups.items()}
    return MeshLayout(names, sizes, mesh, frozen)
