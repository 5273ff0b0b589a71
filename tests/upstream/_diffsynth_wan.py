"""DiffSynth-Studio imported as a package, for the cross-checks that run its pipelines, units and ``model_fn``.

The import itself lives in ``_wan_pipeline`` (stand-ins for the packages that do not import here, the bare
packages of ``_diffsynth.import_submodule`` dropped first): this module is the name the cross-checks of
DiffSynth Labs 06 to 10 import it by, so that the session holds one copy of every DiffSynth module.
"""

from __future__ import annotations

import importlib
from types import ModuleType


def wan_video() -> ModuleType:
    """``diffsynth.pipelines.wan_video``, imported once per session (about 20 s).

    One import for the whole session, shared with ``_wan_pipeline``: a second import would build a second
    copy of every DiffSynth module, and a model registered in one copy's ``MODEL_CONFIGS`` would be unknown
    to the other's loader.
    """
    from ._wan_pipeline import wan_video as shared

    return shared()


def diffsynth_module(dotted: str) -> ModuleType:
    """``diffsynth.<dotted>`` from the full package import (the classes the Wan pipeline itself uses)."""
    wan_video()
    return importlib.import_module(f"diffsynth.{dotted}")
