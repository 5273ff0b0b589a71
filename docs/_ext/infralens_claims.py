"""Sphinx extension: the claims check. Formulas must run; numbers must come from code.

For every page (the generated API reference excepted) it checks, as the page is read:

* **formulas**: every display formula is followed by a ``{doctest}`` block before
  the next display formula or section; otherwise the formula is unchecked;
* **numbers in prose and inline math**: these are claims --

  - a shape such as ``(1, 16, 21, 60, 104)``;
  - a number with three or more significant digits, a decimal point or an exponent;
  - any number, whatever its size, in digits or spelled out, next to a quantity
    word (channels, layers, heads, frames, tokens, steps, factor, bytes and their
    units, parameters, FLOPs, ranks, experts, ...) or followed by a times sign
    (``16x``, ``2.25×``).

  A claim is backed only by a value the page computes: the *output* of one of the
  page's doctests (a number that only appears in a doctest's source backs
  nothing), or a ``{compute}`` role whose expression calls a public ``infralens``
  name (``{compute}`` of literal arithmetic is itself a violation). Otherwise the
  code could compute it and the page did not.

A deliberate exception carries its reason where it stands:
``{exempt}`40 layers <released config.json, not in the wheel>``` for text, and a
``{claims-exempt}`` directive (argument: the reason) right before a formula. A
number that only sets up an example (``{given}`two ranks```) is marked as given,
and a statement about upstream behaviour tied to its test (``{checked}``) is
backed by that test. A page whose numbers are examples, not claims, says so in its
front matter (``claims-exempt: <reason>``); it still needs doctests after formulas.
"Further Reading" sections, links, code blocks, display math and version strings
are not prose claims. Each violation is a warning (the build uses ``-W``). At the
end the builder prints a summary: pages, formulas, doctests, computed values,
given values, exceptions, violations.
"""

from __future__ import annotations

import doctest
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole

logger = logging.getLogger(__name__)

SHAPE = re.compile(r"\(\s*\d+\s*(?:,\s*\d+\s*)+,?\s*\)|\(\s*\d+\s*,\s*\)")
NUMBER = re.compile(r"(?<![\w.])(\d[\d,]*(?:\.\d+)?(?:e-?\d+)?)(?![\w.]*\d)")
# versions (0.42.1) and model names with a version (Wan 2.1, SD 1.5, LTX-Video 0.9.5) are names
VERSION = re.compile(r"\b\d+\.\d+\.\d+\b|\b[A-Z][\w-]*\s+\d+(?:\.\d+)+\b")
WORDS = {
    "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "sixteen": 16, "twenty": 20, "thirty": 30, "forty": 40,
    "fifty": 50, "sixty": 60, "hundred": 100, "thousand": 1000,
}  # fmt: skip
QUANTITY = (
    r"(?:channels?|layers?|heads?|frames?|tokens?|steps?|factors?|bytes?|[KMGTP]i?B|bits?|"
    r"param(?:eter)?s?|[GTP]?FLOPs?|ranks?|experts?|micro-?batch(?:es)?|buckets?|stages?|GPUs?|nodes?|"
    r"blocks?|tiles?|patch(?:es)?|dimensions?|elements?|values?|calls?|passes|rows?|columns?|"
    r"pixels?|cells?|times|fold|terms?|matmuls?|multiply-adds?)"
)
# a number (digits or a number word) followed by a quantity word, or by a times sign
QUANTIFIED = re.compile(
    r"(?<![\w.])(\d[\d,]*(?:\.\d+)?|" + "|".join(WORDS) + r")(?:\s|-|\u00a0|\\,|~|\\ )*"
    r"(?:(?=" + QUANTITY + r"\b)|(?=[x×]\b|×|\\times\b))",
    re.IGNORECASE,
)
BACKLOG = Path(__file__).resolve().parents[1] / "_data" / "claims_backlog.json"
SKIP_SECTIONS = {"further reading"}
SKIP_ANCESTORS = (nodes.reference, nodes.literal_block, nodes.math_block, nodes.comment, nodes.raw)
BACKED_CLASSES = {"il-computed", "il-exempt", "il-given", "il-checked"}


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
    given: int = 0
    backlog: set[str] = field(default_factory=set)
    exceptions: list[str] = field(default_factory=list)
    violations: int = 0


def _normal(number: str) -> str:
    word = WORDS.get(number.lower())
    return str(word) if word is not None else number.replace(",", "")


def _tokens(text: str, *, inside_shapes: bool = False) -> set[str]:
    """Numbers and shapes in ``text``, normalised (no thousands separators, no spaces).

    In prose a shape counts once, as a shape; in values a page computed
    (``inside_shapes=True``) the numbers inside a tuple count too, so an output
    ``(720, 1280, 81)`` backs "81 frames" in a sentence.
    """
    out = {re.sub(r"\s", "", s) for s in SHAPE.findall(text)}
    numbers_text = text if inside_shapes else SHAPE.sub(" ", text)
    out |= {n.replace(",", "") for n in NUMBER.findall(numbers_text)}
    if inside_shapes:  # a computed 1,024.0 or 1024.00 also backs "1024"
        out |= {n.rstrip("0").rstrip(".") for n in out if re.fullmatch(r"\d+\.\d+", n)}
    return out


def claims_in(text: str) -> set[str]:
    """The claims a sentence makes: shapes, long or decimal numbers, and any number next to a quantity."""
    text = VERSION.sub(" ", text)
    found = {t for t in _tokens(text) if SHAPE.fullmatch(t) or _is_claim(t)}
    found |= {_normal(m.group(1)) for m in QUANTIFIED.finditer(SHAPE.sub(" ", text))}
    return found


def _is_claim(number: str) -> bool:
    digits = number.replace(",", "")
    if "." in digits or "e" in digits:
        return True
    return len(digits.lstrip("0")) >= 3


def doctest_outputs(text: str) -> str:
    """The expected output of a doctest block's examples (never its source lines)."""
    try:
        examples = doctest.DocTestParser().get_examples(text)
    except ValueError:
        return ""
    return "\n".join(ex.want for ex in examples)


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
        if isinstance(parent, SKIP_ANCESTORS) or BACKED_CLASSES & set(_classes(parent)):
            return True
        parent = parent.parent
    return False


def _sentences(doctree):
    """``(node, text)`` per paragraph-like element: its prose and inline math, skipped parts blanked."""
    blocks = (nodes.paragraph, nodes.title, nodes.term, nodes.caption, nodes.rubric)
    for block in doctree.findall(lambda n: isinstance(n, blocks)):
        if _skipped(block) or _in_skipped_section(block):
            continue
        parts: list[str] = []
        for node in block.findall(lambda n: isinstance(n, nodes.Text | nodes.math)):
            if isinstance(node, nodes.Text) and isinstance(node.parent, nodes.math):
                continue  # read through the math node itself
            inner = node.parent if isinstance(node, nodes.Text) else node
            owner = inner
            while owner is not None and owner is not block:
                if isinstance(owner, blocks):
                    break  # a nested paragraph is its own sentence
                owner = owner.parent
            if owner is not block:
                continue
            if _skipped(node):
                parts.append(" ; ")
            elif isinstance(node, nodes.math):
                parts.append(" " + node.astext() + " ")
            else:
                parts.append(node.astext())
        yield block, "".join(parts)


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

    # 2. numbers in prose and inline math
    checked: set[str] = set()
    for node in doctree.findall(lambda n: isinstance(n, nodes.Element) and n.get("testnodetype") == "doctest"):
        checked |= _tokens(doctest_outputs(node.astext()), inside_shapes=True)
    for node in doctree.findall(nodes.inline):
        classes = node.get("classes", [])
        if "il-computed" in classes:
            page.computed += 1
            checked |= _tokens(node.astext(), inside_shapes=True)
            if node.get("literal_only"):
                _violation(
                    page, node, f"{{compute}}`{node['expression']}` calls no infralens name: compute the value "
                    "with the library, or mark a number that only sets up an example {given}"
                )  # fmt: skip
        elif "il-exempt" in classes:
            page.exceptions.append(f"{node.astext()!r}: {node['reason']}")
        elif "il-given" in classes:
            page.given += 1
    page_exempt = app.env.metadata.get(docname, {}).get("claims-exempt")
    if page_exempt is not None and not str(page_exempt).strip():
        _violation(page, doctree, "front matter claims-exempt needs a reason")
    elif page_exempt:  # front matter `claims-exempt: <reason>`: prose numbers are not claims here
        page.exceptions.append(f"page {docname}: {page_exempt}")
    backlog = set(load_backlog().get(docname, ()))
    for block, text in [] if page_exempt else _sentences(doctree):
        for token in sorted(claims_in(text) - checked):
            if token in backlog:  # an unbacked claim older than this check: counted, to be fixed
                page.backlog.add(token)
                continue
            _violation(
                page,
                block,
                f"{token!r} is a claim no computed value backs: compute it ({{compute}} of an infralens name), "
                "show it as a doctest's output on this page, mark it {exempt} with a reason, or {given} if it "
                "only sets up an example",
            )
    app.env.infralens_claims = getattr(app.env, "infralens_claims", {})
    app.env.infralens_claims[docname] = page


def load_backlog() -> dict[str, list[str]]:
    """The ratchet: unbacked claims that predate this check, by page (``docs/_data/claims_backlog.json``).

    They are counted, not reported, so the check could land before every old page
    was fixed. The file may only shrink: an entry that no longer violates is itself
    an error at the end of a full build, so a fixed claim must leave the list, and a
    new page has no entries.
    """
    return json.loads(BACKLOG.read_text()) if BACKLOG.exists() else {}


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
        total.given += page.given
        total.backlog |= {f"{token}@{doc}" for doc, p in claims.items() if p is page for token in p.backlog}
        total.exceptions += page.exceptions
        total.violations += page.violations
    lines = [
        f"claims check: {pages} pages, {total.formulas} display formulas, {total.doctests} doctest blocks, "
        f"{total.computed} computed values, {total.given} given values, {len(total.exceptions)} exceptions, "
        f"{total.violations} violations, {len(total.backlog)} backlog"
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
    for doc, tokens in load_backlog().items():  # the ratchet: fixed claims leave the backlog
        if doc in claims:
            stale = sorted(set(tokens) - claims[doc].backlog)
            if stale:
                logger.warning(
                    "claims check: %s no longer has the unbacked claims %s: remove them from %s",
                    doc, ", ".join(stale), BACKLOG.name, type="infralens", subtype="claims",
                )  # fmt: skip


def setup(app):
    app.add_role("exempt", ExemptRole())
    app.add_directive("claims-exempt", ClaimsExempt)
    app.connect("doctree-read", check_doctree)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("build-finished", _build_finished)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "2", "env_version": 2}
