"""The performance page's data: stale data is said to be stale; only data naming what is gone fails the build."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

bench = pytest.importorskip("infralens_bench")

ROOT = Path(__file__).resolve().parents[2]


def record(**changes):
    size = bench.book_size(ROOT)
    return {"commit": "0" * 40, "subject": "s", "date": "d", "load": 1.0, "cores": 2, **size, **changes}


def test_missing_pages_and_modules_are_named():
    data = {
        "growth": {"pages": {"index": {}, "docs/tracks/gone/labs/lab-01-x": {}}},
        "modules": ["infralens.diffusion.add_noise", "infralens.diffusion.no_such_fn", "infralens.no_such_area.f"],
    }
    missing = bench.missing_names(data, {"index"})
    assert missing == [
        "page docs/tracks/gone/labs/lab-01-x",
        "module infralens.diffusion.no_such_fn",
        "module infralens.no_such_area.f",
    ]


def test_data_of_this_book_names_nothing_missing():
    assert (
        bench.missing_names(
            {"growth": {"pages": {"index": {}}}, "modules": ["infralens.diffusion.add_noise"]}, {"index"}
        )
        == []
    )


def test_staleness_says_which_book():
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        pytest.skip("no git history here")
    assert bench.staleness(record(commit=head), ROOT, head) == "this book's commit"
    older = bench.staleness(record(commit=head), ROOT, "f" * 40)
    assert older.startswith(("an older book", "another commit"))
    grown = bench.staleness(record(commit=head, labs=bench.book_size(ROOT)["labs"] - 3), ROOT, head)
    assert grown == "this book's commit; the book has +3 labs since"
    assert bench.staleness(record(), ROOT, None).startswith("cannot tell")


def test_mutation_table_rows_runs_and_gone_modules():
    row = {"mutants": 4, "killed": 2, "survived": 1, "timeout": 0, "uncovered": 0, "equivalent": 0, "skipped": 1}
    data = {
        "meta": {"merged": [{"commit": "0" * 40, "finished": "f", "wall_seconds": 5, "command": "c"}]},
        "modules": {
            "src/infralens/diffusion/flow.py": {**row, "score": 2 / 3, "seconds": 12.4},
            "src/infralens/gone.py": {**row, "score": None},
        },
        "not_measured": ["src/infralens/core/mix.py"],
    }
    found = bench.mutation_rows(data, ROOT, None)
    assert found["rows"][0] == ["diffusion/flow.py", "4", "2", "1", "0", "0", "0", "1", "66.7%", "12"]
    assert found["rows"][1][-2:] == ["-", "0"]
    assert found["gone"] == ["src/infralens/gone.py"]
    assert found["not_measured"] == ["core/mix.py"]
    assert found["runs"] == [["0000000000", "f", "cannot tell (no git history)", "5", "c"]]
