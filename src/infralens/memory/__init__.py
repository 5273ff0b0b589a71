"""Memory: attention score memory, chunking, tiling and offload residency plans."""

__all__: list[str] = []
