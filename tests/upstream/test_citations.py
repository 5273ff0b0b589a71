"""Citation check: every ``{upstream}`` link of the book points at a line that still says what it cited.

A ``{upstream}`text <package/path.py:LINE#token>``` link names a line of an upstream
package at the version in ``docs/_data/upstream.json``. This reads that line from the
installed package (the version ``tox -e upstream`` pins) and requires the token on it,
so an upgrade that moves the code fails here instead of leaving a link to the wrong line.
It checks citations, not behaviour: what the cited code *does* is checked by the other
tests of this folder, by running it.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROLE = re.compile(r"\{upstream\}`([^`]+)`")
TARGET = re.compile(r"(?s)(?:.*?<)?(?P<package>[a-z_]+)/(?P<path>[\w./-]+\.py):(?P<line>\d+)(?:#(?P<token>[^>]+))?>?$")

pytestmark = pytest.mark.upstream


def citations() -> list[tuple[str, str, str, int, str | None]]:
    found = []
    for page in sorted([ROOT / "index.md", *(ROOT / "docs").rglob("*.md")]):
        if "docs/api" in str(page) or page.name == "authoring.md":  # authoring.md shows the syntax, cites nothing
            continue
        for text in ROLE.findall(page.read_text()):
            m = TARGET.fullmatch(text.strip())
            assert m, f"{page.relative_to(ROOT)}: malformed {{upstream}}`{text}`"
            found.append((str(page.relative_to(ROOT)), m["package"], m["path"], int(m["line"]), m["token"]))
    return found


def test_every_upstream_citation_names_a_line_that_holds_its_token():
    """Citation check (one test for all of them): the cited line of the installed package holds the token."""
    versions = json.loads((ROOT / "docs" / "_data" / "upstream.json").read_text())
    problems, cites = [], citations()
    assert cites, "the book cites upstream source"
    for page, package, path, line, token in cites:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            problems.append(f"{page}: {package} is not installed")
            continue
        installed = importlib.metadata.version(package).split("+")[0]  # torch 2.13.0+cpu is release 2.13.0
        if versions.get(package) != installed:
            problems.append(f"{page}: links say {package} {versions.get(package)}, installed is {installed}")
        file = Path(spec.submodule_search_locations[0]) / path
        if not file.is_file():
            problems.append(f"{page}: {package}/{path} does not exist in {package} {installed}")
            continue
        lines = file.read_text().splitlines()
        if line > len(lines):
            problems.append(f"{page}: {package}/{path} has {len(lines)} lines, cited line {line}")
        elif token and token.strip() not in lines[line - 1]:
            problems.append(f"{page}: {package}/{path}:{line} no longer holds {token!r}: {lines[line - 1].strip()!r}")
    assert not problems, "\n".join(problems)
