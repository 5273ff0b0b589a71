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
    tmp = Path(tempfile.mkdtemp(prefix="infralens-bench-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
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


def print_book(results: dict) -> None:
    print("\nBook build (scratch copy of the committed tree)")
    for name, value in results.items():
        unit = "" if name == "pages" else " s"
        print(f"  {name:<40} {value:>8.2f}{unit}" if name != "pages" else f"  {name:<40} {value:>8d}")
    noop = results["no-op rebuild"]
    print(f"  one lab page rebuild / no-op rebuild: {results['rebuild after: touch one lab page'] / noop:.2f}x")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="InfraLens benchmarks")
    parser.add_argument("part", nargs="*", help="library, book, or both (the default)")
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--json", type=Path, default=ROOT / "_build" / "bench.json")
    args = parser.parse_args(argv)
    args.part = args.part or ["library", "book"]
    if set(args.part) - {"library", "book"}:
        parser.error(f"part must be library or book, e.g. 'library'; got {' '.join(args.part)}")
    results = {}
    if "library" in args.part:
        results["library"] = library(args.rounds)
        print_library(results["library"])
    if "book" in args.part:
        results["book"] = book()
        print_book(results["book"])
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    results["meta"] = (
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, {args.rounds} interleaved rounds."
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(f"\nJSON: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
