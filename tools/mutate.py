"""Mutation testing for the formula modules: do the tests notice a wrong formula?

A small purpose-built mutator (no third-party tool): it parses each module with
``ast``, makes one change at a time inside function bodies (an arithmetic or
comparison operator swapped, a numeric constant changed, a unary minus
dropped), writes the mutant into a scratch copy of the repository, and runs the
tests that cover formulas there: ``tests/diffusion``, the docstring doctests of
``src/infralens/diffusion`` and the doctests of every page. A mutant is
*killed* when that run fails. The score is killed / total; survivors are listed
with their line so they can be killed by a better test or explained.

Usage: ``python tools/mutate.py [--jobs N] [--json out.json] [module ...]``
(run by ``tox -e mutation``).
"""

from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    "src/infralens/diffusion/schedules.py",
    "src/infralens/diffusion/forward.py",
    "src/infralens/diffusion/flow.py",
    "src/infralens/diffusion/guidance.py",
    "src/infralens/diffusion/latents.py",
    "src/infralens/diffusion/flow_schedules.py",
    "src/infralens/diffusion/_mix.py",
]
TESTS = ["tests/diffusion", "src/infralens/diffusion", "docs", "index.md"]

SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}


@dataclass
class Mutant:
    module: str
    line: int
    description: str
    index: int
    killed: bool | None = None
    seconds: float = 0.0


def _targets(tree: ast.Module):
    """Nodes that may be mutated: inside function bodies, outside docstrings."""
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef):
            continue
        body = func.body[1:] if ast.get_docstring(func) is not None else func.body
        for stmt in body:
            yield from ast.walk(stmt)


def _describe(node: ast.AST) -> list[str]:
    """The mutations possible at ``node``, as descriptions (empty if none)."""
    if isinstance(node, ast.BinOp) and type(node.op) in SWAPS:
        return [f"{type(node.op).__name__} -> {SWAPS[type(node.op)].__name__}"]
    if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in SWAPS:
        return [f"{type(node.ops[0]).__name__} -> {SWAPS[type(node.ops[0])].__name__}"]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return ["drop unary minus"]
    if isinstance(node, ast.Constant) and type(node.value) in (int, float) and not isinstance(node.value, bool):
        return [f"{node.value!r} -> {_changed(node.value)!r}"]
    return []


def _changed(value: int | float) -> int | float:
    if isinstance(value, int):
        return value + 1
    return 1.0 if value == 0 else value * 2


def _apply(node: ast.AST) -> None:
    if isinstance(node, ast.BinOp):
        node.op = SWAPS[type(node.op)]()
    elif isinstance(node, ast.Compare):
        node.ops = [SWAPS[type(node.ops[0])]()]
    elif isinstance(node, ast.UnaryOp):
        node.op = ast.UAdd()
    elif isinstance(node, ast.Constant):
        node.value = _changed(node.value)


def mutants(module: str, tree_root: Path) -> list[Mutant]:
    tree = ast.parse((tree_root / module).read_text())
    found = []
    for i, node in enumerate(_targets(tree)):
        for desc in _describe(node):
            found.append(Mutant(module, node.lineno, desc, i))
    return found


def mutated_source(m: Mutant, original: str) -> str:
    tree = ast.parse(original)
    node = list(_targets(tree))[m.index]
    _apply(node)
    return ast.unparse(ast.fix_missing_locations(copy.deepcopy(tree)))


def run_tests(workdir: Path, timeout: float = 300) -> bool:
    """True if the tests pass (the mutant survives)."""
    env = {**os.environ, "PYTHONPATH": str(workdir / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *TESTS]
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False  # a mutant that hangs the tests is caught
    return proc.returncode == 0


def worker_copy() -> Path:
    """A scratch copy of the committed tree (git archive HEAD), so edits in progress do not count."""
    tmp = Path(tempfile.mkdtemp(prefix="infralens-mutate-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", default=MODULES)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 below this share of killed mutants")
    args = parser.parse_args(argv)

    copies = [worker_copy() for _ in range(args.jobs)]
    baseline = run_tests(copies[0])
    if not baseline:
        print("the unmutated tests fail: fix them first", file=sys.stderr)
        return 2
    # mutants come from the committed tree the workers test, never from edits in progress
    todo = [m for module in args.modules for m in mutants(module, copies[0])]
    print(f"{len(todo)} mutants in {len(args.modules)} modules, {args.jobs} workers")
    free = list(copies)

    def run(m: Mutant) -> Mutant:
        workdir = free.pop()
        target = workdir / m.module
        original = target.read_text()
        try:
            target.write_text(mutated_source(m, original))
            start = time.perf_counter()
            m.killed = not run_tests(workdir)
            m.seconds = time.perf_counter() - start
        finally:
            target.write_text(original)
            free.append(workdir)
        print(f"  {'killed ' if m.killed else 'SURVIVED'} {m.module}:{m.line} {m.description}", flush=True)
        return m

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        done = list(pool.map(run, todo))
    for workdir in copies:
        shutil.rmtree(workdir, ignore_errors=True)

    killed = sum(m.killed for m in done)
    score = killed / len(done) if done else 1.0
    print(f"\nmutation score: {killed}/{len(done)} killed = {score:.1%}")
    survivors = [m for m in done if not m.killed]
    for m in survivors:
        print(f"  survivor: {m.module}:{m.line} {m.description}")
    if args.json:
        args.json.write_text(json.dumps({"score": score, "mutants": [asdict(m) for m in done]}, indent=2))
    return 1 if score < args.min_score else 0


if __name__ == "__main__":
    sys.exit(main())
