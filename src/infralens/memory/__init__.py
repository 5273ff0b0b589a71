"""Memory: attention score memory, chunking, tiling and offload residency plans."""

from .passes import Pass, bytes_moved, memory_passes

__all__ = ["Pass", "bytes_moved", "memory_passes"]
