"""Mutation testing of the formula modules: do the tests notice a wrong formula?

A purpose-built mutator (no third-party tool). It parses each module of
:data:`MODULES` with ``ast`` and makes one change at a time inside function
bodies and signatures:

* an arithmetic operator (also ``+=``), a comparison or a unary minus;
* a numeric constant (``int + 1``, ``float * 2``, ``0.0 -> 1.0``);
* a call argument: a keyword dropped (``alpha=b``), a boolean keyword flipped
  (``keepdim=True``), a numeric keyword negated (``alpha=-b``), the first two
  positional arguments swapped (``torch.lerp(y, x, w)``) unless the callee is
  symmetric or the two are the same expression;
* a default argument: numeric defaults changed (``beta_end=0.02 -> 0.04``),
  boolean defaults flipped.

Error messages are not mutated (``raise``, f-strings, ``example=`` / ``why=``
keywords). Each mutant is run against the tests that execute the mutated line:
a coverage map records, once per run, which *unit* (a test file, a page's
doctests, a module's docstring doctests, one starter with the checks of its
output) runs which line. Units come from the imports (a static map: a unit is a
candidate for a module when what it imports reaches the module), the map then
keeps the units that really executed the line. A mutant is *killed* when one of
its units fails, a *timeout* when they run past the time limit (a separate
outcome, not a kill), *uncovered* when no unit executes its line, and
*equivalent* when ``tools/mutation_equivalents.toml`` records why it cannot
change behaviour. Score per module: killed / (mutants - equivalent).

Speed: every worker is a fork server with torch, pytest and the library imported
once; a mutant is a forked child that patches the mutated function's code (or
defaults) in place, writes the mutant into the worker's scratch copy of the
committed tree (for subprocesses: starters, ranks) and runs pytest on its units
with ``-x``.

Usage::

    python tools/mutate.py [module ...]                 # full run (tox -e mutation)
    python tools/mutate.py --changed-since REV --sample 12 --budget 120   # CI
    python tools/mutate.py --list src/infralens/core/mix.py              # the mutants, not run
    python tools/mutate.py --merge a.json b.json --json all.json         # one report from several runs
    python tools/mutate.py --merge a.json b.json --table docs/_data/mutation.json   # the table docs/authoring.md shows
    python tools/mutate.py --merge docs/_data/mutation.json new.json --table docs/_data/mutation.json  # add to it
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import datetime
import hashlib
import importlib.util
import json
import os
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRACE_DIR = Path(__file__).resolve().parent / "mutation_trace"
EQUIVALENTS = Path(__file__).resolve().parent / "mutation_equivalents.toml"

# --- scope: every module of src/infralens is mutated or left out with a reason ---------------------

MODULES = [
    # diffusion: the formulas of both diffusion tracks
    "src/infralens/diffusion/schedules.py",
    "src/infralens/diffusion/forward.py",
    "src/infralens/diffusion/sampling.py",
    "src/infralens/diffusion/timesteps.py",
    "src/infralens/diffusion/flow.py",
    "src/infralens/diffusion/guidance.py",
    "src/infralens/diffusion/latents.py",
    "src/infralens/diffusion/latent_scaling.py",
    "src/infralens/diffusion/multistep.py",
    "src/infralens/diffusion/experts.py",
    # core: two-term sums and parameter counts every area builds on
    "src/infralens/core/mix.py",
    "src/infralens/core/params.py",
    # attention: exact and online softmax
    "src/infralens/attention/softmax.py",
    "src/infralens/attention/sliced.py",
    # calculators
    "src/infralens/calculators/attention.py",
    "src/infralens/calculators/cfg.py",
    "src/infralens/calculators/kv_cache.py",
    "src/infralens/calculators/tokens.py",
    "src/infralens/calculators/weights.py",
    "src/infralens/calculators/flops.py",
    # memory
    "src/infralens/memory/param_counts.py",
    "src/infralens/memory/offload.py",
    "src/infralens/memory/passes.py",
    "src/infralens/memory/tiling.py",
    "src/infralens/memory/casting.py",
    "src/infralens/memory/group_offload.py",
    # adapters
    "src/infralens/adapters/lora.py",
    "src/infralens/adapters/multi_control.py",
    "src/infralens/adapters/vace.py",
    # distributed
    "src/infralens/distributed/collectives.py",
    "src/infralens/distributed/zero.py",
    "src/infralens/distributed/pipeline.py",
    "src/infralens/distributed/experts.py",
    "src/infralens/distributed/sequence_bytes.py",
    "src/infralens/distributed/sequence_shards.py",
    "src/infralens/distributed/ring.py",
    "src/infralens/distributed/collective_cost.py",
    "src/infralens/distributed/alpha_beta_fit.py",
    "src/infralens/distributed/links.py",
    "src/infralens/distributed/topology.py",
    "src/infralens/distributed/plan.py",
    "src/infralens/distributed/plan_costs.py",
    "src/infralens/distributed/device_mesh_layout.py",
    "src/infralens/distributed/routing.py",
    "src/infralens/distributed/expert_dispatch.py",
    "src/infralens/distributed/ddp_buckets.py",
    # transformer
    "src/infralens/transformer/rope.py",
    "src/infralens/transformer/flops.py",
    "src/infralens/transformer/embedding.py",
    "src/infralens/transformer/masks.py",
    "src/infralens/transformer/multi_head.py",
    "src/infralens/transformer/params.py",
    "src/infralens/transformer/model.py",
    "src/infralens/transformer/kv_cache.py",
    "src/infralens/transformer/paged_kv.py",
    "src/infralens/transformer/decode.py",
    "src/infralens/transformer/loss.py",
    "src/infralens/transformer/accumulation.py",
    "src/infralens/transformer/quantization.py",
    # stand-in networks and video: the formulas the pages state about them
    "src/infralens/nets/embeddings.py",
    "src/infralens/nets/gaussian.py",
    "src/infralens/nets/patches.py",
    "src/infralens/video/frames.py",
    "src/infralens/video/first_frame_condition.py",
    "src/infralens/video/fused_first_frame.py",
    "src/infralens/pipelines/residency.py",
    "src/infralens/pipelines/step_cache.py",
]

LEFT_OUT = {
    "src/infralens/__init__.py": "package marker",
    "src/infralens/__main__.py": "entry point: calls the CLI",
    "src/infralens/cli.py": "argument parsing and table printing; every number comes from a mutated calculator",
    "src/infralens/core/args.py": "argument validation and error messages, no formula",
    "src/infralens/core/dtypes.py": "a table of bytes per format and name lookups, no arithmetic",
    "src/infralens/core/seeding.py": "seeded weight initialisation (RNG state handling), no formula",
    "src/infralens/distributed/_args.py": "argument validation, no formula",
    "src/infralens/distributed/launch.py": "process management for torch.distributed ranks, no formula",
    "src/infralens/distributed/collective_timing.py": "times real collectives of a process group (a measurement); "
    "the model fitted to it is alpha_beta_fit.py, mutated",
    "src/infralens/transformer/backends.py": "observes which SDPA kernel torch dispatches (an observation, no formula)",
    "src/infralens/distributed/traffic.py": "reads the kernel's byte counter (/proc/self/io), no formula",
    "src/infralens/distributed/ring_attn.py": "passes K/V blocks around the ring; the merge arithmetic is "
    "attention/softmax.py's OnlineSoftmax, mutated there",
    "src/infralens/distributed/ulysses.py": "all-to-all re-layout of shards; attention itself is attention/softmax.py",
    "src/infralens/families/records.py": "data records of families and models (facts, not formulas)",
    "src/infralens/memory/peak.py": "measures live tensor bytes with a dispatch mode (a measurement, not a formula)",
    "src/infralens/adapters/controlnet.py": "a network (a zero-initialised copy of the encoder): torch layers",
    "src/infralens/nets/blocks.py": "stand-in network layers (torch modules); no formula the book computes with them",
    "src/infralens/nets/denoiser.py": "stand-in denoiser network (torch modules)",
    "src/infralens/nets/dit.py": "stand-in DiT networks (torch modules)",
    "src/infralens/nets/text.py": "stand-in text encoder network (torch modules)",
    "src/infralens/nets/unet.py": "stand-in UNet network (torch modules)",
    "src/infralens/nets/vae.py": "stand-in VAE network (torch modules)",
    "src/infralens/nets/video_vae.py": "stand-in video VAE network (torch modules)",
    "src/infralens/pipelines/config.py": "YAML config parsing and validation, no formula",
    "src/infralens/pipelines/ddim_scheduler.py": "diffusers-style wrapper that calls the mutated diffusion formulas",
    "src/infralens/pipelines/diffusers_components.py": "lists of component names, no formula",
    "src/infralens/pipelines/registry.py": "loader registry: names to modules, no formula",
    "src/infralens/pipelines/text_to_video.py": "wiring of components; the loop's formulas are diffusion.flow's",
    "src/infralens/pipelines/tiny_text_to_image.py": "wiring of components; the loop's formulas are diffusion's",
    "src/infralens/pipelines/tiny_diffusers.py": "tiny diffusers pipelines built from configs: wiring, no formula",
    "src/infralens/pipelines/trace.py": "records shapes of tensors crossing boundaries, no formula",
    "src/infralens/transformer/heads.py": "view/transpose re-layouts; their shapes are checked, no arithmetic",
    "src/infralens/transformer/tokenizer.py": "trains a BPE tokenizer with the tokenizers library, no formula",
}


def unclassified(root: Path = ROOT) -> list[str]:
    """Modules of ``src/infralens`` neither mutated nor left out with a reason (``__init__`` files aside)."""
    known = set(MODULES) | set(LEFT_OUT)
    found = sorted(p.relative_to(root).as_posix() for p in (root / "src/infralens").rglob("*.py"))
    return [p for p in found if p not in known and not p.endswith("/__init__.py")]


# --- mutants ----------------------------------------------------------------------------------------

SWAPS: dict[type, type] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Mod: ast.FloorDiv,
    ast.Pow: ast.Mult,
    ast.MatMult: ast.Mult,
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
}
# keywords that only shape an error message, and one that cannot be tested on a CPU-only machine
SKIP_KEYWORDS = {"example", "examples", "why", "device"}
# keywords whose value is a number (negating it is a formula change)
NUMERIC_KEYWORDS = {"alpha", "beta", "value", "weight", "scale", "eps", "exponent", "other", "min", "max"}
# callees whose first two positional arguments commute (swapping them cannot change the result)
SYMMETRIC = {
    "mul", "multiply", "mul_", "maximum", "minimum", "max", "min", "eq", "ne", "isclose", "allclose", "equal",
    "hypot", "logaddexp", "gcd", "lcm", "isinstance", "issubclass", "getattr", "hasattr", "setattr", "print",
}  # fmt: skip


@dataclass
class Mutant:
    module: str
    line: int
    qualname: str  # the top-level function or method whose code changes
    kind: str
    description: str
    site: int  # index of the node among the module's mutation sites
    choice: int  # which of the node's mutations
    span: tuple[int, int]  # lines whose execution means the mutant is reached
    key: str = ""  # stable name: qualname + description (+ #n), used by the equivalents file
    default_arg: str = ""  # the argument of a default-argument mutant
    outcome: str = ""  # killed | survived | timeout | uncovered | equivalent | error | skipped
    seconds: float = 0.0
    units: list[str] = field(default_factory=list)
    note: str = ""


def _changed(value: int | float) -> int | float:
    if isinstance(value, int):
        return value + 1
    return 1.0 if value == 0 else value * 2


def _number(node: ast.AST) -> int | float | None:
    """The value of a numeric literal (``2``, ``-0.5``), else None (bools are not numbers here)."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _number(node.operand) is not None:
        return -_number(node.operand)
    return None


def _callee(call: ast.Call) -> str:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def _functions(body: list[ast.stmt], prefix: str = ""):
    """(qualname, def) of every function at module level and of every method of a module-level class."""
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            yield prefix + stmt.name, stmt
        elif isinstance(stmt, ast.ClassDef):
            yield from _functions(stmt.body, f"{prefix}{stmt.name}.")
        elif isinstance(stmt, ast.If | ast.Try | ast.With):
            for part in ("body", "orelse", "finalbody", "handlers"):
                yield from _functions(getattr(stmt, part, []), prefix)


def _walk(node: ast.AST, stmt: ast.stmt, parent: ast.AST | None):
    """(node, innermost statement, parent) in a fixed order, skipping what only builds error messages."""
    if isinstance(node, ast.Raise | ast.Assert | ast.JoinedStr):
        return
    if isinstance(node, ast.keyword) and node.arg in SKIP_KEYWORDS:
        return
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
        return  # a docstring (of a nested function) or a bare string
    if isinstance(node, ast.stmt):
        stmt = node
    yield node, stmt, parent
    for child in ast.iter_child_nodes(node):
        yield from _walk(child, stmt, node)


def _choices(node: ast.AST, parent: ast.AST | None) -> list[tuple]:
    """The mutations possible at ``node`` as (kind, arg) pairs."""
    out: list[tuple] = []
    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in SWAPS:
        out.append(("operator", None))
    elif isinstance(node, ast.Compare):
        out += [("compare", i) for i, op in enumerate(node.ops) if type(op) in SWAPS]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        out.append(("unary minus", None))
    elif isinstance(node, ast.Constant) and type(node.value) in (int, float):
        out.append(("constant", None))
    elif isinstance(node, ast.Call):
        positional = [a for a in node.args if not isinstance(a, ast.Starred)]
        if (
            len(positional) == len(node.args) >= 2
            and not any(isinstance(a, ast.Constant) for a in node.args[:2])
            and _callee(node) not in SYMMETRIC
            and not (_callee(node) in ("add", "add_") and not node.keywords)
            and ast.dump(node.args[0]) != ast.dump(node.args[1])  # f(d, d): the swap is the same code
        ):
            out.append(("swap arguments", None))
        for i, kw in enumerate(node.keywords):
            if kw.arg is None or kw.arg in SKIP_KEYWORDS:
                continue
            out.append(("drop keyword", i))
            if isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, bool):
                out.append(("flip keyword", i))
            elif kw.arg in NUMERIC_KEYWORDS and not isinstance(kw.value, ast.Constant):
                out.append(("negate keyword", i))
    return out


def _sites(tree: ast.Module):
    """Every mutation site of a module: (qualname, def, node, statement, parent, [(kind, arg)])."""
    for qualname, func in _functions(tree.body):
        a = func.args
        positional = a.posonlyargs + a.args
        pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(arg, d) for arg, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        for arg, default in pairs:
            if _number(default) is not None or (isinstance(default, ast.Constant) and isinstance(default.value, bool)):
                yield qualname, func, default, func, None, [("default", arg.arg)]
        body = func.body[1:] if ast.get_docstring(func) is not None else func.body
        for stmt in body:
            for node, inner, parent in _walk(stmt, stmt, None):
                found = _choices(node, parent)
                if found:
                    yield qualname, func, node, inner, parent, found


def _apply(node: ast.AST, kind: str, arg) -> object:
    """Mutate ``node`` in place; returns the new default value for a default-argument mutant."""
    if kind == "operator":
        node.op = SWAPS[type(node.op)]()
    elif kind == "compare":
        node.ops[arg] = SWAPS[type(node.ops[arg])]()
    elif kind == "unary minus":
        node.op = ast.UAdd()
    elif kind == "constant":
        node.value = _changed(node.value)
    elif kind == "swap arguments":
        node.args[0], node.args[1] = node.args[1], node.args[0]
    elif kind == "drop keyword":
        del node.keywords[arg]
    elif kind == "flip keyword":
        node.keywords[arg].value.value = not node.keywords[arg].value.value
    elif kind == "negate keyword":
        node.keywords[arg].value = ast.UnaryOp(ast.USub(), node.keywords[arg].value)
    elif kind == "default":
        if isinstance(node, ast.Constant) and isinstance(node.value, bool):
            node.value = not node.value
            return node.value
        new = _changed(_number(node))
        if isinstance(node, ast.Constant):
            node.value = new
        else:  # -c: keep the minus, change c so that the value is `new`
            node.operand.value = -new
        return new
    else:
        raise ValueError(f"unknown mutation kind {kind!r}")
    return None


def _short(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit // 2 - 2] + " ... " + text[-(limit // 2 - 3) :]


def _describe(node: ast.AST, parent: ast.AST | None, kind: str, arg) -> str:
    if kind == "default":
        new = _apply(copy.deepcopy(node), kind, arg)
        return f"default {arg}={ast.unparse(node)} -> {new!r}"
    context = parent if kind in ("constant", "unary minus") and isinstance(parent, ast.expr) else node
    if isinstance(context, ast.AugAssign | ast.stmt):
        context = node
    nodes = list(ast.walk(context))
    twin = copy.deepcopy(context)
    _apply(list(ast.walk(twin))[nodes.index(node)], kind, arg)
    return f"{kind}: {_short(ast.unparse(context))}  ->  {_short(ast.unparse(twin))}"


def _span(node: ast.AST, stmt: ast.stmt, func: ast.AST, kind: str) -> tuple[int, int]:
    """Lines whose execution means the mutated code runs: the statement, or a compound statement's header."""
    if kind == "default":
        body = func.body[1:] if ast.get_docstring(func) is not None and len(func.body) > 1 else func.body
        return body[0].lineno, func.end_lineno
    compound = isinstance(stmt, ast.If | ast.For | ast.While | ast.With | ast.Try | ast.FunctionDef | ast.Match)
    if compound and stmt is not node:
        return stmt.lineno, node.end_lineno
    return stmt.lineno, stmt.end_lineno


def mutants(module: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    found: list[Mutant] = []
    seen: dict[str, int] = {}
    for site, (qualname, func, node, stmt, parent, choices) in enumerate(_sites(tree)):
        for choice, (kind, arg) in enumerate(choices):
            desc = _describe(node, parent, kind, arg)
            key = f"{qualname}: {desc}"
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:
                key += f" #{seen[key]}"
            m = Mutant(module, node.lineno, qualname, kind, desc, site, choice, _span(node, stmt, func, kind), key)
            m.default_arg = arg if kind == "default" else ""
            found.append(m)
    return found


def mutated_source(m: Mutant, original: str) -> tuple[str, object]:
    """The module's source with ``m`` applied, and the new default value (default-argument mutants)."""
    tree = ast.parse(original)
    for site, (_, _, node, _, _, choices) in enumerate(_sites(tree)):
        if site == m.site:
            kind, arg = choices[m.choice]
            new = _apply(node, kind, arg)
            return ast.unparse(ast.fix_missing_locations(tree)), new
    raise LookupError(f"mutation site {m.site} not found in {m.module}")


def load_equivalents(path: Path = EQUIVALENTS) -> dict[str, dict[str, str]]:
    """``{module: {mutant key: reason}}`` from the checked-in TOML file."""
    if not path.exists():
        return {}
    data = tomllib.loads(path.read_text())
    for module, entries in data.items():
        for key, reason in entries.items():
            if not isinstance(reason, str) or not reason.strip():
                raise ValueError(f"{path.name}: [{module!r}] {key!r} needs a one-line reason")
    return data


# --- the static map: which units can reach which module --------------------------------------------

IMPORT_RE = re.compile(
    r"^\s*from\s+(infralens[\w.]*)\s+import\s+(\([^)]*\)|[^\n]+)|^\s*import\s+(infralens[\w.]*)", re.M
)
PY_STRING_RE = re.compile(r"""["']([\w./-]+\.py)(?::\w+)?["']""")


class StaticMap:
    """Imports of src modules, tests, starters and pages, resolved to the modules that define the names."""

    def __init__(self, root: Path, upstream: bool = True):
        self.root = root
        self.upstream = upstream
        self.src = root / "src"
        self.deps: dict[str, set[str]] = {}  # src module path -> src module paths it imports from
        self._memo: dict[Path, set[str]] = {}
        self._units: dict[str, set[str]] | None = None
        self.starters = sorted(p.relative_to(root).as_posix() for p in (root / "code").glob("*/lab-*/*.py"))
        for path in sorted((self.src / "infralens").rglob("*.py")):
            rel = path.relative_to(self.root).as_posix()
            self.deps[rel] = self._python_deps(path)
        self.closure = {m: self._close(m) for m in self.deps}

    # names to files
    def _module_file(self, dotted: str) -> str | None:
        base = self.src / Path(*dotted.split("."))
        for cand in (base.with_suffix(".py"), base / "__init__.py"):
            if cand.exists():
                return cand.relative_to(self.root).as_posix()
        return None

    def _defining(self, dotted: str, name: str | None, depth: int = 0) -> set[str]:
        """Files behind ``from dotted import name`` (``name=None``: ``import dotted``)."""
        file = self._module_file(dotted)
        if file is None:
            return set()
        if name is None or depth > 10:
            return {file}
        sub = self._module_file(f"{dotted}.{name}")
        if sub is not None:
            return {sub}
        if file.endswith("__init__.py"):
            tree = ast.parse((self.root / file).read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
                    origin = self._absolute(node, dotted, is_package=True)
                    real = next(a.name for a in node.names if (a.asname or a.name) == name)
                    if origin is not None:
                        return self._defining(origin, real, depth + 1)
        return {file}

    @staticmethod
    def _absolute(node: ast.ImportFrom, package_or_module: str, is_package: bool) -> str | None:
        if node.level == 0:
            return node.module if node.module and node.module.split(".")[0] == "infralens" else None
        parts = package_or_module.split(".")
        if not is_package:
            parts = parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        return ".".join(parts + ([node.module] if node.module else []))

    def _python_deps(self, path: Path) -> set[str]:
        if path not in self._memo:
            self._memo[path] = set()  # a file that names itself (run_ranks("this.py:fn")) ends the recursion
            self._memo[path] = self._python_deps_uncached(path)
        return self._memo[path]

    def _python_deps_uncached(self, path: Path) -> set[str]:
        text = path.read_text()
        try:
            tree = ast.parse(text)
        except SyntaxError:
            return set()
        dotted, is_package = None, False
        if path.is_relative_to(self.src):
            rel = path.relative_to(self.src).with_suffix("")
            is_package = rel.name == "__init__"
            dotted = ".".join(rel.parent.parts if is_package else rel.parts)
        out: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level and not dotted:
                # a test's own helper (from ._tiny_decoder import model_pair): what the helper imports
                base = path.parent
                for _ in range(node.level - 1):
                    base = base.parent
                helper = base / Path(*(node.module or "__init__").split(".")).with_suffix(".py")
                if helper.is_file():
                    out |= self._python_deps(helper)
            elif isinstance(node, ast.ImportFrom):
                origin = self._absolute(node, dotted or "", is_package) if (node.level == 0 or dotted) else None
                if origin:
                    for alias in node.names:
                        out |= self._defining(origin, alias.name)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == "infralens":
                        out |= self._defining(alias.name, None)
        return out | self._named_files(text)

    def _named_files(self, text: str) -> set[str]:
        """Deps of the starters and test files a unit names in a string (run as a subprocess or by path)."""
        out: set[str] = set()
        for name in PY_STRING_RE.findall(text):
            for starter in self.starters:
                if starter == name or starter.endswith("/" + name):
                    out |= self._python_deps(self.root / starter)
        return out

    def _page_deps(self, path: Path) -> set[str]:
        text = path.read_text()
        code = "\n".join(
            re.sub(r"^\s*(>>>|\.\.\.) ?", "", line) for line in text.splitlines() if re.match(r"^\s*(>>>|\.\.\.)", line)
        )
        out: set[str] = set()
        for frm, names, imp in IMPORT_RE.findall(code):
            if imp:
                out |= self._defining(imp, None)
                continue
            for alias in names.strip("()").replace("\n", " ").split(","):
                alias = alias.strip().split(" as ")[0].strip()
                if alias:
                    out |= self._defining(frm, alias)
        return out | self._named_files(code)

    def _close(self, start: str) -> set[str]:
        todo, seen = [start], {start}
        while todo:
            for dep in self.deps.get(todo.pop(), ()):
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    # units
    def units(self) -> dict[str, set[str]]:
        """``{unit: modules it imports directly}``; units are test files, starters, pages and src doctests."""
        if self._units is None:
            self._units = self._find_units()
        return self._units

    def _find_units(self) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        skip = {"tests/ext", "tests/browser", "tests/publish"} | (set() if self.upstream else {"tests/upstream"})
        for path in sorted((self.root / "tests").rglob("test_*.py")):
            rel = path.relative_to(self.root).as_posix()
            if any(rel.startswith(s + "/") for s in skip):
                continue
            if rel == "tests/test_starters.py":
                for starter in self.starters:
                    out[f"starter:{starter}"] = self._python_deps(self.root / starter)
                continue
            out[rel] = self._python_deps(path)
        pages = [self.root / "index.md", *sorted((self.root / "docs").rglob("*.md"))]
        for page in pages:
            rel = page.relative_to(self.root).as_posix()
            if rel.startswith(("docs/_", "docs/api/")) or "```{doctest}" not in page.read_text():
                continue
            out[rel] = self._page_deps(page)
        for module in self.deps:
            if ">>> " in (self.root / module).read_text():
                out[module] = {module} | self.deps[module]
        return {u: d for u, d in out.items() if d}

    def candidates(self, module: str, transitive: bool = True) -> list[str]:
        """Units whose imports reach ``module`` (directly, or through other modules of the library)."""
        found = []
        for unit, direct in self.units().items():
            reach = set().union(*(self.closure.get(d, {d}) for d in direct)) if transitive else direct
            if module in reach:
                found.append(unit)
        return found


def starter_nodeids(root: Path, starter: str) -> list[str]:
    """The tests of ``tests/test_starters.py`` that run ``starter`` and check what it prints."""
    path = root / "tests/test_starters.py"
    ids = [f"tests/test_starters.py::test_starter_runs_and_prints[{starter.removeprefix('code/')}]"]
    tree = ast.parse(path.read_text())
    for func in tree.body:
        if isinstance(func, ast.FunctionDef) and func.name.startswith("test_") and not func.decorator_list:
            strings = [n.value for n in ast.walk(func) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
            if any(s.endswith(".py") and "/" in s and (starter == s or starter.endswith("/" + s)) for s in strings):
                ids.append(f"tests/test_starters.py::{func.name}")
    return ids


def unit_args(root: Path, unit: str) -> list[str]:
    return starter_nodeids(root, unit.removeprefix("starter:")) if unit.startswith("starter:") else [unit]


# --- scratch copies, the traced baseline and the coverage map ---------------------------------------


def worker_copy() -> Path:
    """A scratch copy of the committed tree (git archive HEAD), so edits in progress do not count."""
    tmp = Path(tempfile.mkdtemp(prefix="infralens-mutate-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp


def run_env(workdir: Path, *extra: Path) -> dict[str, str]:
    path = os.pathsep.join(str(p) for p in (workdir / "src", *extra))
    # bytecode is written (pytest caches its rewritten test modules in the copy); the worker removes the
    # mutated module's own .pyc whenever it writes that module, so no process can load a stale one
    env = {**os.environ, "PYTHONPATH": path, "PYTHONHASHSEED": "0"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({"MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"})
    env.pop("INFRALENS_MUTATE_TRACE", None)
    return env


def trace_units(copies: list[Path], units: list[str], modules: list[str], log) -> dict:
    """Run ``units`` once (unmutated) under the line tracer, split over the copies; the coverage map.

    :returns: ``{"lines": {unit: {module: [line, ...]}}, "durations": {unit: seconds},
        "failed": [units that fail to collect], "failing_tests": {unit: [test ids that fail]}}``
    """
    shares = [units[i :: len(copies)] for i in range(len(copies))]
    procs = []
    for workdir, share in zip(copies, shares, strict=True):
        if not share:
            continue
        out = Path(tempfile.mkdtemp(prefix="infralens-trace-"))
        (out / "targets").write_text("\n".join(str(workdir / m) for m in modules))
        (out / "root").write_text(str(workdir))
        env = {**run_env(workdir, TRACE_DIR), "INFRALENS_MUTATE_TRACE": str(out)}
        args = [a for u in share for a in unit_args(workdir, u)]
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutation_trace", *args]
        logfile = open(out / "pytest.log", "w")  # closed below
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=logfile, stderr=subprocess.STDOUT)
        procs.append((proc, out, logfile, workdir))
    lines: dict[str, dict[str, list[int]]] = {}
    durations: dict[str, float] = {}
    failed: set[str] = set()
    for proc, out, logfile, workdir in procs:
        proc.wait()
        logfile.close()
        report = json.loads((out / "units.json").read_text()) if (out / "units.json").exists() else None
        if report is None:
            log(f"the traced baseline run crashed; its log: {out / 'pytest.log'}")
            raise SystemExit(2)
        durations.update(report["durations"])
        failed |= set(report["failed"])
        prefix = str(workdir) + os.sep
        for row in (out / "lines.tsv").read_text().splitlines() if (out / "lines.tsv").exists() else []:
            unit, file, line = row.split("\t")
            if unit.startswith("tests/test_starters.py"):
                continue  # in-process lines of the starter checks: none import the library
            rel = file.removeprefix(prefix)
            lines.setdefault(unit, {}).setdefault(rel, set()).add(int(line))
        if failed:
            log(f"baseline log: {out / 'pytest.log'}")
        else:
            shutil.rmtree(out, ignore_errors=True)

    # per unit: the time of its tests (nodeids start with the unit's own arguments) and whether one failed
    def owns(arg: str, nodeid: str) -> bool:
        return nodeid == arg or nodeid.startswith(arg + "::") or nodeid.startswith(arg + "[")

    per_unit, broken, failing = {}, [], {}
    for unit in units:
        mine = unit_args(copies[0], unit)
        per_unit[unit] = sum(v for k, v in durations.items() if any(owns(a, k) for a in mine))
        if any(k == a for k in failed for a in mine):
            broken.append(unit)  # the file itself failed (to collect): nothing of it can run
        else:
            failing[unit] = sorted(k for k in failed if any(owns(a, k) for a in mine))
    return {
        "lines": {u: {f: sorted(v) for f, v in files.items()} for u, files in lines.items()},
        "durations": per_unit,
        "failed": broken,
        "failing_tests": {u: ids for u, ids in failing.items() if ids},
    }


def unit_keys(units: list[str]) -> dict[str, str]:
    """A key per unit that changes when anything its coverage depends on changes (in the committed tree).

    Common to all: ``src``, ``code``, the root ``conftest.py`` and ``pyproject.toml`` and every file of
    ``tests`` that is not a test file (conftests, helpers); per unit: its own file (``tests/test_starters.py``
    for a starter's checks).
    """
    listing = subprocess.run(["git", "-C", str(ROOT), "ls-tree", "-r", "HEAD"], capture_output=True, text=True)
    blobs = {line.split("\t")[1]: line.split()[2] for line in listing.stdout.splitlines()}
    common = sorted(
        f"{p}:{h}"
        for p, h in blobs.items()
        if p.startswith(("src/", "code/"))
        or p in ("conftest.py", "pyproject.toml")
        or (p.startswith("tests/") and not Path(p).name.startswith("test_"))
    )
    base = hashlib.sha256("\n".join(common).encode()).hexdigest()
    keys = {}
    for unit in units:
        own = "tests/test_starters.py" if unit.startswith("starter:") else unit
        keys[unit] = hashlib.sha256(f"{base}:{unit}:{blobs.get(own, '')}".encode()).hexdigest()
    return keys


def cached_coverage(copies: list[Path], units: list[str], cache: Path | None, log) -> dict:
    """The coverage map of ``units``: traced now for the units whose key changed, else from ``cache``."""
    keys = unit_keys(units)
    stored = json.loads(cache.read_text()) if cache and cache.exists() else {}
    stored = stored if stored.get("modules") == MODULES else {}
    entries = stored.get("units", {})
    stale = [u for u in units if entries.get(u, {}).get("key") != keys[u]]
    log(f"tracing {len(stale)} of {len(units)} test units on {len(copies)} copies ({len(units) - len(stale)} cached)")
    if stale:
        fresh = trace_units(copies, stale, MODULES, log)
        for u in stale:
            entries[u] = {
                "key": keys[u],
                "lines": fresh["lines"].get(u, {}),
                "duration": fresh["durations"].get(u, 0.0),
                "broken": u in fresh["failed"],
                "failing": fresh["failing_tests"].get(u, []),
            }
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps({"modules": MODULES, "units": entries}))
    return {
        "lines": {u: entries[u]["lines"] for u in units},
        "durations": {u: entries[u]["duration"] for u in units},
        "failed": [u for u in units if entries[u]["broken"]],
        "failing_tests": {u: entries[u]["failing"] for u in units if entries[u]["failing"]},
    }


# --- workers: fork servers that run one mutant at a time -------------------------------------------

PRELOAD = ["numpy", "torch", "pytest", "_pytest.doctest", "sybil", "sybil.parsers.myst"]
# hypothesis: its pytest plugin imports it at the end of every session (seconds, with assertion rewriting)
PRELOAD_OPTIONAL = [
    "hypothesis",
    "hypothesis.strategies",
    "diffusers",
    "transformers",
    "peft",
    "einops",
    "tokenizers",
    "matplotlib.pyplot",
    "yaml",
]


def _preload() -> None:
    import importlib
    import pkgutil

    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_OPTIONAL:
        with contextlib.suppress(Exception):
            importlib.import_module(name)
    import infralens

    for info in pkgutil.walk_packages(infralens.__path__, "infralens."):
        with contextlib.suppress(Exception):
            importlib.import_module(info.name)


def _find_code(code, qualname: str):
    for const in code.co_consts:
        if hasattr(const, "co_qualname"):
            if const.co_qualname == qualname:
                return const
            found = _find_code(const, qualname)
            if found is not None:
                return found
    return None


def _resolve(module, qualname: str):
    """The function object behind ``qualname`` in ``module`` (through properties, static/class methods, wrappers)."""
    obj = module
    for part in qualname.split("."):
        obj = vars(obj)[part] if isinstance(obj, type) else getattr(obj, part)
    for attr in ("fget", "__func__", "func"):
        obj = getattr(obj, attr, obj) if not hasattr(obj, "__code__") else obj
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    return obj


def patch(module_name: str, path: str, source: str, qualname: str, default) -> None:
    """Make the already imported module behave as the mutant: new code (or default) for one function."""
    module = sys.modules[module_name]
    func = _resolve(module, qualname)
    if default is not None:
        arg, value = default
        code = func.__code__
        names = code.co_varnames[: code.co_argcount]
        if arg in names:
            defaults = list(func.__defaults__)
            defaults[names.index(arg) - (len(names) - len(defaults))] = value
            func.__defaults__ = tuple(defaults)
        else:
            func.__kwdefaults__ = {**func.__kwdefaults__, arg: value}
        return
    new = _find_code(compile(source, path, "exec", dont_inherit=True), qualname)
    if new is None:
        raise LookupError(f"no code object {qualname} in the mutant of {module_name}")
    func.__code__ = new


def worker_main() -> int:
    """``--worker``: read mutants as JSON lines on stdin, answer each with its outcome on stdout."""
    out = os.fdopen(os.dup(1), "w", buffering=1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)  # nothing printed by an import may reach the protocol stream
    start = time.perf_counter()
    _preload()
    out.write(json.dumps({"ready": time.perf_counter() - start}) + "\n")
    log = Path.cwd() / ".mutant.log"
    current = {"pid": 0}

    def stop(signum, frame):
        if current["pid"]:
            with contextlib.suppress(OSError):
                os.killpg(current["pid"], signal.SIGKILL)
        os._exit(128 + signum)

    signal.signal(signal.SIGTERM, stop)
    for line in sys.stdin:
        req = json.loads(line)
        target = Path(req["module"])
        pyc = Path(importlib.util.cache_from_source(str(target)))
        original = target.read_text()
        target.write_text(req["source"])
        pyc.unlink(missing_ok=True)
        sys.stdout.flush()
        sys.stderr.flush()
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the mutant's own process
            code = 99
            try:
                os.setpgid(0, 0)
                fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                os.dup2(devnull, 0)
                patch(req["name"], str(target.resolve()), req["source"], req["qualname"], req["default"])
                import pytest

                # modules imported before pytest starts cannot be rewritten; that warning is not the mutant's
                quiet = ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
                code = int(pytest.main(["-x", "-q", "-p", "no:cacheprovider", *quiet, *req["args"]]))
            except BaseException:  # reported as an error outcome
                import traceback

                traceback.print_exc()
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        current["pid"] = pid
        with contextlib.suppress(OSError):
            os.setpgid(pid, pid)
        pidfd = os.pidfd_open(pid)
        ready, _, _ = select.select([pidfd], [], [], req["timeout"])
        timed_out = not ready
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)  # the mutant on timeout; its leftover children (fork servers) always
        _, status = os.waitpid(pid, 0)
        os.close(pidfd)
        current["pid"] = 0
        target.write_text(original)
        pyc.unlink(missing_ok=True)
        rc = None if timed_out else os.waitstatus_to_exitcode(status)
        text = log.read_text() if log.exists() else ""
        tail = text.strip().splitlines()[-1] if rc == 0 and text.strip() else "" if rc == 1 else text[-2000:]
        out.write(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0, "log": tail}) + "\n")
    return 0


class Worker:
    def __init__(self, workdir: Path):
        self.workdir = workdir
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=run_env(workdir), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.ready = json.loads(self.proc.stdout.readline())["ready"]

    def run(self, request: dict) -> dict:
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


# --- scheduling and outcomes -------------------------------------------------------------------------


def select_units(m: Mutant, coverage: dict, candidates: list[str]) -> list[str]:
    lo, hi = m.span
    hit = [u for u in candidates if any(lo <= n <= hi for n in coverage["lines"].get(u, {}).get(m.module, ()))]
    return sorted(hit, key=lambda u: coverage["durations"].get(u, 0.0))


def timeout_for(units: list[str], coverage: dict, factor: float) -> float:
    return 30.0 + factor * sum(coverage["durations"].get(u, 10.0) for u in units)


def module_name(module: str) -> str:
    return ".".join(Path(module).relative_to("src").with_suffix("").parts)


def changed_modules(rev: str) -> list[str]:
    proc = subprocess.run(["git", "-C", str(ROOT), "diff", "--name-only", rev, "HEAD"], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"--changed-since {rev}: {proc.stderr.strip()}")
    return [m for m in MODULES if m in set(proc.stdout.split())]


def summarise(done: list[Mutant], modules: list[str]) -> dict:
    table = {}
    for module in modules:
        ms = [m for m in done if m.module == module]
        count = {o: sum(m.outcome == o for m in ms) for o in OUTCOMES}
        scored = len(ms) - count["equivalent"] - count["skipped"]
        table[module] = {
            "mutants": len(ms),
            **count,
            "score": count["killed"] / scored if scored else None,
            "seconds": round(sum(m.seconds for m in ms), 1),  # time spent running this module's mutants
            "survivors": [
                {"line": m.line, "outcome": m.outcome, "description": m.description, "key": m.key}
                for m in ms
                if m.outcome in ("survived", "uncovered", "timeout", "error")
            ],
        }
    return table


OUTCOMES = ("killed", "survived", "timeout", "uncovered", "equivalent", "error", "skipped")
ALIVE = ("survived", "timeout", "uncovered", "error")  # outcomes that are not a kill


def print_table(table: dict, file=sys.stdout) -> None:
    head = (
        f"| {'module':<44} | mutants | killed | survived | uncovered | timeouts | equivalent | not run | "
        "score  | seconds |"
    )
    print(head, file=file)
    print("|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|", file=file)
    tot = dict.fromkeys(("mutants", *OUTCOMES, "seconds"), 0)
    for module, row in table.items():
        for k in tot:
            tot[k] += row.get(k, 0)
        score = "  -   " if row["score"] is None else f"{row['score']:6.1%}"
        name = module.removeprefix("src/infralens/")
        print(
            f"| {name:<44} | {row['mutants']:>7} | {row['killed']:>6} | {row['survived']:>8} | "
            f"{row['uncovered']:>9} | {row['timeout']:>8} | {row['equivalent']:>10} | {row['skipped']:>7} | "
            f"{score} | {row.get('seconds', 0):>7.0f} |",
            file=file,
        )
    scored = tot["mutants"] - tot["equivalent"] - tot["skipped"]
    score = tot["killed"] / scored if scored else 0.0
    print(
        f"| {'all':<44} | {tot['mutants']:>7} | {tot['killed']:>6} | {tot['survived']:>8} | "
        f"{tot['uncovered']:>9} | {tot['timeout']:>8} | {tot['equivalent']:>10} | {tot['skipped']:>7} | "
        f"{score:6.1%} | {tot['seconds']:>7.0f} |",
        file=file,
    )


def report(
    done: list[Mutant],
    modules: list[str],
    meta: dict,
    json_path: Path | None,
    min_score: float,
    table_path: Path | None = None,
    kept_rows: dict | None = None,
) -> int:
    table = summarise(done, modules)
    if kept_rows:  # modules known only from a table (--merge of a --table file): their rows as written
        table = {m: table.get(m) or {**kept_rows[m], "survivors": []} for m in MODULES if m in table or m in kept_rows}
    print()
    print_table(table)
    for module, row in table.items():
        for s in row["survivors"]:
            print(f"  {s['outcome']:<9} {module}:{s['line']} {s['description']}")
    if json_path:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        payload = {"meta": meta, "modules": table, "mutants": [asdict(m) for m in done]}
        json_path.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"\nreport: {json_path}")
    if table_path:  # the per-module table alone, what docs/authoring.md renders (docs/_data/mutation.json)
        table_path.parent.mkdir(parents=True, exist_ok=True)
        rows = {m: {k: v for k, v in row.items() if k != "survivors"} for m, row in table.items()}
        absent = [m for m in MODULES if m not in table]  # formula modules this report did not measure
        payload = {"meta": meta, "modules": rows, "not_measured": absent}
        table_path.write_text(json.dumps(payload, indent=1) + "\n")
        print(f"table: {table_path}")
    low = [m for m, row in table.items() if row["score"] is not None and row["score"] < min_score]
    if low:
        print(f"\nbelow {min_score:.0%}: " + ", ".join(m.removeprefix("src/infralens/") for m in low))
        return 1
    return 0


def merge(paths: list[Path], equivalents: dict | None = None) -> tuple[list[Mutant], list[str], dict]:
    """Mutants of several reports; for a module in several, the newest report that ran all of its mutants wins
    (else the newest), and the reports of ``--rerun`` runs then replace the outcomes of the mutants they ran
    again. A mutant that did not die and that ``equivalents`` (default: the equivalents file, as it
    is now) records is counted as equivalent: equivalence is a reading of the code, not a measurement."""
    equivalents = load_equivalents() if equivalents is None else equivalents
    by_module: dict[str, tuple[tuple[bool, str], int, list[dict]]] = {}
    metas = []
    reruns = []
    for i, path in enumerate(paths):
        data = json.loads(path.read_text())
        metas.append({"file": str(path), **data["meta"]})
        if data["meta"].get("rerun"):
            reruns.append((i, data))
            continue
        stamp = data["meta"].get("finished", "")
        for module in data["modules"]:
            rows = [r for r in data["mutants"] if r["module"] == module]
            rank = (not any(r["outcome"] == "skipped" for r in rows), stamp)  # complete first, then newest
            if module not in by_module or by_module[module][0] <= rank:
                by_module[module] = (rank, i, rows)
    overlaid: dict[str, set[int]] = {}
    for i, data in sorted(reruns, key=lambda r: r[1]["meta"].get("finished", "")):
        for module in data["modules"]:  # a rerun's outcomes replace those of the mutants it ran again
            if module not in by_module:
                continue
            rows = {r["key"]: r for r in by_module[module][2]}
            for r in data["mutants"]:
                if r["module"] == module and r["outcome"] != "skipped" and r["key"] in rows:
                    rows[r["key"]] = r
                    overlaid.setdefault(module, set()).add(i)
            by_module[module] = (by_module[module][0], by_module[module][1], list(rows.values()))
    modules = [m for m in MODULES if m in by_module] + [m for m in by_module if m not in MODULES]
    done = []
    for module in modules:
        for row in by_module[module][2]:
            row["span"] = tuple(row["span"])
            m = Mutant(**row)
            reason = equivalents.get(module, {}).get(m.key)
            kind, _, change = m.description.partition(": ")
            before, _, after = change.partition("  ->  ")
            if not reason and kind == "swap arguments" and before == after and len(before) < 90:
                # f(d, d) swapped, made by an older tool (short code: _short did not cut it): the same code
                reason = "the mutant's code is the original (the tool no longer makes it)"
            if reason and m.outcome in ("survived", "timeout", "uncovered", "error"):
                m.outcome, m.note = "equivalent", reason
            done.append(m)
    for i, meta in enumerate(metas):  # which modules each run's figures are shown for
        meta["modules"] = [m for m in modules if by_module[m][1] == i or i in overlaid.get(m, ())]
    return done, modules, {"merged": [meta for meta in metas if meta["modules"]]}


# --- main ----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help="paths of modules to mutate (default: every module of MODULES)")
    parser.add_argument("--jobs", type=int, default=2, help="workers (each a scratch copy and a fork server)")
    parser.add_argument("--json", type=Path, help="write the report (per module, every mutant) here")
    parser.add_argument("--table", type=Path, help="write the per-module table alone here (docs/_data/mutation.json)")
    parser.add_argument("--min-score", type=float, default=0.0, help="exit 1 if a module scores below this")
    parser.add_argument("--changed-since", metavar="REV", help="only the modules changed between REV and HEAD")
    parser.add_argument("--sample", type=int, metavar="N", help="run N mutants drawn at random (seeded)")
    parser.add_argument(
        "--per-module",
        type=int,
        metavar="N",
        help="run at most N mutants of each module, drawn at random (seeded like --sample); the rest are not run",
    )
    parser.add_argument(
        "--rerun",
        type=Path,
        metavar="REPORT",
        help="run only the mutants REPORT left alive (survived, timeout, uncovered, error); --merge lays the new "
        "outcomes over REPORT's",
    )
    parser.add_argument("--seed", default=None, help="seed of --sample (default: the HEAD commit)")
    parser.add_argument("--budget", type=float, metavar="SECONDS", help="start no mutant after this much time")
    parser.add_argument("--timeout-factor", type=float, default=4.0, help="limit: 30 s + factor x baseline time")
    parser.add_argument("--no-upstream", action="store_true", help="leave out tests/upstream (diffusers & co.)")
    parser.add_argument(
        "--no-trace",
        action="store_true",
        help="skip the coverage map: each mutant runs every candidate unit of its module (for a small --sample)",
    )
    parser.add_argument("--direct", action="store_true", help="units that import a module directly, not transitively")
    parser.add_argument(
        "--coverage-cache",
        type=Path,
        default=ROOT / "_build" / "mutation-coverage.json",
        help="coverage map per test unit, reused while the unit and the code under test are unchanged",
    )
    parser.add_argument("--list", action="store_true", help="print the mutants and their keys, run nothing")
    parser.add_argument("--merge", nargs="+", type=Path, metavar="REPORT", help="combine reports, run nothing")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker_main()
    if args.merge:
        tables = [p for p in args.merge if "mutants" not in json.loads(p.read_text())]
        done, modules, meta = merge([p for p in args.merge if p not in tables])
        kept: dict = {}
        for path in tables:  # a table file (--table) keeps rows, not mutants: its modules that no report measured
            data = json.loads(path.read_text())
            runs = [r for r in data["meta"].get("merged", [data["meta"]]) if set(r.get("modules", ())) - set(modules)]
            for row_module, row in data["modules"].items():
                if row_module not in modules:
                    kept[row_module] = row
            for r in runs:
                r = {**r, "modules": [m for m in r.get("modules", ()) if m not in modules]}
                meta.setdefault("merged", []).insert(0, r)
        return report(done, modules, meta, args.json, args.min_score, args.table, kept)

    t_start = time.perf_counter()
    log = lambda text: print(text, flush=True)  # noqa: E731
    missing = unclassified()
    if missing:
        log("modules neither in MODULES nor in LEFT_OUT (add each, with a reason if left out):")
        for m in missing:
            log(f"  {m}")
        return 2
    modules = args.modules or list(MODULES)
    if args.changed_since:
        modules = [m for m in changed_modules(args.changed_since) if m in modules]
        if not modules:
            log(f"no formula module changed since {args.changed_since}: nothing to mutate")
            return 0
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        log(f"not in MODULES: {', '.join(unknown)}")
        return 2
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    equivalents = load_equivalents()

    # mutants come from the committed tree the workers test, never from edits in progress
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    workers: list[Worker] = []
    copies = [worker_copy() for _ in range(max(1, args.jobs))]
    try:
        todo: list[Mutant] = []
        for module in modules:
            todo += mutants(module, (copies[0] / module).read_text())
        if args.list:
            for m in todo:
                print(f"{m.module}:{m.line}  [{m.key}]")
            return 0
        for m in todo:
            reason = equivalents.get(m.module, {}).get(m.key)
            if reason:
                m.outcome, m.note = "equivalent", reason
        for module in modules:
            keys = {m.key for m in todo if m.module == module}
            for key in equivalents.get(module, {}):
                if key not in keys:
                    log(f"warning: equivalent mutant no longer produced (stale entry): {module}: {key}")
        if args.sample is not None:
            pool = [m for m in todo if not m.outcome]
            rng = random.Random(args.seed if args.seed is not None else head)
            chosen = {id(m) for m in rng.sample(pool, min(args.sample, len(pool)))}
            for m in todo:
                if not m.outcome and id(m) not in chosen:
                    m.outcome = "skipped"

        if args.rerun is not None:  # the mutants a report left alive, run again (after new tests)
            old = json.loads(args.rerun.read_text())
            again = {(r["module"], r["key"]) for r in old["mutants"] if r["outcome"] in ALIVE}
            for m in todo:
                if not m.outcome and (m.module, m.key) not in again:
                    m.outcome, m.note = "skipped", f"not rerun: not left alive in {args.rerun}"
        if args.per_module is not None:
            for module in modules:  # one draw per module: the same mutants whatever the other modules
                rng = random.Random(f"{args.seed if args.seed is not None else head}:{module}")
                pool = [m for m in todo if m.module == module and not m.outcome]
                chosen = {id(m) for m in rng.sample(pool, min(args.per_module, len(pool)))}
                for m in pool:
                    if id(m) not in chosen:
                        m.outcome, m.note = "skipped", f"not drawn: at most {args.per_module} mutants per module"

        static = StaticMap(copies[0], upstream=not args.no_upstream)
        candidates = {m: static.candidates(m, transitive=not args.direct) for m in modules}
        # trace only for the modules that still have mutants to run (a sample leaves most of them out)
        live = {m.module for m in todo if not m.outcome}
        units = sorted(set().union(*(candidates[m] for m in live)))
        log(f"{len(todo)} mutants in {len(modules)} modules")
        t_trace = time.perf_counter()
        if args.no_trace:  # every candidate unit runs each mutant of its module: no map to build first
            coverage = {"lines": {}, "durations": {}, "failed": [], "failing_tests": {}}
            log(f"no coverage map: each mutant runs the {len(units)} units that import its module")
        else:
            coverage = cached_coverage(copies, units, args.coverage_cache, log)
            log(f"coverage map in {time.perf_counter() - t_trace:.0f} s")
        if coverage["failed"]:
            log("units that fail to collect without any mutant (left out): " + ", ".join(coverage["failed"]))
        for ids in coverage["failing_tests"].values():
            log(f"tests failing without any mutant (deselected): {', '.join(ids)}")
        broken = set(coverage["failed"])

        run_list = []
        for m in todo:
            if m.outcome:
                continue
            chosen_units = candidates[m.module] if args.no_trace else select_units(m, coverage, candidates[m.module])
            m.units = [u for u in chosen_units if u not in broken]
            if not m.units:
                m.outcome, m.note = "uncovered", "no test unit executes this line"
            else:
                run_list.append(m)
        log(f"{len(run_list)} mutants to run ({sum(m.outcome == 'uncovered' for m in todo)} uncovered)")

        lock = threading.Lock()
        queue = list(reversed(run_list))
        sources = {module: (copies[0] / module).read_text() for module in modules}

        def drive(workdir: Path) -> None:
            worker = Worker(workdir)
            workers.append(worker)
            try:
                while True:
                    with lock:
                        if not queue:
                            return
                        if args.budget is not None and time.perf_counter() - t_start > args.budget:
                            return
                        m = queue.pop()
                    source, default = mutated_source(m, sources[m.module])
                    request = {
                        "module": m.module,
                        "name": module_name(m.module),
                        "source": source,
                        "qualname": m.qualname,
                        "default": [m.default_arg, default] if m.kind == "default" else None,
                        "args": [a for u in m.units for a in unit_args(workdir, u)]
                        + [f"--deselect={i}" for u in m.units for i in coverage["failing_tests"].get(u, ())],
                        "timeout": timeout_for(m.units, coverage, args.timeout_factor),
                    }
                    answer = worker.run(request)
                    m.seconds = answer["seconds"]
                    rc = answer["rc"]
                    if rc is None:
                        m.outcome = "timeout"
                    elif rc == 0:
                        m.outcome, m.note = "survived", answer["log"]  # pytest's summary line
                    elif rc == 1 or rc == 2:  # a failing test, or an error while collecting one
                        m.outcome = "killed"
                    else:
                        m.outcome, m.note = "error", f"pytest exit {rc}: {answer['log'][-300:]}"
                    log(f"  {m.outcome:<8} {m.seconds:6.1f}s {m.module}:{m.line} {m.description}")
            finally:
                worker.close()

        threads = [threading.Thread(target=drive, args=(w,), daemon=True) for w in copies]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for m in todo:
            if not m.outcome:
                m.outcome, m.note = "skipped", "not run: time budget spent"
    finally:
        for worker in workers:  # on an interruption, each stops its running mutant first
            if worker.proc.poll() is None:
                worker.proc.terminate()
                worker.proc.wait(timeout=30)
        for workdir in copies:
            shutil.rmtree(workdir, ignore_errors=True)

    wall = time.perf_counter() - t_start
    meta = {
        "commit": head,
        "finished": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "tools/mutate.py", *(argv if argv is not None else sys.argv[1:])]),
        "wall_seconds": round(wall),
        "jobs": len(copies),
        "sampled": args.sample,
        "per_module": args.per_module,
        "rerun": str(args.rerun) if args.rerun else None,
    }
    log(f"\nwall time {wall:.0f} s")
    return report(todo, modules, meta, args.json, args.min_score, args.table)


if __name__ == "__main__":
    sys.exit(main())
