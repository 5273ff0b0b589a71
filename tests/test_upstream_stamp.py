"""The upstream version stamp is written only by a complete, unfiltered, green run with nothing skipped.

``tests/upstream/conftest.py`` decides; these call its decision with the state of
runs that must not write (and one that may), without running the cross-checks.
"""

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent / "upstream"
spec = importlib.util.spec_from_file_location("upstream_stamp", HERE / "conftest.py")
stamp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(stamp)

MODULES = {p.resolve() for p in HERE.glob("test_*.py")}


def session(args=("tests/upstream",), keyword="", markexpr="", deselected=0, modules=MODULES):
    config = SimpleNamespace(
        args=list(args),
        option=SimpleNamespace(keyword=keyword, markexpr=markexpr),
        stash={stamp._STATE: {"deselected": deselected, "modules": set(modules)}},
    )
    return SimpleNamespace(config=config)


@pytest.fixture
def installed(monkeypatch):
    monkeypatch.setattr(stamp, "_installed", lambda package: "1.0")
    monkeypatch.setattr(stamp, "_SKIPPED", [])


def test_a_complete_green_run_may_write(installed):
    assert stamp.why_not_complete(session(), 0) is None


@pytest.mark.parametrize(
    "kwargs, exitstatus, words",
    [
        ({}, 1, "exit status 1"),
        ({"args": ["tests/upstream/test_lora_upstream.py::test_x"]}, 0, "node id"),
        ({"keyword": "cfg"}, 0, "deselected"),
        ({"markexpr": "upstream"}, 0, "deselected"),
        ({"deselected": 3}, 0, "3 deselected"),
        ({"modules": set(list(MODULES)[1:])}, 0, "not every module ran"),
    ],
)
def test_a_narrowed_or_red_run_may_not(installed, kwargs, exitstatus, words):
    assert words in stamp.why_not_complete(session(**kwargs), exitstatus)


def test_a_skip_keeps_the_stamp(installed, monkeypatch):
    monkeypatch.setattr(stamp, "_SKIPPED", ["tests/upstream/test_guidance_upstream.py::test_lines"])
    assert "1 test(s) skipped" in stamp.why_not_complete(session(), 0)


def test_a_missing_package_keeps_the_stamp(monkeypatch):
    monkeypatch.setattr(stamp, "_SKIPPED", [])
    monkeypatch.setattr(stamp, "_installed", lambda package: None if package == "diffsynth" else "1.0")
    assert stamp.why_not_complete(session(), 0) == "not installed: diffsynth"
