"""Benchmarks: the book build (authors' feedback loop) and the library's hot functions.

A benchmark, not a test: it prints tables and writes JSON (``_build/bench.json``)
and checks the targets only to report them. ``tox -e bench`` runs both parts.

Library part: ``add_noise``, ``flow_interpolate`` and ``cfg_combine`` on a Wan 2.1
480p latent ``(1, 16, 21, 60, 104)``, float32 and bfloat16, one thread, against
(a) the one-pass memory floor measured in the same run (``torch.lerp`` of two
such tensors) and (b) diffusers' ``DDPMScheduler.add_noise`` and
``FlowMatchEulerDiscreteScheduler.scale_noise`` when diffusers is installed.
Runs are paired and interleaved (every function once per round, in a shuffled
order) and medians are compared, so load on the machine hits all alike.

Book part: a clean HTML build, a no-op rebuild, rebuilds after touching one lab
page, one starter and one ``src/`` module, the doctest builder, pytest, and
``-j auto`` against serial, in a scratch copy of the committed tree.

Growth part (how CI grows with the labs), in a scratch copy of the committed
tree: the book read once and built by the doctest, HTML, ePub (math images from
an empty cache: the cost of new formulas) and LaTeX builders plus xelatex, each
page's seconds per builder recorded by ``docs/_ext/infralens_bench.py``; every
starter run once and timed; a two-process gloo launch timed (the unit of the
distributed track's multi-process examples).

CI part: the timing table of a ``.ci/run`` (``_build/ci`` of the clone it ran
in, ``--ci-dir``), with the commit it ran at. With the growth part it gives the
model: each CI step's seconds split into a fixed part and a part per lab, then
the run projected at ``--labs`` labs, stage by stage (``docs/performance.md``).

Every result file carries ``measured``: the commit, date, machine, load and the
size of the book (labs, pages, starters) it was measured on, so the page can say
when its figures describe an older book.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WAN_480P = (1, 16, 21, 60, 104)
# the library functions the library part times: the page's build fails if one disappears
MODULES = ["infralens.diffusion.add_noise", "infralens.diffusion.flow_interpolate", "infralens.diffusion.cfg_combine"]
# CI's stages: the lanes of a stage run at the same time, on CORES cores; a stage ends when its
# last lane ends (.ci/run)
STAGES = [
    (["lint", "py"], ["docs"], ["upstream"]),
    (["pdf"], ["epub", "rtd"], ["browser"], ["mutation-sample"]),
]
CORES = 2
# Multi-process launches per lab of the distributed track, by the CI step that runs them; each costs a
# measured launch. Its first five labs have, per lab, one run_ranks call in the starter and one on the
# page, about two in tests/distributed and fewer than one in tests/upstream; counted high here (a call
# in a parametrized test launches more than once), and on top of the measured steps, which already
# hold the launches of the labs there are.
LAUNCHES = {"py": 4, "docs": 2, "upstream": 2}


def interleaved(fns: dict[str, Callable[[], object]], rounds: int, seed: int = 0) -> dict[str, float]:
    """Median seconds per call of each function, measured in shuffled, interleaved rounds."""
    rng = random.Random(seed)
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for name in names:  # warm up: allocator, caches, lazy imports
        fns[name]()
    for _ in range(rounds):
        rng.shuffle(names)
        for name in names:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def _library_dtype(dtype, rounds: int) -> dict:
    import torch

    from infralens.diffusion import add_noise, cfg_combine, flow_interpolate

    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(WAN_480P, generator=g).to(dtype)
    noise = torch.randn(WAN_480P, generator=g).to(dtype)
    ab, sigma, scale = 0.5, 0.3, 5.0
    fns: dict[str, Callable[[], object]] = {
        "floor: torch.lerp": lambda: torch.lerp(x0, noise, 0.3),
        "add_noise": lambda: add_noise(x0, noise, ab),
        "flow_interpolate": lambda: flow_interpolate(x0, noise, sigma),
        "cfg_combine": lambda: cfg_combine(x0, noise, scale),
    }
    try:
        from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler
    except ImportError:
        diffusers = False
    else:
        diffusers = True
        ddpm = DDPMScheduler()
        t = torch.tensor([int((ddpm.alphas_cumprod - ab).abs().argmin())])
        fm = FlowMatchEulerDiscreteScheduler()
        fm.set_timesteps(50)
        ts = fm.timesteps[[10]]
        fns["diffusers DDPMScheduler.add_noise"] = lambda: ddpm.add_noise(x0, noise, t)
        fns["diffusers FlowMatch...scale_noise"] = lambda: fm.scale_noise(x0, ts, noise)
    med = interleaved(fns, rounds)
    floor = med["floor: torch.lerp"]
    rows: dict = {k: {"seconds": v, "vs_floor": v / floor} for k, v in med.items()}
    if diffusers:
        rows["diffusers_add_noise_over_ours"] = med["diffusers DDPMScheduler.add_noise"] / med["add_noise"]
        rows["diffusers_scale_noise_over_ours"] = med["diffusers FlowMatch...scale_noise"] / med["flow_interpolate"]
    return rows


def library(rounds: int) -> dict:
    import torch

    torch.set_num_threads(1)
    return {str(d).removeprefix("torch."): _library_dtype(d, rounds) for d in (torch.float32, torch.bfloat16)}


def print_library(results: dict) -> None:
    print(f"\nLibrary on a Wan 2.1 480p latent {WAN_480P}, one thread, medians of interleaved runs")
    for dtype, rows in results.items():
        print(f"\n  {dtype}")
        print(f"  {'function':<36} {'ms':>8} {'x floor':>8}")
        for name, row in rows.items():
            if isinstance(row, dict):
                print(f"  {name:<36} {row['seconds'] * 1e3:>8.2f} {row['vs_floor']:>8.2f}")
        for key in ("diffusers_add_noise_over_ours", "diffusers_scale_noise_over_ours"):
            if key in rows:
                print(f"  {key.replace('_', ' '):<36} {rows[key]:>8.2f}x")


def _run(cmd: list[str], cwd: Path, env: dict) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, capture_output=True)
    return time.perf_counter() - start


def book() -> dict:
    tmp = _scratch()
    env = {**os.environ, "PYTHONPATH": str(tmp / "src")}
    html = [sys.executable, "-m", "sphinx", "-q", "-b", "html", "-d", "_bench/doctrees", ".", "_bench/html"]
    lab = tmp / "docs/tracks/diffuser/labs/lab-01-forward-noise-process.md"
    starter = tmp / "code/diffuser/lab-01-forward-noise-process/forward_noise.py"
    module = tmp / "src/infralens/diffusion/guidance.py"
    out: dict[str, float] = {}
    try:
        out["clean html build"] = _run(html, tmp, env)
        out["no-op rebuild"] = _run(html, tmp, env)
        touched = (("touch one lab page", lab), ("touch one starter", starter), ("touch one src module", module))
        for name, path in touched:
            path.write_text(path.read_text() + "\n")
            out[f"rebuild after: {name}"] = _run(html, tmp, env)
        shutil.rmtree(tmp / "_bench")
        out["clean html build -j auto"] = _run([*html[:3], "-j", "auto", *html[3:]], tmp, env)
        doctest = [sys.executable, "-m", "sphinx", "-q", "-b", "doctest", "-d", "_bench/dt2", ".", "_bench/doctest"]
        out["doctest builder"] = _run(doctest, tmp, env)
        ignore = ["--ignore=tests/upstream", "--ignore=tests/ext", "--ignore=tests/browser", "--ignore=tests/publish"]
        out["pytest"] = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *ignore], tmp, env)
        pages = len(list((tmp / "_bench/html").rglob("*.html")))
        out["pages"] = pages
        out["seconds per page (clean build)"] = out["clean html build"] / pages
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _git(*args: str, cwd: Path = ROOT) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


def _book_size(root: Path) -> dict[str, int]:
    sys.path.insert(0, str(ROOT / "docs" / "_ext"))
    from infralens_bench import book_size

    return book_size(root)


def measured(root: Path = ROOT, load: float | None = None, when: float | None = None) -> dict:
    """Where and when: the commit, the machine, its load, and the size of the book measured (at ``root``)."""
    import platform

    import torch

    return {
        "commit": _git("rev-parse", "HEAD", cwd=root),
        "subject": _git("log", "-1", "--format=%s", cwd=root)[:72],
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(when)),
        "machine": f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})",
        "cores": os.cpu_count(),
        "load": os.getloadavg()[0] if load is None else load,
        "python": platform.python_version(),
        "torch": torch.__version__,
        **_book_size(root),
    }


def _gloo_rank(rank: int, world: int, port: int) -> None:
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    t = torch.ones(1)
    dist.all_reduce(t)
    assert t.item() == world
    dist.destroy_process_group()


def spawn(rounds: int = 5) -> dict:
    """Seconds for a two-process gloo launch (spawn, init, one all_reduce, destroy, join), and for ``import torch``."""
    import socket

    import torch.multiprocessing as mp

    launches = []
    for _ in range(rounds):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        start = time.perf_counter()
        mp.spawn(_gloo_rank, args=(2, port), nprocs=2, join=True)
        launches.append(time.perf_counter() - start)
    imports = [_run([sys.executable, "-c", "import torch"], ROOT, dict(os.environ)) for _ in range(3)]
    return {
        "launch (2 processes, median)": statistics.median(launches),
        "launch (fastest)": min(launches),
        "python -c 'import torch' (median)": statistics.median(imports),
        "rounds": rounds,
        "launches": launches,
    }


def _scratch() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="infralens-bench-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    return tmp


def growth() -> dict:
    """Per page and per builder, per starter, per launch: the marginal costs CI grows by."""
    tmp = _scratch()
    timings = tmp / "_bench" / "timings.json"
    timings.parent.mkdir(parents=True)
    env = {**os.environ, "PYTHONPATH": str(tmp / "src"), "INFRALENS_BENCH_TIMINGS": str(timings)}
    env["INFRALENS_IMGMATH_CACHE"] = str(tmp / "_bench" / "imgmath")  # empty: every formula rendered
    env.pop("INFRALENS_MATHJAX", None)
    sphinx = [sys.executable, "-m", "sphinx", "-q", "-d", "_bench/doctrees"]
    seconds: dict[str, float] = {}
    try:
        for builder in ("doctest", "html", "epub", "latex"):
            seconds[builder] = _run([*sphinx, "-b", builder, ".", f"_bench/{builder}"], tmp, env)
        make = ["make", "-C", "_bench/latex", "all-pdf", "LATEXOPTS=-interaction=nonstopmode -halt-on-error"]
        seconds["xelatex"] = _run(make, tmp, env)
        data = json.loads(timings.read_text())
        sizes = {d: (tmp / f"{d}.md").stat().st_size for d in data["doctest"]["read"] if (tmp / f"{d}.md").exists()}
        total_size = sum(sizes.values())
        pages: dict[str, dict[str, float]] = {}
        for doc in sorted(data["doctest"]["read"]):
            pdf_share = sizes.get(doc, 0) / total_size * (seconds["latex"] + seconds["xelatex"])
            pages[doc] = {
                "read": data["doctest"]["read"][doc],
                "doctest": data["doctest"]["write"].get(doc, 0.0),
                "html": data["html"]["write"].get(doc, 0.0),
                "epub": data["epub"]["write"].get(doc, 0.0),
                "pdf (latex + xelatex, by size)": pdf_share,
            }
        labs = [d for d in pages if "/labs/lab-" in d]
        per_lab = {k: statistics.mean(pages[d][k] for d in labs) for k in next(iter(pages.values()))}
        per_lab["all builders"] = sum(per_lab.values())
        others = {k: sum(pages[d][k] for d in pages if d not in labs) for k in per_lab if k != "all builders"}
        others["all builders"] = sum(others.values())
        runs = {str(p.relative_to(tmp / "code")): _run([sys.executable, p.name], p.parent, env) for p in _starters(tmp)}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    values = list(runs.values())
    return {
        "builds": seconds,
        "pages": pages,
        "per_lab_page": {"mean of the lab pages": per_lab, f"all {len(pages) - len(labs)} other pages": others},
        "starters": {
            "runs": runs,
            "summary": {
                "starters": len(values),
                "total": sum(values),
                "median": statistics.median(values),
                "mean": statistics.mean(values),
                "slowest": max(values),
            },
        },
        "spawn": spawn(),
    }


def _starters(root: Path) -> list[Path]:
    return sorted((root / "code").glob("*/lab-*/*.py"))


def ci(ci_dir: Path) -> dict:
    """The timing table of one .ci/run: steps (lane, seconds, tox's setup and commands split), wall, commit."""
    import re

    steps = []
    for line in (ci_dir / "steps.tsv").read_text().splitlines():
        lane, name, start, end, status = line.split("\t")
        log = (ci_dir / f"{name}.log").read_text(errors="replace")
        split = re.search(r"OK \(([\d.]+)=setup\[([\d.]+)\]\+cmd\[([\d.,]+)\] seconds\)", log)
        row = {"step": name, "lane": lane, "seconds": float(end) - float(start), "status": status}
        cpu = ci_dir / f"{name}.cpu"  # bash's `times`: the last line is the children's user and system time
        if cpu.exists():
            row["cpu"] = sum(
                int(m) * 60 + float(x) for m, x in re.findall(r"(\d+)m([\d.]+)s", cpu.read_text().splitlines()[-1])
            )
        if split:
            row["setup"], row["commands"] = float(split[2]), sum(map(float, split[3].split(",")))
            row["split"] = f"{row['setup']:.0f} + {row['commands']:.0f}"
        steps.append(row)
    starts = [float(line.split("\t")[2]) for line in (ci_dir / "steps.tsv").read_text().splitlines()]
    ends = [float(line.split("\t")[3]) for line in (ci_dir / "steps.tsv").read_text().splitlines()]
    root = ci_dir.resolve().parents[1]
    load = (ci_dir / "load.txt").read_text().split() if (ci_dir / "load.txt").exists() else []
    return {
        "measured": {**measured(root, when=min(starts)), "load": float(load[1]) if load else None},
        "steps": steps,
        "wall": max(ends) - min(starts),
        "work": sum(s["seconds"] for s in steps),
        "load": " ".join(load),
    }


def model(ci_run: dict, grown: dict, size: dict, labs: int, distributed_labs: int) -> dict:
    """CI's steps split into fixed seconds and seconds per lab, projected to ``labs`` labs, stage by stage."""
    now = size["labs"]
    page = grown["per_lab_page"]["mean of the lab pages"]
    launch = grown["spawn"]["launch (2 processes, median)"]
    per_lab_page = {  # measured seconds of one lab page in the builders each step runs
        "docs": page["read"] + page["doctest"] + page["html"],
        "pdf": page["pdf (latex + xelatex, by size)"],
        "epub": page["epub"],
        # the replay compiles no PDF when its LaTeX equals the pdf step's (tests/publish/test_readthedocs.py)
        "rtd": page["html"] + page["epub"],
    }
    steps = {}
    for s in ci_run["steps"]:
        name, total = s["step"], s["seconds"]
        commands = s.get("commands", total)
        if name in per_lab_page:
            per_lab = min(per_lab_page[name], commands / now)
        elif name in ("py", "upstream"):
            per_lab = commands / now  # every test second counted as growing with the labs: errs high
        elif name == "browser":
            per_lab = commands / (now + 3)  # the lab pages, the two handbooks and the home page are tested
        else:
            per_lab = 0.0  # setup, lint, the mutation sample (bounded in time): they do not grow with the labs
        extra = distributed_labs * LAUNCHES.get(name, 0) * launch
        projected = total + per_lab * (labs - now) + extra
        steps[name] = {"now": total, "per_lab": per_lab, "projected": projected}
        if "cpu" in s:  # the step's CPU seconds, grown by the same factor
            steps[name]["cpu"] = s["cpu"]
            steps[name]["cpu projected"] = s["cpu"] * projected / total if total else 0.0

    def wall(key: str) -> float:
        setup = sum(v.get(key, v["now"]) for k, v in steps.items() if k in ("debian-packages", "tox"))
        total = setup
        for lanes in STAGES:
            seconds = [sum(steps[e].get(key, 0.0) for e in lane if e in steps) for lane in lanes]
            # a stage takes its slowest lane; counted in CPU seconds, at least the stage's work over the cores
            total += max(max(seconds), sum(seconds) / CORES if key.startswith("cpu") else 0.0)
        return total

    return {
        "labs": {"now": now, "projected": labs, "distributed": distributed_labs},
        "launch": launch,
        "launches_per_distributed_lab": LAUNCHES,
        "per_starter": grown["starters"]["summary"]["median"],
        # CI seconds one more lab adds: its page in every book step, its tests and starter (py, upstream)
        "per_lab_page": sum(steps[k]["per_lab"] for k in ("docs", "pdf", "epub", "rtd", "browser") if k in steps),
        "per_lab_tests": sum(steps[k]["per_lab"] for k in ("py", "upstream") if k in steps),
        "steps": steps,
        "wall": {"now": wall("now"), "measured": ci_run["wall"], "projected": wall("projected")},
        # On an idle machine: each stage's slowest lane in CPU seconds, or its CPU seconds over the cores
        # if more (errs high for py, whose starters run beside its tests)
        "idle": {"now": wall("cpu"), "projected": wall("cpu projected")}
        if all("cpu" in v for k, v in steps.items() if k not in ("debian-packages", "tox"))
        else None,
    }


def print_growth(grown: dict) -> None:
    print("\nGrowth: seconds per page and builder (mean of the lab pages; the other pages summed)")
    for label, row in grown["per_lab_page"].items():
        print(f"  {label:<28} " + "  ".join(f"{k} {v:.2f}" for k, v in row.items()))
    summary = grown["starters"]["summary"]
    print(f"  starters: {summary['starters']}, median {summary['median']:.2f} s, total {summary['total']:.1f} s")
    sp = grown["spawn"]
    print(f"  two-process gloo launch: median {sp['launch (2 processes, median)']:.2f} s")


def print_model(m: dict) -> None:
    print(f"\nCI model: {m['labs']['now']} labs now, projected to {m['labs']['projected']}")
    for name, row in m["steps"].items():
        print(f"  {name:<16} {row['now']:>7.1f} s  + {row['per_lab']:>5.2f} s/lab  -> {row['projected']:>7.1f} s")
    w = m["wall"]
    print(f"  wall: model {w['now']:.0f} s (measured {w['measured']:.0f} s) -> {w['projected']:.0f} s")
    if m["idle"]:
        print(f"  idle machine (lane CPU seconds): {m['idle']['now']:.0f} s -> {m['idle']['projected']:.0f} s")


def print_book(results: dict) -> None:
    print("\nBook build (scratch copy of the committed tree)")
    for name, value in results.items():
        unit = "" if name == "pages" else " s"
        print(f"  {name:<40} {value:>8.2f}{unit}" if name != "pages" else f"  {name:<40} {value:>8d}")
    noop = results["no-op rebuild"]
    print(f"  one lab page rebuild / no-op rebuild: {results['rebuild after: touch one lab page'] / noop:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="InfraLens benchmarks")
    parser.add_argument("part", nargs="*", help="library, book, growth, ci (default: all four)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", type=Path, default=ROOT / "_build" / "bench.json")
    parser.add_argument("--ci-dir", type=Path, default=ROOT / "_build" / "ci", help="_build/ci of a .ci/run")
    parser.add_argument("--labs", type=int, default=70, help="project CI to this many labs")
    parser.add_argument("--distributed-labs", type=int, default=19, help="of them, labs with multi-process examples")
    parser.add_argument(
        "--merge", type=Path, help="keep the parts not measured now from this file (each has its record)"
    )
    args = parser.parse_args(argv)
    args.part = args.part or ["library", "book", "growth", "ci"]
    if set(args.part) - {"library", "book", "growth", "ci"}:
        parser.error(f"part must be library, book, growth or ci, e.g. 'library'; got {' '.join(args.part)}")
    if args.labs < 1 or not 0 <= args.distributed_labs <= args.labs:
        parser.error(
            f"need 0 <= --distributed-labs <= --labs and --labs >= 1; got {args.distributed_labs}, {args.labs}"
        )
    results = json.loads(args.merge.read_text()) if args.merge else {}
    results.pop("meta", None)  # the hand-written sentence of the first measurements
    results["modules"] = MODULES
    records = results.setdefault("measured", {})
    for part in args.part:
        if part == "ci":
            results["ci"] = ci(args.ci_dir)
            records["ci"] = results["ci"].pop("measured")
            continue
        records[part] = measured()
        if part == "library":
            records[part]["rounds"] = args.rounds
            results["library"] = library(args.rounds)
            print_library(results["library"])
        elif part == "book":
            results["book"] = book()
            print_book(results["book"])
        elif part == "growth":
            results["growth"] = growth()
            print_growth(results["growth"])
    if "growth" in results and "ci" in results:
        size = {k: records["ci"][k] for k in ("labs", "pages", "starters")}  # the book CI's steps timed
        results["model"] = model(results["ci"], results["growth"], size, args.labs, args.distributed_labs)
        print_model(results["model"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
