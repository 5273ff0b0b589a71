"""Sphinx extension: the claims check. Formulas must run; numbers must come from code.

For every page (the generated API reference excepted) it checks, as the page is read:

* **formulas**: every display formula is followed by a ``{doctest}`` block before
  the next display formula or section; otherwise the formula is unchecked;
* **numbers in prose**: a shape such as ``(1, 16, 21, 60, 104)`` or a number with
  three or more significant digits, a decimal point or an exponent, typed in a
  sentence, must also appear in one of the page's doctests (source or expected
  output), or come from the ``{compute}`` role; otherwise the code could compute
  it and the page did not.

A deliberate exception carries its reason where it stands:
``{exempt}`40 layers <released config.json, not in the wheel>``` for text, and a
``{claims-exempt}`` directive (argument: the reason) right before a formula;
a page whose numbers are examples, not claims, says so in its front matter
(``claims-exempt: <reason>``).
"Further Reading" sections, links, code, math and version strings are not
prose claims. Each violation is a warning (the build uses ``-W``). At the end
the builder prints a summary: pages, formulas, doctests, computed values,
exceptions, violations.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

logger = logging.getLogger(__name__)

SHAPE = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)+,?\s*\)|\(\s*\d+\s*,\s*\)")
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)(?![\w.]*\d)")
# versions (0.42.1) and model names with a version (Wan 2.1, SD 1.5, LTX-Video 0.9.5) are names
VERSION = re.compile(r"\b\d+\.\d+\.\d+\b|\b[A-Z][\w-]*\s+\d+(?:\.\d+)+\b")
SKIP_SECTIONS = {"further reading"}
SKIP_ANCESTORS = (nodes.reference, nodes.literal_block, nodes.math, nodes.math_block, nodes.comment, nodes.raw)


class ExemptRole(SphinxRole):
    """``{exempt}`text <reason>``: render ``text``; record the exception and its reason."""

    def run(self):
        m = re.fullmatch(r"(?s)(.*?)\s*<(.+)>", self.text)
        if not m or not m.group(2).strip():
            msg = "{exempt} needs a reason: {exempt}`text <why the code cannot compute it>`"
            logger.warning(msg, location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        node = nodes.inline(self.rawtext, m.group(1), classes=["il-exempt"], reason=m.group(2).strip())
        return [node], []


class ClaimsExempt(SphinxDirective):
    """``{claims-exempt} reason``: the next display formula is not exercised, on purpose."""

    required_arguments = 1
    final_argument_whitespace = True

    def run(self):
        return [nodes.comment("", "", claims_exempt=self.arguments[0])]


@dataclass
class PageClaims:
    formulas: int = 0
    doctests: int = 0
    computed: int = 0
    exceptions: list[str] = field(default_factory=list)
    violations: int = 0


def _tokens(text: str, *, inside_shapes: bool = False) -> set[str]:
    """Numbers and shapes in ``text``, normalised (no thousands separators, no spaces).

    In prose a shape counts once, as a shape; in code that checks values
    (``inside_shapes=True``) the numbers inside a tuple count too, so
    ``tokens(720, 1280, 81)`` in a doctest backs "720p" in a sentence.
    """
    out = {re.sub(r"\s", "", s) for s in SHAPE.findall(text)}
    numbers_text = text if inside_shapes else SHAPE.sub(" ", text)
    out |= {n.replace(",", "") for n in NUMBER.findall(numbers_text)}
    return out


def _is_claim(number: str) -> bool:
    digits = number.replace(",", "")
    if "." in digits or "e" in digits:
        return True
    return len(digits.lstrip("0")) >= 3


def _classes(node) -> list[str]:
    return node.get("classes", []) if isinstance(node, nodes.Element) else []


def _in_skipped_section(node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, nodes.section) and parent.children:
            title = parent[0].astext().strip().lower() if isinstance(parent[0], nodes.title) else ""
            if title in SKIP_SECTIONS:
                return True
        parent = parent.parent
    return False


def _skipped(node) -> bool:
    parent = node.parent
    while parent is not None:
        if isinstance(parent, SKIP_ANCESTORS) or {"il-computed", "il-exempt"} & set(_classes(parent)):
            return True
        parent = parent.parent
    return False


def check_doctree(app, doctree) -> None:
    docname = app.env.docname
    if docname.startswith("docs/api/"):
        return
    page = PageClaims()
    # 1. formulas: a display formula needs a doctest before the next formula or section
    pending, exempt_next = None, None
    for node in doctree.findall(lambda n: isinstance(n, nodes.Element)):
        if isinstance(node, nodes.section):
            if pending is not None:
                _violation(page, pending, "display formula without a doctest after it in its section")
            pending = None
        elif isinstance(node, nodes.comment) and node.get("claims_exempt"):
            exempt_next = node["claims_exempt"]
        elif isinstance(node, nodes.math_block):
            if pending is not None:
                _violation(page, pending, "display formula without a doctest before the next formula")
            page.formulas += 1
            if exempt_next:
                page.exceptions.append(f"formula: {exempt_next}")
                pending, exempt_next = None, None
            else:
                pending = node
        elif node.get("testnodetype") == "doctest":
            page.doctests += 1
            pending = None
    if pending is not None:
        _violation(page, pending, "display formula without a doctest after it")

    # 2. numbers in prose
    checked: set[str] = set()
    for node in doctree.findall(lambda n: isinstance(n, nodes.Element) and n.get("testnodetype") == "doctest"):
        checked |= _tokens(node.astext(), inside_shapes=True)
    for node in doctree.findall(nodes.inline):
        if "il-computed" in node.get("classes", []):
            page.computed += 1
            checked |= _tokens(node.astext(), inside_shapes=True)
    for node in doctree.findall(nodes.inline):
        if "il-exempt" in _classes(node):
            page.exceptions.append(f"{node.astext()!r}: {node['reason']}")
    page_exempt = app.env.metadata.get(docname, {}).get("claims-exempt")
    if page_exempt:  # front matter `claims-exempt: <reason>`: prose numbers are not claims here
        page.exceptions.append(f"page {docname}: {page_exempt}")
    for text in [] if page_exempt else doctree.findall(nodes.Text):
        if _skipped(text) or _in_skipped_section(text):
            continue
        prose = VERSION.sub(" ", text.astext())
        for token in _tokens(prose):
            if (SHAPE.fullmatch(token) or _is_claim(token)) and token not in checked:
                _violation(
                    page,
                    text.parent,
                    f"{token!r} is typed in prose: compute it ({{compute}}), "
                    "check it in a doctest on this page, or mark it {exempt} with a reason",
                )
    app.env.infralens_claims = getattr(app.env, "infralens_claims", {})
    app.env.infralens_claims[docname] = page


def _violation(page: PageClaims, node, message: str) -> None:
    page.violations += 1
    logger.warning("claims check: %s", message, location=node, type="infralens", subtype="claims")


def _purge(app, env, docname):
    getattr(env, "infralens_claims", {}).pop(docname, None)


def _merge(app, env, docnames, other):
    env.infralens_claims = {**getattr(env, "infralens_claims", {}), **getattr(other, "infralens_claims", {})}


def summary(claims: dict[str, PageClaims]) -> str:
    pages = len(claims)
    total = PageClaims()
    for page in claims.values():
        total.formulas += page.formulas
        total.doctests += page.doctests
        total.computed += page.computed
        total.exceptions += page.exceptions
        total.violations += page.violations
    lines = [
        f"claims check: {pages} pages, {total.formulas} display formulas, {total.doctests} doctest blocks, "
        f"{total.computed} computed values, {len(total.exceptions)} exceptions, {total.violations} violations"
    ]
    lines += [f"  exception: {e}" for e in total.exceptions]
    return "\n".join(lines)


def _build_finished(app, exc) -> None:
    if exc is not None or app.builder.name not in {"html", "doctest"}:
        return
    claims = getattr(app.env, "infralens_claims", {})
    sys.stdout.write(summary(claims) + "\n")
    failing = sorted(doc for doc, page in claims.items() if page.violations)
    if failing:  # also on incremental builds, where unchanged pages are not re-read
        logger.warning("claims check: violations on %s", ", ".join(failing), type="infralens", subtype="claims")


def setup(app):
    app.add_role("exempt", ExemptRole())
    app.add_directive("claims-exempt", ClaimsExempt)
    app.connect("doctree-read", check_doctree)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1", "env_version": 1}
