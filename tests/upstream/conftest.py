"""Record which upstream versions the cross-checks passed against.

After a fully green ``tox -e upstream`` run, the versions of diffusers and
diffsynth that were imported are written to ``docs/_data/upstream.json``; the
pages' version notes (``{{ diffusers_version }}``, ``{{ diffsynth_version }}``)
read that file, so a note names the version actually checked.
"""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "docs" / "_data" / "upstream.json"
PACKAGES = ("diffusers", "diffsynth")


def pytest_sessionfinish(session, exitstatus):
    if exitstatus != 0 or session.testscollected == 0 or session.config.option.keyword:
        return  # only a complete, green run may speak for the book
    data = json.loads(DATA.read_text()) if DATA.exists() else {}
    for package in PACKAGES:
        try:
            data[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass  # not installed in this run: keep what an earlier run verified
    DATA.write_text(json.dumps(data, indent=2) + "\n")
