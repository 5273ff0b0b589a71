"""Record which upstream versions the cross-checks passed against.

After a complete, green ``tox -e upstream`` run, the versions of the packages in
``PACKAGES`` that were imported are written to ``docs/_data/upstream.json``; the
pages' version notes (``{{ diffusers_version }}``, ``{{ transformers_version }}``, ...)
read that file, so a note names the version actually checked.

Only a run that can speak for the whole book writes it: every test module of
``tests/upstream`` collected, nothing narrowed (no ``-k``, ``-m``,
``--deselect`` or ``file::test`` selection), nothing skipped (a test that skips
on another upstream version, or because a package is missing, did not check
it), every test passed (a strict ``xfail`` is a checked expectation and counts),
and every package installed. Any other run says, in one line at its end, why it
left the stamp alone.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "docs" / "_data" / "upstream.json"
PACKAGES = ("diffusers", "diffsynth", "transformers", "tokenizers", "peft", "torch")

_STATE = pytest.StashKey[dict]()


_SKIPPED: list[str] = []  # node ids of skipped tests (report hooks get no config)


def pytest_configure(config):
    config.stash[_STATE] = {"deselected": 0, "modules": set()}
    _SKIPPED.clear()


def pytest_deselected(items):
    if items:
        items[0].config.stash[_STATE]["deselected"] += len(items)


def pytest_collection_finish(session):
    state = session.config.stash[_STATE]
    state["modules"] = {Path(item.fspath).resolve() for item in session.items}


def pytest_runtest_logreport(report):
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report.nodeid)


def why_not_complete(session, exitstatus) -> str | None:
    """The reason this run may not write the stamp, or None when it may."""
    config = session.config
    state = config.stash[_STATE]
    if exitstatus != 0:
        return f"pytest exit status {int(exitstatus)}"
    if any("::" in arg for arg in config.args):
        return "tests were selected by node id"
    if config.option.keyword or config.option.markexpr or state["deselected"]:
        return f"tests were deselected (-k/-m/--deselect: {state['deselected']} deselected)"
    missing = sorted(p.name for p in HERE.glob("test_*.py") if p.resolve() not in state["modules"])
    if missing:
        return f"not every module ran (missing {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''})"
    if _SKIPPED:
        return f"{len(_SKIPPED)} test(s) skipped, e.g. {_SKIPPED[0]}"
    absent = [p for p in PACKAGES if not _installed(p)]
    if absent:
        return f"not installed: {', '.join(absent)}"
    return None


def _installed(package: str) -> str | None:
    try:
        # a local build tag ("2.13.0+cpu") is not part of the release the links point at
        return importlib.metadata.version(package).split("+")[0]
    except importlib.metadata.PackageNotFoundError:
        return None


def pytest_sessionfinish(session, exitstatus):
    reason = why_not_complete(session, exitstatus)
    session.config.stash[_STATE]["reason"] = reason
    if reason is not None:
        return
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    new = {**data, **{p: _installed(p) for p in PACKAGES}}
    if new != data:
        DATA.write_text(json.dumps(new, indent=2) + "\n")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    reason = config.stash[_STATE].get("reason", "the run did not finish")
    if reason is None:
        versions = ", ".join(f"{p} {_installed(p)}" for p in PACKAGES)
        terminalreporter.write_line(f"upstream stamp: {DATA.name} names {versions} (complete run, nothing skipped)")
    else:
        terminalreporter.write_line(f"upstream stamp: {DATA.name} left alone: {reason}")
