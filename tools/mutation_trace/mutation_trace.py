"""pytest plugin of ``tools/mutate.py``'s traced baseline run: units, their durations and their failures.

Loaded with ``-p mutation_trace`` (the tracer itself is :mod:`mutation_tracer`).
At the end of the session ``<dir>/units.json`` holds the seconds of every test
(setup, call and teardown) and the ids of the tests and files that failed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from mutation_tracer import ENV, tracer, unit_of

DURATIONS: dict[str, float] = {}
FAILED: set[str] = set()


def _enter(unit: str) -> None:
    t = tracer()
    if t is not None:
        (t.out / "unit").write_text(unit)
        t.set_unit(unit)


def pytest_configure(config):
    tracer()


def pytest_collectstart(collector):
    if collector.nodeid and "::" not in collector.nodeid and Path(collector.nodeid).suffix:
        _enter(collector.nodeid)  # what a test file runs while it is collected


def pytest_runtest_setup(item):
    _enter(unit_of(item.nodeid))


def pytest_runtest_logreport(report):
    DURATIONS[report.nodeid] = DURATIONS.get(report.nodeid, 0.0) + report.duration
    if report.failed:
        FAILED.add(report.nodeid)


def pytest_collectreport(report):
    if report.failed:
        FAILED.add(report.nodeid or "?")


def pytest_sessionfinish(session, exitstatus):
    out = os.environ.get(ENV)
    if out:
        Path(out, "units.json").write_text(json.dumps({"durations": DURATIONS, "failed": sorted(FAILED)}))
