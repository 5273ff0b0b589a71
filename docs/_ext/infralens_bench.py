"""Sphinx extension: ``{bench-table}`` renders measured benchmark results from a data file.

``tox -e bench`` measures and writes ``_build/bench.json``; copying it to
``docs/_data/bench.json`` publishes a measurement (its machine and date are in
the file). The directive turns one part of it into a table, so the page shows
the numbers that were measured and never retyped ones::

    ```{bench-table} library float32
    ```

The table is marked as computed (class ``il-computed``) for the claims check.
"""

from __future__ import annotations

import json
from pathlib import Path

from docutils import nodes
from sphinx.util.docutils import SphinxDirective

DATA = Path("docs") / "_data" / "bench.json"


def _table(header: list[str], rows: list[list[str]]) -> nodes.table:
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
            entry += nodes.paragraph(text=cell)
            row += entry
        parent += row
    return table


class BenchTable(SphinxDirective):
    """``{bench-table} library <dtype>`` or ``{bench-table} book``."""

    required_arguments = 1
    optional_arguments = 1

    def run(self):
        path = Path(self.env.srcdir) / DATA
        if not path.exists():
            raise self.error(f"bench-table: {DATA} is missing; run tox -e bench and copy _build/bench.json there")
        self.env.note_dependency(str(path))
        data = json.loads(path.read_text())
        part = self.arguments[0]
        if part == "library":
            dtype = self.arguments[1]
            rows = [
                [name, f"{row['seconds'] * 1e3:.2f}", f"{row['vs_floor']:.2f}"]
                for name, row in data["library"][dtype].items()
                if isinstance(row, dict)
            ]
            table = _table(["function", "median ms", "x floor"], rows)
        elif part == "library-vs-diffusers":
            rows = [
                [dtype, f"{res['diffusers_add_noise_over_ours']:.2f}", f"{res['diffusers_scale_noise_over_ours']:.2f}"]
                for dtype, res in data["library"].items()
            ]
            table = _table(["dtype", "diffusers add_noise / ours", "diffusers scale_noise / flow_interpolate"], rows)
        elif part == "book":
            rows = [[k, f"{v:.2f}" if isinstance(v, float) else str(v)] for k, v in data["book"].items()]
            table = _table(["measurement", "seconds (or count)"], rows)
        elif part == "meta":
            return [nodes.paragraph(text=data.get("meta", ""), classes=["il-computed"])]
        else:
            raise self.error(f"bench-table: unknown part {part!r}; use library <dtype>, library-vs-diffusers, book")
        container = nodes.container(classes=["il-computed"])
        container += table
        return [container]


def setup(app):
    app.add_directive("bench-table", BenchTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}
