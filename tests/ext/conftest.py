"""Throwaway Sphinx projects of these tests start with an empty claims backlog (the book's own is for the book)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "docs" / "_ext"))


@pytest.fixture(autouse=True)
def empty_backlog(tmp_path, monkeypatch):
    claims = pytest.importorskip("infralens_claims")
    monkeypatch.setattr(claims, "BACKLOG", tmp_path / "no-backlog.json")
