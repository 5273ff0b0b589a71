"""Sphinx extension: ``{bench-table}`` renders measured results from ``docs/_data/bench.json``.

``tox -e bench`` measures and writes ``_build/bench.json``; copying it to
``docs/_data/bench.json`` publishes a measurement. The file says where it was
measured (``measured``: commit, date, machine, load, and the book's size then:
labs, pages, starters), written by ``tools/bench.py``, never by hand. The
directive turns one part of it into a table, so the page shows the numbers that
were measured and never retyped ones::

    ```{bench-table} library float32
    ```

Parts: ``measured`` (where and when, and whether this book is newer), ``library
<dtype>``, ``library-vs-diffusers``, ``book``, ``ci`` (the timing table of one
``.ci/run``), ``pages`` and ``starters`` (the measured marginal costs), ``spawn``
(a two-process gloo launch), ``model`` (CI's projected run as the book grows).

Stale data is shown as such, not hidden: when the data was measured at another
commit, the ``measured`` part says so plainly, with the labs and pages then and
now. The build fails (a warning under ``-W``) only when the data names a page or
a module that no longer exists: its numbers would describe something the book no
longer has.

Every table is marked as computed (class ``il-computed``) for the claims check.

With ``INFRALENS_BENCH_TIMINGS=<file.json>`` set, the extension also records how
long each page took to read and to write (for the doctest builder: to test), per
builder, and adds them to that file at the end of the build; ``tools/bench.py``
uses it for the marginal cost of a page.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import time
from pathlib import Path

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

DATA = Path("docs") / "_data" / "bench.json"
TIMINGS_VAR = "INFRALENS_BENCH_TIMINGS"


def _table(header: list[str], rows: list[list]) -> nodes.container:
    table = nodes.table(classes=["il-computed"])
    group = nodes.tgroup(cols=len(header))
    table += group
    group += [nodes.colspec(colwidth=1) for _ in header]
    head, body = nodes.thead(), nodes.tbody()
    group += [head, body]
    for cells, parent in [(header, head)] + [(r, body) for r in rows]:
        row = nodes.row()
        for cell in cells:
            entry = nodes.entry()
            entry += cell if isinstance(cell, nodes.Node) else nodes.paragraph(text=cell)
            row += entry
        parent += row
    container = nodes.container(classes=["il-computed"])
    container += table
    return container


def _git(srcdir: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(srcdir), *args], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def book_size(srcdir: Path) -> dict[str, int]:
    """Labs (lab pages), pages (MyST sources of the book) and starters of the tree at ``srcdir``."""
    docs = srcdir / "docs"
    pages = [p for p in docs.rglob("*.md") if not {"_ext", "_data", "api"} & set(p.relative_to(docs).parts)]
    return {
        "labs": len(list(docs.glob("tracks/*/labs/lab-*.md"))),
        "pages": len(pages) + 1,  # and the home page, index.md
        "starters": len(list((srcdir / "code").glob("*/lab-*/*.py"))),
    }


PARTS = {
    "library": "the library's hot functions",
    "book": "the authors' build loop",
    "growth": "cost per page, starter and launch",
    "ci": "the CI run",
}


def staleness(record: dict, srcdir: Path, head: str | None) -> str:
    """Plainly: measured on the commit this book was built from, on an older book, or cannot tell."""
    then = {k: record[k] for k in ("labs", "pages", "starters")}
    now = book_size(srcdir)
    if head is None:
        verdict = "cannot tell (this copy of the book has no git history)"
    elif head.startswith(record["commit"]):
        verdict = "this book's commit"
    else:
        behind = _git(srcdir, "rev-list", "--count", f"{record['commit']}..HEAD")
        verdict = f"an older book, {behind} commits before this one" if behind else "another commit"
    if then != now:
        verdict += "; the book has " + ", ".join(f"{now[k] - then[k]:+d} {k}" for k in now if now[k] != then[k])
        verdict += " since"
    return verdict


def missing_names(data: dict, found_docs: set[str]) -> list[str]:
    """Pages and modules the data names that this book no longer has."""
    missing = []
    for part in ("pages",):
        for docname in data.get("growth", {}).get(part, {}):
            if docname not in found_docs:
                missing.append(f"page {docname}")
    for dotted in data.get("modules", []):
        module, _, name = dotted.rpartition(".")
        try:
            if not hasattr(importlib.import_module(module), name):
                missing.append(f"module {dotted}")
        except ImportError:
            missing.append(f"module {dotted}")
    return missing


def _seconds(value: float) -> str:
    return f"{value:.1f}" if value >= 1 else f"{value:.2f}"


class BenchTable(SphinxDirective):
    """``{bench-table} <part> [dtype]``; see the module docstring for the parts."""

    required_arguments = 1
    optional_arguments = 1

    def run(self):
        path = Path(self.env.srcdir) / DATA
        if not path.exists():
            raise self.error(f"bench-table: {DATA} is missing; run tox -e bench and copy _build/bench.json there")
        self.env.note_dependency(str(path))
        data = json.loads(path.read_text())
        if not isinstance(data.get("measured"), dict) or not data["measured"]:
            raise self.error(f"bench-table: {DATA} has no 'measured' records; tools/bench.py writes them")
        missing = missing_names(data, set(self.env.found_docs))
        if missing:
            raise self.error(
                f"bench-table: {DATA} names what the book no longer has ({', '.join(missing)}); "
                "measure again (tox -e bench) and copy _build/bench.json there"
            )
        part = self.arguments[0]
        method = getattr(self, "_" + part.replace("-", "_"), None)
        if method is None:
            raise self.error(
                f"bench-table: unknown part {part!r}; use measured, library <dtype>, library-vs-diffusers, "
                "book, ci, pages, starters, spawn or model"
            )
        return method(data)

    def _measured(self, data):
        srcdir = Path(self.env.srcdir)
        head = _git(srcdir, "rev-parse", "HEAD")
        rows = []
        for part, record in data["measured"].items():
            size = ", ".join(f"{record[k]} {k}" for k in ("labs", "pages", "starters"))
            rows.append(
                [
                    PARTS.get(part, part),
                    f"{record['commit'][:10]} ({record['subject']})",
                    record["date"],
                    "not recorded" if record["load"] is None else f"{record['load']:.1f} on {record['cores']} cores",
                    size,
                    staleness(record, srcdir, head),
                ]
            )
        for part in PARTS:
            if part in data and part not in data["measured"]:
                rows.append(
                    [PARTS[part], "not recorded", "", "", "", "cannot tell (measured before records were kept)"]
                )
        stale = [r for r in rows if not r[-1].startswith("this book")]
        note = (
            "Every figure below was measured on the commit this book was built from."
            if not stale
            else "Some figures below were measured on an older book, or this copy cannot tell: "
            "read them as that book's, as the last column says."
        )
        header = ["part", "measured at commit", "date", "load average then", "the book then", "measured on"]
        machine = data["measured"][next(iter(data["measured"]))]
        env = f"Machine: {machine['machine']}, Python {machine['python']}, torch {machine['torch']}."
        return [nodes.paragraph(text=f"{note} {env}", classes=["il-computed"]), _table(header, rows)]

    def _library(self, data):
        if len(self.arguments) < 2:
            raise self.error("bench-table: library needs a dtype, e.g. library float32")
        rows = [
            [name, f"{row['seconds'] * 1e3:.2f}", f"{row['vs_floor']:.2f}"]
            for name, row in data["library"][self.arguments[1]].items()
            if isinstance(row, dict)
        ]
        return [_table(["function", "median ms", "x floor"], rows)]

    def _library_vs_diffusers(self, data):
        rows = [
            [dtype, f"{res['diffusers_add_noise_over_ours']:.2f}", f"{res['diffusers_scale_noise_over_ours']:.2f}"]
            for dtype, res in data["library"].items()
        ]
        return [_table(["dtype", "diffusers add_noise / ours", "diffusers scale_noise / flow_interpolate"], rows)]

    def _book(self, data):
        rows = [[k, f"{v:.2f}" if isinstance(v, float) else str(v)] for k, v in data["book"].items()]
        return [_table(["measurement", "seconds (or count)"], rows)]

    def _ci(self, data):
        ci = data["ci"]
        rows = [
            [
                s["step"],
                s["lane"],
                _seconds(s["seconds"]),
                f"{s['seconds'] / ci['work']:.1%}",
                f"{s['cpu']:.0f}" if "cpu" in s else "",
                s.get("split", ""),
                s["status"],
            ]
            for s in ci["steps"]
        ]
        cpu = sum(s.get("cpu", 0.0) for s in ci["steps"])
        rows.append(["run, wall clock", "", _seconds(ci["wall"]), "", f"{cpu:.0f}", f"work {ci['work']:.0f} s", ""])
        header = ["step", "lane", "seconds", "share of the work", "CPU seconds", "tox: setup + commands", "status"]
        return [_table(header, rows)]

    def _pages(self, data):
        growth = data["growth"]
        rows = [
            [name, *(_seconds(v) for v in row.values())]
            for name, row in growth["per_lab_page"].items()
            if isinstance(row, dict)
        ]
        header = ["per lab page, by builder", *next(iter(growth["per_lab_page"].values())).keys()]
        return [_table(header, rows)]

    def _starters(self, data):
        s = data["growth"]["starters"]
        rows = [[k, _seconds(v) if isinstance(v, float) else str(v)] for k, v in s["summary"].items()]
        return [_table(["starters", "seconds (or count)"], rows)]

    def _spawn(self, data):
        s = data["growth"]["spawn"]
        rows = [[k, _seconds(v) if isinstance(v, float) else str(v)] for k, v in s.items() if not isinstance(v, list)]
        return [_table(["two-process gloo launch", "seconds (or count)"], rows)]

    def _model(self, data):
        model = data["model"]
        rows = [
            [step, _seconds(row["now"]), _seconds(row["per_lab"]), _seconds(row["projected"])]
            for step, row in model["steps"].items()
        ]
        wall = model["wall"]
        rows.append(["run, wall clock (model)", _seconds(wall["now"]), "", _seconds(wall["projected"])])
        rows.append(["run, wall clock (measured)", _seconds(wall["measured"]), "", ""])
        if model.get("idle"):
            idle = model["idle"]
            rows.append(
                ["run on an idle machine (lanes' CPU seconds)", _seconds(idle["now"]), "", _seconds(idle["projected"])]
            )
        labs = model["labs"]
        table = _table(["step", f"seconds at {labs['now']} labs", "per lab", f"at {labs['projected']} labs"], rows)
        launches = sum(model["launches_per_distributed_lab"].values())
        marginal = [
            ["one lab page, in every book step", _seconds(model["per_lab_page"])],
            ["one lab's tests and starter (py, upstream)", _seconds(model["per_lab_tests"])],
            ["one starter (median run)", _seconds(model["per_starter"])],
            [f"one distributed lab's {launches} two-process launches", _seconds(launches * model["launch"])],
            ["distributed labs in the projection", str(labs["distributed"])],
        ]
        return [table, _table(["marginal cost", "seconds (or count)"], marginal)]


# --- per-page timings for tools/bench.py ------------------------------------------------------


MUTATION = Path("docs") / "_data" / "mutation.json"


def mutation_rows(data: dict, srcdir: Path, head: str | None) -> dict:
    """The runs, the per-module rows, the modules the data names that are gone, and those not measured."""
    runs = []
    for run in data["meta"].get("merged", [data["meta"]]):
        commit = run["commit"]
        if head is None:
            when = "cannot tell (no git history)"
        elif head.startswith(commit):
            when = "this book's commit"
        else:
            behind = _git(srcdir, "rev-list", "--count", f"{commit}..HEAD")
            when = f"{behind} commits before this book" if behind else "another commit"
        runs.append([commit[:10], run["finished"], when, str(run["wall_seconds"]), run["command"]])
    counts = ("mutants", "killed", "survived", "timeout", "uncovered", "equivalent", "skipped")
    rows = []
    for module, r in data["modules"].items():
        score = "-" if r["score"] is None else f"{r['score']:.1%}"
        rows.append(
            [module.removeprefix("src/infralens/"), *(str(r[k]) for k in counts), score, f"{r.get('seconds', 0):.0f}"]
        )
    return {
        "runs": runs,
        "rows": rows,
        "gone": [m for m in data["modules"] if not (srcdir / m).exists()],
        "not_measured": [m.removeprefix("src/infralens/") for m in data.get("not_measured", [])],
    }


class MutationTable(SphinxDirective):
    """``{mutation-table}``: the per-module mutation scores ``tools/mutate.py --table`` wrote, with their runs.

    Score = killed / (mutants - equivalent - not run); a timeout is not a kill. The build fails
    only when the data names a module that no longer exists.
    """

    def run(self):
        path = Path(self.env.srcdir) / MUTATION
        if not path.exists():
            raise self.error(f"mutation-table: {MUTATION} is missing; run tools/mutate.py with --table {MUTATION}")
        self.env.note_dependency(str(path))
        srcdir = Path(self.env.srcdir)
        found = mutation_rows(json.loads(path.read_text()), srcdir, _git(srcdir, "rev-parse", "HEAD"))
        if found["gone"]:
            raise self.error(
                f"mutation-table: {MUTATION} names modules that no longer exist: {', '.join(found['gone'])}"
            )
        header = ["module", "mutants", "killed", "survived", "timeouts", "uncovered", "equivalent", "not run"]
        out = [
            _table(
                ["commit measured", "finished (UTC)", "measured on", "wall seconds", "command"],
                [[*r[:-1], nodes.paragraph("", "", nodes.literal(text=r[-1]))] for r in found["runs"]],
            ),
            _table([*header, "score", "seconds"], found["rows"]),
        ]
        if found["not_measured"]:
            text = f"Not measured in these runs: {', '.join(found['not_measured'])}."
            out.append(nodes.paragraph(text=text, classes=["il-computed"]))
        return out


def _timed(record: dict, key: str, fn):
    """Wrap a bound method whose first argument is the docname; add its seconds to ``record[key]``."""

    def wrapper(docname, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(docname, *args, **kwargs)
        finally:
            record[key][docname] = record[key].get(docname, 0.0) + time.perf_counter() - start

    return wrapper


def _timings_init(app) -> None:
    if not os.environ.get(TIMINGS_VAR):
        return
    record = app.infralens_timings = {"read": {}, "write": {}, "started": {}}
    builder = app.builder
    if builder.name == "doctest":
        builder.test_doc = _timed(record, "write", builder.test_doc)
    else:
        env_resolve = builder.env.get_and_resolve_doctree
        builder.env.get_and_resolve_doctree = _timed(record, "write", env_resolve)
        builder.write_doc = _timed(record, "write", builder.write_doc)
    app.connect("source-read", lambda app, docname, source: record["started"].__setitem__(docname, time.perf_counter()))
    app.connect("doctree-read", _doctree_read)
    app.infralens_timings_start = time.perf_counter()


def _doctree_read(app, doctree) -> None:
    record = app.infralens_timings
    docname = app.env.docname
    if docname in record["started"]:
        record["read"][docname] = time.perf_counter() - record["started"].pop(docname)


def _timings_done(app, exc) -> None:
    record = getattr(app, "infralens_timings", None)
    if exc is not None or record is None:
        return
    path = Path(os.environ[TIMINGS_VAR])
    data = json.loads(path.read_text()) if path.exists() else {}
    data[app.builder.name] = {
        "read": record["read"],
        "write": record["write"],
        "total": time.perf_counter() - app.infralens_timings_start,
    }
    path.write_text(json.dumps(data, indent=1))


def setup(app):
    app.add_directive("bench-table", BenchTable)
    app.add_directive("mutation-table", MutationTable)
    app.connect("builder-inited", _timings_init)
    app.connect("build-finished", _timings_done)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "2"}
