"""Load parts of the installed DiffSynth-Studio without importing the whole package.

``import diffsynth`` pulls in torchvision, whose PyPI wheels do not import next
to the CPU torch this project pins, and many optional model stacks. The
cross-checks need only a few pure-torch pieces, so they are loaded from the
installed files: a module by path, or one function compiled on its own.
"""

from __future__ import annotations

import ast
import importlib.machinery
import importlib.metadata
import importlib.util
import math
from pathlib import Path

import pytest


def package_dir() -> Path:
    try:
        dist = importlib.metadata.distribution("diffsynth")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("diffsynth is not installed (tox -e upstream installs it)")
    return Path(dist.locate_file("diffsynth"))


def version() -> str:
    return importlib.metadata.version("diffsynth")


def load_module(relative: str):
    """Import ``diffsynth/<relative>`` as a standalone module (it must import only torch/numpy/stdlib)."""
    path = package_dir() / relative
    spec = importlib.util.spec_from_file_location(f"diffsynth_standalone_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_method(relative: str, cls: str, name: str):
    """Compile one method of one class from ``diffsynth/<relative>`` on its own, as a plain function."""
    tree = ast.parse((package_dir() / relative).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    namespace: dict = {"math": math}
                    exec(compile(ast.Module([item], []), str(package_dir() / relative), "exec"), namespace)
                    return namespace[name]
    raise LookupError(f"{cls}.{name} not found in diffsynth/{relative} {version()}")


def import_submodule(dotted: str, bare: tuple[str, ...] = ("core",)):
    """Import ``diffsynth.<dotted>`` with its relative imports, skipping heavy package ``__init__`` files.

    ``diffsynth/__init__.py`` and ``diffsynth/core/__init__.py`` import
    everything, torchvision included. Registering ``diffsynth``, the packages
    in ``bare`` and the module's parents as bare modules (only their
    ``__path__``) lets a model file and the small helpers it imports load on
    their own; their subpackages' ``__init__`` files still run.
    """
    import sys
    import types

    root = package_dir()
    packages = {(), *((name,) for name in bare)}
    parents = dotted.split(".")[:-1]
    packages.update(tuple(parents[:depth]) for depth in range(1, len(parents) + 1))
    for parts in sorted(packages, key=len):
        name = ".".join(("diffsynth", *parts))
        if name not in sys.modules:
            package = types.ModuleType(name)
            package.__path__ = [str(root.joinpath(*parts))]
            # a spec, so importlib.util.find_spec still answers for the package in later tests
            package.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
            package.__spec__.submodule_search_locations = package.__path__
            sys.modules[name] = package
    return importlib.import_module(f"diffsynth.{dotted}")
