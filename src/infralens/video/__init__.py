"""Video pipelines: the frame axis, tiny causal video VAEs and DiTs, token counts."""

__all__: list[str] = []
