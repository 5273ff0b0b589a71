r"""Which link each axis of a 3-D plan crosses, and what its traffic costs there by the alpha-beta model.

The plan's ranks are laid out as torch's ``DeviceMesh`` lays them out for
``mesh_dim_names=("pp", "dp", "tp")`` (:func:`~infralens.distributed.mesh_layout`,
TP innermost) and fill the nodes in order. A group whose ranks sit on one node
talks over NVLink; a group that spans nodes is as slow as its slowest hop, the
network (:data:`~infralens.distributed.LINKS`). Each axis's per-step traffic
(:func:`~infralens.distributed.step_traffic`) is then priced call by call:

.. math:: T_\text{axis} = \sum_\text{ops} \text{calls} \cdot (s\,\alpha + v n \beta)

with a point-to-point send costing :math:`\alpha + n\beta`. Nothing here
overlaps communication with compute, which real runs do: these are the
seconds that would have to hide behind it.
"""

from __future__ import annotations

from dataclasses import dataclass

from .collective_cost import collective_time
from .device_mesh_layout import MeshLayout, mesh_layout
from .links import LINKS, Link
from .plan import ParallelismPlan
from .plan_costs import AxisTraffic, step_traffic

MESH_ORDER = ("pp", "dp", "tp")
"""Mesh dimensions outermost first: TP's ranks are consecutive, so they share a node."""


@dataclass(frozen=True)
class AxisLink:
    """One axis of a plan: its traffic, where its groups run, and the modelled seconds per step."""

    traffic: AxisTraffic
    nodes_spanned: int
    """Nodes one group of this axis touches."""
    link: str
    """``"nvlink"`` (one node) or ``"network"``."""
    seconds: float
    """Modelled communication time per step, without overlap."""


def op_seconds(op: str, nbytes: float, group_size: int, link: Link) -> float:
    """One call on ``link``: a collective by :func:`~infralens.distributed.collective_time`, or a send."""
    if op == "send_recv":
        return link.alpha + nbytes * link.beta
    return collective_time(op, nbytes, group_size, alpha=link.alpha, beta=link.beta)


def plan_links(plan: ParallelismPlan, *, layout: MeshLayout | None = None) -> tuple[AxisLink, ...]:
    """For ``tp``, ``pp`` and ``dp``: the nodes a group spans, its link and its modelled seconds per step.

    :param layout: the plan's mesh layout, if already built (default: built here, with the fake process group).
    """
    shape = {"pp": plan.pp, "dp": plan.dp, "tp": plan.tp}
    layout = mesh_layout(shape) if layout is None else layout
    given = dict(zip(layout.dim_names, layout.shape, strict=True))
    if given != shape:
        raise ValueError(f"layout must be the plan's mesh {shape}, e.g. mesh_layout({shape}); got {given}")
    out = []
    for traffic in step_traffic(plan):
        span = layout.nodes_spanned(traffic.axis, plan.cluster.gpus_per_node)
        name = "network" if span > 1 else "nvlink"
        seconds = sum(calls * op_seconds(op, n, traffic.group_size, LINKS[name]) for op, calls, n in traffic.ops)
        out.append(AxisLink(traffic, span, name, seconds))
    return tuple(out)
