"""Sphinx extension: the ``{compute}`` role puts a value the library computes into prose.

A number or shape typed into a sentence can drift from the code; this role
evaluates a Python expression when the book is built and inserts the result::

    The request gives a {compute}`latent_shape("wan2.1", height=480, width=832, frames=81)` latent
    with {compute}`latent_tokens("wan2.1", height=480, width=832, frames=81).tokens | ,` tokens.

The expression sees every public name of ``infralens`` packages (their
``__all__``), ``math`` and ``torch``, and must use at least one ``infralens``
name: literal arithmetic is not a computed value (the claims check flags it). An optional ``| spec`` after the
expression is a :func:`format` spec. Tuples, lists and ``torch.Size`` render as
inline code; other values as plain text. An expression that fails to evaluate
is a build error, so a renamed function cannot leave a stale number behind.
"""

from __future__ import annotations

import ast
import importlib
import math
import pkgutil

import torch
from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxRole

import infralens

logger = logging.getLogger(__name__)
_NAMESPACE: dict[str, object] = {}  # built once per process; modules do not pickle into the env


def namespace() -> dict[str, object]:
    """Every public name of the infralens packages, plus ``math`` and ``torch``."""
    ns: dict[str, object] = {"math": math, "torch": torch}
    for info in pkgutil.walk_packages(infralens.__path__, prefix="infralens."):
        if not info.ispkg or info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        ns.update({name: getattr(module, name) for name in getattr(module, "__all__", ())})
    return ns


def render(text: str, ns: dict[str, object]) -> tuple[str, bool]:
    """Evaluate ``expr [| spec]``; return the text and whether it should be literal.

    >>> render("2**10 | ,", {})
    ('1,024', False)
    >>> render("(1, 16) + (21,)", {})
    ('(1, 16, 21)', True)
    """
    expr, _, spec = text.partition(" | ")
    value = eval(expr, {"__builtins__": __builtins__}, dict(ns))  # evaluates the book's own sources
    if isinstance(value, torch.Size):
        value = tuple(value)
    if isinstance(value, torch.Tensor) and value.ndim == 0:
        value = value.item()
    return format(value, spec.strip()), isinstance(value, tuple | list)


def calls_library(expr: str, ns: dict[str, object]) -> bool:
    """Whether ``expr`` uses a public ``infralens`` name (not only literals, ``math`` and ``torch``).

    >>> calls_library("21 * 30 * 52", {"latent_shape": None})
    False
    >>> calls_library('latent_shape("sd", height=512, width=512)[2]', {"latent_shape": None})
    True
    """
    library = set(ns) - {"math", "torch"}
    return any(isinstance(n, ast.Name) and n.id in library for n in ast.walk(ast.parse(expr, mode="eval")))


class ComputeRole(SphinxRole):
    """``{compute}`expr`` or ``{compute}`expr | format-spec``."""

    def run(self):
        if not _NAMESPACE:
            _NAMESPACE.update(namespace())
        try:
            text, literal = render(self.text, _NAMESPACE)
        except Exception as err:  # report where, then fail the build (-W)
            msg = "{compute}`%s` failed: %s: %s"
            logger.warning(msg, self.text, type(err).__name__, err, location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        inner = nodes.literal(self.rawtext, text) if literal else nodes.Text(text)
        expr = self.text.partition(" | ")[0]
        node = nodes.inline("", "", inner, classes=["il-computed"], expression=expr)
        node["literal_only"] = not calls_library(expr, _NAMESPACE)
        return [node], []


def setup(app):
    app.add_role("compute", ComputeRole())
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1", "env_version": 1}
