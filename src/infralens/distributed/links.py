r"""The two links of a GPU cluster, as stated assumptions: NVLink inside a node, the network between nodes.

A CPU machine cannot measure either, so the numbers are written down here
once, each with its source, and every page that prices a collective on a
cluster reads them from :data:`LINKS`. The model's :math:`\beta` is one over
the per-direction bandwidth of one GPU's share of the link; :math:`\alpha` is
the per-step latency NCCL's tuner assumes for its ring algorithm with the
"Simple" protocol, the one it uses for large messages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class Link:
    """One kind of link, with where its numbers come from."""

    name: str
    bandwidth: float
    """Bytes per second, one direction, per GPU."""
    latency: float
    """:math:`\\alpha`: seconds per collective step."""
    source: str
    """Where the two numbers come from."""

    @property
    def alpha(self) -> float:
        """:math:`\\alpha` in seconds (the latency)."""
        return self.latency

    @property
    def beta(self) -> float:
        """:math:`\\beta` in seconds per byte: one over the bandwidth."""
        return 1.0 / self.bandwidth


LINKS: Mapping[str, Link] = MappingProxyType(
    {
        "nvlink": Link(
            name="NVLink 4 (H100 SXM5), inside a node",
            bandwidth=450e9,
            latency=3.4e-6,
            source=(
                "NVIDIA H100 Tensor Core GPU datasheet: 900 GB/s NVLink per GPU, both directions together; "
                "latency: NCCL 2.30.7 src/graph/tuning.cc, hwLatencies[NVLINK][Ring][Simple] = 3.4 us"
            ),
        ),
        "network": Link(
            name="InfiniBand NDR, 400 Gb/s per GPU, between nodes",
            bandwidth=50e9,
            latency=14.0e-6,
            source=(
                "NVIDIA DGX H100 datasheet: eight ConnectX-7 400 Gb/s ports, one per GPU (400 Gb/s = 50 GB/s); "
                "latency: NCCL 2.30.7 src/graph/tuning.cc, hwLatencies[NET][Ring][Simple] = 14.0 us"
            ),
        ),
    }
)
"""The assumed links, by name: ``"nvlink"`` and ``"network"``."""
