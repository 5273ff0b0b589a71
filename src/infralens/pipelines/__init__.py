"""Pipelines as component graphs: configs, loaders, miniature pipelines and traces."""

__all__: list[str] = []
