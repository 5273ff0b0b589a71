"""Sphinx extension: the claims ledger. Statements about upstream tie to the tests that run upstream.

Roles:

* ``{checked}`statement <tests/upstream/test_x.py::test_name>``` renders the
  statement with a mark that links to its row in the ledger page. The build
  fails (a warning under ``-W``) if the test file or the test function does
  not exist, so a claim cannot point at nothing.
* ``{upstream}`text <package/path.py:LINE#token>``` (or just the target) links
  to upstream source at the version recorded in ``docs/_data/upstream.json``
  (the version the cross-checks last passed against as a complete run), so the
  link and the stated version cannot disagree. ``#token`` is what the cited
  line must contain; ``tests/upstream/test_citations.py`` checks every
  citation of the book against the installed package.
* ``{given}`two ranks``` marks a number that only sets up an example; the
  claims check does not ask for it to be computed.

Directive ``{claims-ledger}`` (one page, ``docs/ledger.md``) renders every
``{checked}`` claim of the book as a table: the statement, its page, the test,
the upstream version, and the test's result in this build's test reports
(JUnit XML files in ``_build/junit/``, written by the ``py`` and ``upstream``
environments of the same CI run; "not run in this build" when absent).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from docutils import nodes
from sphinx import addnodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective, SphinxRole
from sphinx.util.nodes import make_refnode

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
LEDGER_DOC = "docs/ledger"
JUNIT_DIR = ROOT / "_build" / "junit"
UPSTREAM_JSON = ROOT / "docs" / "_data" / "upstream.json"
# package -> (GitHub repository, tag template, path prefix inside the repository before the package path)
REPOS = {
    "diffusers": ("huggingface/diffusers", "v{v}", "src/"),
    "transformers": ("huggingface/transformers", "v{v}", "src/"),
    "peft": ("huggingface/peft", "v{v}", "src/"),
    "diffsynth": ("modelscope/DiffSynth-Studio", "v{v}", ""),
    "torch": ("pytorch/pytorch", "v{v}", ""),
}
TARGET = re.compile(r"(?s)(.*?)\s*<([^<>]+)>\s*$")
CITATION = re.compile(r"^(?P<package>[a-z_]+)/(?P<path>[\w./-]+\.py):(?P<line>\d+)(?:#(?P<token>.+))?$")


@dataclass
class Claim:
    docname: str
    lineno: int
    text: str
    test: str
    anchor: str


def _split(text: str) -> tuple[str, str] | None:
    m = TARGET.fullmatch(text)
    return (m.group(1).strip(), m.group(2).strip()) if m else None


def test_exists(test: str) -> str | None:
    """``None`` if ``path::name`` names a test function (or method) in the repository, else why not."""
    path, _, name = test.partition("::")
    if not path.startswith("tests/") or not name:
        return f"{test!r} is not of the form tests/<path>.py::test_name"
    file = ROOT / path
    if not file.is_file():
        return f"no test file {path}"
    parts = name.split("[", 1)[0].split("::")
    tree = ast.parse(file.read_text())
    scope: list[ast.stmt] = tree.body
    for part in parts:
        found = next(
            (n for n in scope if isinstance(n, ast.FunctionDef | ast.ClassDef) and n.name == part),
            None,
        )
        if found is None:
            return f"no {part!r} in {path}"
        scope = found.body if isinstance(found, ast.ClassDef) else []
    return None


class CheckedRole(SphinxRole):
    """``{checked}`statement <tests/...::test>``; the statement may hold inline markup (double backticks outside)."""

    def parse_inline(self, text: str, parent: nodes.Element) -> list[nodes.Node]:
        """The statement's inline markup (code, math, roles) parsed as the page's own markup."""
        parsed, messages = self.inliner.parse(text, self.lineno, self.inliner, parent)
        return [*parsed, *messages]

    def run(self):
        split = _split(self.text)
        if split is None or not split[0]:
            msg = "{checked} needs a statement and its test: {checked}`statement <tests/upstream/test_x.py::test_y>`"
            logger.warning(msg, location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        statement, test = split
        problem = test_exists(test)
        if problem:
            logger.warning("{checked} test not found: %s", problem, location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        node = nodes.inline("", "", classes=["il-checked"], test=test)
        node += self.parse_inline(statement, node)
        plain = " ".join(node.astext().split())
        key = f"{self.env.docname}\0{plain}\0{test}"
        anchor = "claim-" + hashlib.sha1(key.encode()).hexdigest()[:10]
        claims = self.env.__dict__.setdefault("infralens_ledger", {})
        # the same statement tied to the same test twice on a page: one ledger row each, each its own id
        repeats = sum(1 for c in claims.get(self.env.docname, []) if c.anchor.split("-")[:2] == anchor.split("-"))
        if repeats:
            anchor = f"{anchor}-{repeats + 1}"
        claims.setdefault(self.env.docname, []).append(Claim(self.env.docname, self.lineno, plain, test, anchor))
        ref = addnodes.pending_xref(
            "", nodes.inline("", "✓", classes=["il-check-mark"]),
            refdomain="", reftype="infralens-claim", reftarget=anchor, refexplicit=True, refwarn=True,
        )  # fmt: skip
        node += nodes.Text("\u2009")
        node += nodes.superscript("", "", ref)
        return [node], []


def upstream_versions() -> dict[str, str]:
    return json.loads(UPSTREAM_JSON.read_text())


def citation_url(target: str) -> tuple[str, str]:
    """The GitHub URL and the display text of ``package/path.py:LINE[#token]``; ``ValueError`` if malformed."""
    m = CITATION.fullmatch(target)
    if not m:
        raise ValueError(
            f"{target!r} is not package/path.py:LINE[#token], e.g. diffusers/schedulers/scheduling_ddim.py:209"
        )
    package = m["package"]
    if package not in REPOS:
        raise ValueError(f"unknown package {package!r}; one of {', '.join(REPOS)}")
    versions = upstream_versions()
    if package not in versions:
        raise ValueError(f"no version of {package!r} in docs/_data/upstream.json")
    repo, tag, prefix = REPOS[package]
    url = f"https://github.com/{repo}/blob/{tag.format(v=versions[package])}/{prefix}{package}/{m['path']}#L{m['line']}"
    return url, f"{Path(m['path']).name}:{m['line']}"


class UpstreamRole(SphinxRole):
    """``{upstream}`text <package/path.py:LINE#token>`` or ``{upstream}`package/path.py:LINE#token``."""

    def run(self):
        split = _split(self.text)
        text, target = split if split else ("", self.text.strip())
        try:
            url, default_text = citation_url(target)
        except ValueError as err:
            logger.warning("{upstream}: %s", err, location=self.get_location())
            return [nodes.problematic(self.rawtext, self.rawtext)], []
        label = text or default_text
        ref = nodes.reference("", "", nodes.literal("", label) if not text else nodes.Text(label), refuri=url)
        return [nodes.inline("", "", ref, classes=["il-upstream"])], []


class GivenRole(SphinxRole):
    """``{given}`two ranks``: a number that sets up an example, not a claim."""

    def run(self):
        return [nodes.inline(self.rawtext, self.text, classes=["il-given"])], []


class LedgerDirective(SphinxDirective):
    """``{claims-ledger}``: placeholder replaced by the table once every page is read."""

    def run(self):
        return [LedgerNode()]


class LedgerNode(nodes.General, nodes.Element):
    pass


def test_results() -> dict[str, str]:
    """``path::name`` (parameters folded: the worst result wins) -> passed / failed / skipped, from JUnit XML."""
    order = {"passed": 0, "skipped": 1, "failed": 2}
    results: dict[str, str] = {}
    for xml in sorted(JUNIT_DIR.glob("*.xml")) if JUNIT_DIR.is_dir() else []:
        for case in ET.parse(xml).getroot().iter("testcase"):
            file = case.get("file") or ""
            classname = case.get("classname", "")
            name = case.get("name", "").split("[", 1)[0]
            if not file:  # pytest's default junit family: classname is the dotted module path (and class)
                file = classname.replace(".", "/") + ".py"
            path = file if file.startswith("tests/") else "tests/" + file.split("tests/", 1)[-1]
            cls = classname.rsplit(".", 1)[-1]
            key = f"{path}::{cls}::{name}" if cls[:1].isupper() else f"{path}::{name}"
            outcome = "passed"
            if case.find("failure") is not None or case.find("error") is not None:
                outcome = "failed"
            elif case.find("skipped") is not None:
                outcome = "skipped"
            if order[outcome] >= order.get(results.get(key, "passed"), 0):
                results[key] = outcome
    return results


def _version_of(test: str, versions: dict[str, str]) -> str:
    name = test.lower()
    if "upstream" not in name:
        import torch

        return f"torch {torch.__version__.split('+')[0]}"
    text = (ROOT / test.split("::")[0]).read_text()
    used = [
        p
        for p in ("diffusers", "diffsynth", "transformers", "tokenizers", "peft")
        if f"import {p}" in text or f"from {p}" in text
    ]
    return ", ".join(f"{p} {versions[p]}" for p in used if p in versions) or "torch"


def _build_table(app, fromdocname: str) -> nodes.Node:
    claims = [c for doc in sorted(getattr(app.env, "infralens_ledger", {})) for c in app.env.infralens_ledger[doc]]
    results, versions = test_results(), upstream_versions()
    table = nodes.table(classes=["il-ledger"])
    group = nodes.tgroup(cols=5)
    table += group
    for width in (40, 16, 26, 10, 8):
        group += nodes.colspec(colwidth=width)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for title in ("Statement", "Page", "Test", "Checked against", "Result"):
        row += nodes.entry("", nodes.paragraph("", title))
    head += row
    body = nodes.tbody()
    group += body
    for claim in claims:
        row = nodes.row()
        first = nodes.paragraph("", "", nodes.target("", "", ids=[claim.anchor]), nodes.Text(claim.text))
        row += nodes.entry("", first)
        title = app.env.titles.get(claim.docname)
        page_ref = make_refnode(
            app.builder, fromdocname, claim.docname, "", nodes.Text(title.astext() if title else claim.docname)
        )
        row += nodes.entry("", nodes.paragraph("", "", page_ref))
        row += nodes.entry("", nodes.paragraph("", "", nodes.literal("", claim.test)))
        row += nodes.entry("", nodes.paragraph("", _version_of(claim.test, versions)))
        row += nodes.entry("", nodes.paragraph("", results.get(claim.test, "not run in this build")))
        body += row
    n_pass = sum(results.get(c.test) == "passed" for c in claims)
    summary = nodes.paragraph(
        "", f"{len(claims)} claims on {len({c.docname for c in claims})} page(s), tied to "
        f"{len({c.test for c in claims})} tests; {n_pass} of the claims' tests passed in this build's test reports."
    )  # fmt: skip
    container = nodes.container()
    container += summary
    container += table
    return container


def _skip(self, node):
    raise nodes.SkipNode


def _doctree_resolved(app, doctree, docname):
    for node in list(doctree.findall(LedgerNode)):
        node.replace_self(_build_table(app, docname))


def _missing_reference(app, env, node, contnode):
    if node.get("reftype") != "infralens-claim":
        return None
    if LEDGER_DOC not in env.all_docs:
        return contnode
    return make_refnode(app.builder, node["refdoc"], LEDGER_DOC, node["reftarget"], contnode)


def _purge(app, env, docname):
    getattr(env, "infralens_ledger", {}).pop(docname, None)


def _merge(app, env, docnames, other):
    env.infralens_ledger = {**getattr(env, "infralens_ledger", {}), **getattr(other, "infralens_ledger", {})}


def _outdated(app, env, added, changed, removed):
    return [LEDGER_DOC] if LEDGER_DOC in env.all_docs and (added or changed or removed) else []


def setup(app):
    app.add_role("checked", CheckedRole())
    app.add_role("upstream", UpstreamRole())
    app.add_role("given", GivenRole())
    app.add_node(LedgerNode, **{b: (_skip, None) for b in ("html", "latex", "epub", "text", "man", "texinfo")})
    app.add_directive("claims-ledger", LedgerDirective)
    app.connect("doctree-resolved", _doctree_resolved)
    app.connect("missing-reference", _missing_reference)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-get-outdated", _outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1", "env_version": 1}
