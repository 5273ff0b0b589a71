"""tools/mutate.py: the mutants it makes, how it applies them in place, what it counts, and its scope.

The tool's full run is ``tox -e mutation`` (slow); these checks are fast and run with the unit tests.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("mutate", ROOT / "tools" / "mutate.py")
mutate = importlib.util.module_from_spec(spec)
sys.modules["mutate"] = mutate
spec.loader.exec_module(mutate)

SOURCE = textwrap.dedent('''
    """A toy formula module."""

    import torch


    def schedule(n, beta_start=1e-4, *, clip=True, shift=-1):
        """Docstring numbers are not mutated: 3.0."""
        betas = torch.linspace(beta_start, 0.02, n)
        if n < 2:
            raise ValueError(f"n must be at least 2, e.g. n=1000; got {n}")
        total = 0
        total += n * shift
        return torch.add(betas, betas.flip(0), alpha=0.5), total, clip


    class Box:
        def area(self, w, h=2):
            return max(w, h) * torch.lerp(torch.zeros(1), torch.ones(1), 0.25).item()
''')


def keys(source: str = SOURCE) -> list[str]:
    return [m.key for m in mutate.mutants("toy.py", source)]


def test_operators_constants_call_arguments_and_defaults_are_mutated():
    found = keys()
    expected = [
        "schedule: default beta_start=0.0001 -> 0.0002",
        "schedule: default clip=True -> False",
        "schedule: default shift=-1 -> 0",
        "schedule: constant: torch.linspace(beta_start, 0.02, n)  ->  torch.linspace(beta_start, 0.04, n)",
        "schedule: compare: n < 2  ->  n <= 2",
        "schedule: operator: total += n * shift  ->  total -= n * shift",
        "schedule: operator: n * shift  ->  n / shift",
        "schedule: drop keyword: torch.add(betas, betas.flip(0), alpha=0.5)  ->  torch.add(betas, betas.flip(0))",
        "schedule: swap arguments: torch.add(betas, betas.flip(0), alpha=0.5)  ->  torch.add(betas.flip(0), betas, "
        "alpha=0.5)",
        "Box.area: default h=2 -> 3",
        "Box.area: swap arguments: torch.lerp(torch.zeros(1), torch.ones(1), 0.25)  ->  "
        "torch.lerp(torch.ones(1), torch.zeros(1), 0.25)",
    ]
    for key in expected:
        assert key in found, key
    # the message of the raise, the docstring, the symmetric max(w, h) and a constant argument give no mutants
    assert not [k for k in found if "1000" in k or "3.0" in k or "max(h, w)" in k or "linspace(0.02" in k]


def test_swap_is_only_made_where_the_arguments_do_not_commute():
    src = (
        "def f(a, b):\n    return torch.mul(a, b) + torch.add(a, b) + torch.maximum(a, b) + torch.sub(a, b)"
        " + torch.sub(a.t, a.t)\n"
    )
    swaps = [k for k in keys(src) if "swap" in k]
    assert swaps == ["f: swap arguments: torch.sub(a, b)  ->  torch.sub(b, a)"]  # not sub(a.t, a.t): the same code


def test_keys_are_unique_and_stable_when_lines_move():
    src = "def f(x):\n    return x + 1 + (x + 1)\n"
    moved = "\n\n# a comment\n" + src
    assert keys(src) == keys(moved)
    assert len(set(keys(src))) == len(keys(src))


def toy_module(tmp_path: Path, name: str) -> types.ModuleType:
    path = tmp_path / f"{name}.py"
    path.write_text(SOURCE)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("key", "check"),
    [
        # a body mutant: the function object keeps its identity, its code changes
        ("schedule: operator: n * shift  ->  n / shift", lambda mod, f: f(4)[1] == pytest.approx(-4.0)),
        # default-argument mutants: keyword-only, positional, and a method's
        ("schedule: default shift=-1 -> 0", lambda mod, f: f(4)[1] == 0),
        ("schedule: default clip=True -> False", lambda mod, f: f(4)[2] is False),
        ("schedule: default beta_start=0.0001 -> 0.0002", lambda mod, f: f(4)[0][0].item() == pytest.approx(0.0102)),
        ("Box.area: default h=2 -> 3", lambda mod, f: mod.Box().area(1) == pytest.approx(0.75)),
    ],
)
def test_a_mutant_is_patched_into_the_imported_module(tmp_path, key, check):
    module = toy_module(tmp_path, f"toy_{abs(hash(key))}")
    schedule = module.schedule  # held by a caller before the patch, as other modules hold imported names
    assert schedule(4)[1] == -4 and module.Box().area(1) == pytest.approx(0.5)
    m = next(m for m in mutate.mutants("toy.py", SOURCE) if m.key == key)
    source, default = mutate.mutated_source(m, SOURCE)
    mutate.patch(module.__name__, "toy.py", source, m.qualname, [m.default_arg, default] if m.default_arg else None)
    assert check(module, schedule)


def test_a_timeout_is_not_a_kill():
    made = mutate.mutants("toy.py", SOURCE)[:4]
    for m, outcome in zip(made, ("killed", "timeout", "survived", "equivalent"), strict=True):
        m.outcome = outcome
    row = mutate.summarise(made, ["toy.py"])["toy.py"]
    assert (row["killed"], row["timeout"], row["equivalent"]) == (1, 1, 1)
    assert row["score"] == pytest.approx(1 / 3)  # killed / (mutants - equivalent)
    assert [s["outcome"] for s in row["survivors"]] == ["timeout", "survived"]


def test_the_table_counts_time_and_names_what_was_not_measured(tmp_path):
    made = mutate.mutants("toy.py", SOURCE)[:3]
    for m, outcome, seconds in zip(made, ("killed", "survived", "skipped"), (2.0, 3.5, 0.0), strict=True):
        m.outcome, m.seconds = outcome, seconds
    table = tmp_path / "mutation.json"
    meta = {"commit": "abc", "finished": "2026-01-01T00:00:00+00:00", "command": "x", "wall_seconds": 9}
    assert mutate.report(made, ["toy.py"], meta, None, 0.9, table) == 1  # 1 of 2 run: below 90%
    data = json.loads(table.read_text())
    row = data["modules"]["toy.py"]
    assert (row["mutants"], row["killed"], row["skipped"], row["seconds"]) == (3, 1, 1, 5.5)
    assert row["score"] == pytest.approx(1 / 2)  # a mutant not run (budget spent) is not in the score
    assert data["not_measured"] == mutate.MODULES  # none of the formula modules was in this report


def test_merge_prefers_a_complete_run_and_applies_the_equivalents(tmp_path):
    def run(name, finished, outcomes):
        made = mutate.mutants("toy.py", SOURCE)[: len(outcomes)]
        for m, outcome in zip(made, outcomes, strict=True):
            m.outcome = outcome
        path = tmp_path / f"{name}.json"
        meta = {"commit": name, "finished": finished, "command": name, "wall_seconds": 1}
        mutate.report(made, ["toy.py"], meta, path, 0.0)
        return path, made

    old, made = run("old", "2026-01-01T00:00:00", ["killed", "survived", "killed"])
    new, _ = run("new", "2026-01-02T00:00:00", ["killed", "skipped", "skipped"])  # budget spent: partial
    reason = "cannot change behaviour"
    done, modules, meta = mutate.merge([old, new], {"toy.py": {made[1].key: reason}})
    assert modules == ["toy.py"] and [r["commit"] for r in meta["merged"]] == ["old"]
    assert [m.outcome for m in done] == ["killed", "equivalent", "killed"] and done[1].note == reason
    newer, _ = run("newer", "2026-01-03T00:00:00", ["killed", "killed", "survived"])  # complete and newer: wins
    done, _, meta = mutate.merge([old, new, newer], {})
    assert [m.outcome for m in done] == ["killed", "killed", "survived"]
    assert [r["commit"] for r in meta["merged"]] == ["newer"]


def test_units_are_selected_by_the_lines_they_ran():
    m = mutate.mutants("toy.py", SOURCE)[3]  # the linspace constant, line 9
    coverage = {
        "lines": {"slow": {"toy.py": [9]}, "fast": {"toy.py": [8, 9]}, "other": {"toy.py": [18]}},
        "durations": {"slow": 30.0, "fast": 1.0, "other": 0.1},
    }
    assert mutate.select_units(m, coverage, ["slow", "fast", "other"]) == ["fast", "slow"]


def test_every_module_is_mutated_or_left_out_with_a_reason():
    assert mutate.unclassified() == []
    assert all(reason.strip() for reason in mutate.LEFT_OUT.values())
    assert not set(mutate.MODULES) & set(mutate.LEFT_OUT)
    assert all((ROOT / m).is_file() for m in mutate.MODULES)


def test_equivalent_mutants_name_real_mutants_with_a_reason():
    recorded = mutate.load_equivalents()
    for module, entries in recorded.items():
        assert module in mutate.MODULES, module
        made = {m.key for m in mutate.mutants(module, (ROOT / module).read_text())}
        for key, reason in entries.items():
            assert key in made, f"{module}: {key} is not a mutant any more"
            assert reason.strip()


def test_the_static_map_finds_a_modules_tests_pages_and_starters():
    static = mutate.StaticMap(ROOT)
    units = static.candidates("src/infralens/diffusion/schedules.py", transitive=False)
    assert "tests/diffusion/test_schedules.py" in units
    assert "src/infralens/diffusion/schedules.py" in units  # its docstring doctests
    assert "docs/tracks/diffuser/labs/lab-01-forward-noise-process.md" in units
    assert "starter:code/diffuser/lab-01-forward-noise-process/forward_noise.py" in units
    ids = mutate.starter_nodeids(ROOT, "code/diffuser/lab-01-forward-noise-process/forward_noise.py")
    assert "tests/test_starters.py::test_forward_noise_trace" in ids


def test_merge_adds_a_report_to_a_table_file(tmp_path):
    a, b = mutate.MODULES[:2]
    row = dict.fromkeys(("survived", "timeout", "uncovered", "equivalent", "error", "skipped"), 0)
    row.update(mutants=4, killed=4, score=1.0, seconds=8.0)
    first = {"commit": "old", "finished": "2026-01-01T00:00:00+00:00", "command": "x", "wall_seconds": 9}
    table = tmp_path / "mutation.json"
    table.write_text(json.dumps({"meta": {"merged": [{**first, "modules": [a, b]}]}, "modules": {a: row, b: row}}))
    made = mutate.mutants(b, SOURCE)[:2]
    for m, outcome in zip(made, ("killed", "survived"), strict=True):
        m.outcome = outcome
    report = tmp_path / "new.json"
    second = {"commit": "new", "finished": "2026-01-02T00:00:00+00:00", "command": "y", "wall_seconds": 1}
    mutate.report(made, [b], second, report, 0.0)
    out = tmp_path / "out.json"
    assert mutate.main(["--merge", str(table), str(report), "--table", str(out), "--min-score", "0.9"]) == 1
    data = json.loads(out.read_text())
    assert data["modules"][a] == row  # a module only the table knows: its row as the table had it
    assert (data["modules"][b]["killed"], data["modules"][b]["survived"]) == (1, 1)  # the report's, newer
    assert [(r["commit"], r["modules"]) for r in data["meta"]["merged"]] == [("old", [a]), ("new", [b])]


def test_a_rerun_replaces_the_outcomes_of_the_mutants_it_ran_again(tmp_path):
    def run(name, finished, outcomes, rerun=None):
        made = mutate.mutants("toy.py", SOURCE)[: len(outcomes)]
        for m, outcome in zip(made, outcomes, strict=True):
            m.outcome = outcome
        path = tmp_path / f"{name}.json"
        meta = {"commit": name, "finished": finished, "command": name, "wall_seconds": 1, "rerun": rerun}
        mutate.report(made, ["toy.py"], meta, path, 0.0)
        return path

    first = run("first", "2026-01-01T00:00:00", ["killed", "survived", "skipped", "timeout"])
    again = run("again", "2026-01-02T00:00:00", ["skipped", "killed", "skipped", "survived"], rerun=str(first))
    done, _, meta = mutate.merge([first, again], {})
    assert [m.outcome for m in done] == ["killed", "killed", "skipped", "survived"]
    assert [(r["commit"], r["modules"]) for r in meta["merged"]] == [("first", ["toy.py"]), ("again", ["toy.py"])]


def test_a_test_reaches_the_library_through_its_own_helper_module():
    # tests/upstream/test_transformer_cache_upstream.py builds TinyLlama in ._tiny_decoder
    static = mutate.StaticMap(ROOT)
    units = static.candidates("src/infralens/transformer/model.py")
    assert "tests/upstream/test_transformer_cache_upstream.py" in units
