"""The ``infralens`` command: the calculators of :mod:`infralens.calculators` from a shell.

Every subcommand prints a small table, or one JSON object with ``--json``.
Bad input exits with status 2 and one line, ``infralens <sub>: error: ...``,
that names the argument and a valid value; never a traceback. The line comes
from argparse (a malformed or missing argument) or from the library's
``ValueError`` (a value its rules refuse, such as 80 frames for Wan).
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict

from infralens import __version__
from infralens.calculators import (
    DEFAULT_INT4_GROUP,
    DTYPE_BYTES,
    attention_cost,
    cfg_cost,
    kv_cache_bytes,
    latent_tokens,
    weight_memory,
)
from infralens.diffusion import LATENT_FAMILIES

__all__ = ["build_parser", "main"]

HELP_WIDTH = 76
"""Help is wrapped at a fixed width, so the page that shows it cannot drift."""

_SUFFIXES = {"": 1, "K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``infralens latent: error: ...; e.g. ...``, with exit status 2."""

    def __init__(self, *args, example: str | None = None, **kwargs):
        kwargs.setdefault(
            "formatter_class",
            functools.partial(argparse.RawDescriptionHelpFormatter, width=HELP_WIDTH, max_help_position=28),
        )
        if example:
            kwargs.setdefault("epilog", f"example:\n  {example}")
        super().__init__(*args, **kwargs)
        self.example = example

    def error(self, message: str):
        hint = f"; e.g. {self.example}" if self.example and "e.g." not in message else ""
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")


def _positive(example: str) -> Callable[[str], int]:
    """An argparse type: a whole number >= 1; the message shows ``example``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= 1, e.g. {example}; got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be >= 1, e.g. {example}; got {value}")
        return value

    return parse


def _finite(example: str) -> Callable[[str], float]:
    """An argparse type: a finite number."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, e.g. {example}; got {text!r}")
        return value

    return parse


def _count(text: str) -> float:
    """A parameter count such as ``8e9``, ``8B``, ``70B`` or ``1.5M``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e\+?[0-9]+)?)\s*([KMBGT]?)\s*", text, re.IGNORECASE)
    value = float(m.group(1)) * _SUFFIXES[m.group(2).upper()] if m else math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a count > 0 such as 8e9 or 8B, e.g. --params 8B; got {text!r}")
    return value


def _size(value: float) -> str:
    """Bytes in binary units: ``1.00 GiB``."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:,.2f} {unit}"
    return f"{value:g} B"


def _table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _latent(args) -> tuple[dict, list]:
    t = latent_tokens(args.family, height=args.height, width=args.width, frames=args.frames, batch=args.batch)
    data = {"height": args.height, "width": args.width, "frames": args.frames, "batch": args.batch} | asdict(t)
    rows = [("family", t.family), ("latent shape", t.latent)]
    rows.append(("latent axes", "(B, C, F', H', W')" if len(t.latent) == 5 else "(B, C, H', W')"))
    rows += [("cells per token", " x ".join(map(str, t.patch))), ("token grid", " x ".join(map(str, t.grid)))]
    rows += [("tokens per sample", f"{t.tokens:,}"), ("counted", t.counted)]
    return data, rows


def _attention(args) -> tuple[dict, list]:
    c = attention_cost(tokens=args.tokens, heads=args.heads, head_dim=args.head_dim, batch=args.batch, dtype=args.dtype)
    rows = [("tokens N", f"{c.tokens:,}"), ("heads x head_dim", f"{c.heads} x {c.head_dim}"), ("batch", c.batch)]
    rows += [
        (f"score matrices ({c.dtype}), per layer", _size(c.score_bytes)),
        ("FLOPs QK^T + PV, per layer", f"{c.flops:.3e}"),
    ]
    return asdict(c), rows


def _cfg(args) -> tuple[dict, list]:
    c = cfg_cost(steps=args.steps, guidance_scale=args.guidance_scale)
    rows = [("steps", c.steps), ("guidance_scale", c.guidance_scale), ("guided (scale > 1)", c.guided)]
    rows += [("denoiser calls", c.calls), ("cost multiplier", f"{c.multiplier:g}x")]
    return asdict(c), rows


def _kv(args) -> tuple[dict, list]:
    names = ("layers", "kv_heads", "head_dim", "seq", "batch", "dtype")
    total = kv_cache_bytes(**{k: getattr(args, k) for k in names})
    data = {k: getattr(args, k) for k in names} | {"bytes": total}
    per_token = total / (args.seq * args.batch)
    return data, [("KV cache", _size(total)), ("per token", _size(per_token)), ("bytes", f"{total:,.0f}")]


def _weights(args) -> tuple[dict, list]:
    m = weight_memory(params=args.params, dtype=args.dtype, group_size=args.group_size, zero_points=args.zero_points)
    data = asdict(m) | {"total_bytes": m.total_bytes}
    rows = [("params", f"{m.params:,.0f}"), ("dtype", m.dtype), ("weights", _size(m.weight_bytes))]
    if m.group_size:
        what = "scale + zero point" if m.zero_points else "scale"
        rows.append((f"16-bit {what} per {m.group_size}", _size(m.scale_bytes)))
    rows.append(("total", _size(m.total_bytes)))
    return data, rows


def build_parser() -> argparse.ArgumentParser:
    """The ``infralens`` argument parser: one subcommand per calculator."""
    parser = _Parser(
        prog="infralens",
        description="Sizing calculators of the InfraLens handbook: the functions its pages use.",
        example="infralens latent wan2.1 --height 720 --width 1280 --frames 81",
    )
    parser.add_argument("--version", action="version", version=f"infralens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    dtypes = ", ".join(DTYPE_BYTES)

    def add(name: str, summary: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=summary, description=summary[0].upper() + summary[1:] + ".", example=example)

    def dtype_option(p: argparse.ArgumentParser, help: str, **kwargs: object) -> None:
        p.add_argument("--dtype", type=str.lower, choices=list(DTYPE_BYTES), metavar="DTYPE", help=help, **kwargs)

    p = add(
        "latent",
        "latent shape and transformer tokens of a request",
        f"{parser.prog} latent flux --height 1024 --width 1024",
    )
    p.add_argument(
        "family",
        type=str.lower,
        choices=list(LATENT_FAMILIES),
        metavar="FAMILY",
        help=f"one of: {', '.join(LATENT_FAMILIES)}",
    )
    p.add_argument("--height", type=_positive("--height 720"), required=True, help="pixels")
    p.add_argument("--width", type=_positive("--width 1280"), required=True, help="pixels")
    p.add_argument("--frames", type=_positive("--frames 81"), help="video families only (Wan: 1 + 4k)")
    p.add_argument("--batch", type=_positive("--batch 1"), default=1, help="samples (default 1)")
    p.set_defaults(run=_latent)

    p = add(
        "attention",
        "score-matrix memory and FLOPs of naive attention, per layer",
        f"{parser.prog} attention --tokens 75600 --heads 40 --head-dim 128",
    )
    p.add_argument("--tokens", type=_positive("--tokens 75600"), required=True, help="sequence length N")
    p.add_argument("--heads", type=_positive("--heads 40"), required=True, help="attention heads h")
    p.add_argument("--head-dim", type=_positive("--head-dim 128"), required=True, help="channels per head d")
    p.add_argument("--batch", type=_positive("--batch 1"), default=1, help="samples B (default 1)")
    dtype_option(p, f"scores' format: {dtypes} (default bf16)", default="bf16")
    p.set_defaults(run=_attention)

    p = add(
        "cfg",
        "denoiser calls and the cost multiplier of classifier-free guidance",
        f"{parser.prog} cfg --steps 50 --guidance-scale 5",
    )
    p.add_argument("--steps", type=_positive("--steps 50"), required=True, help="denoising steps S")
    p.add_argument(
        "--guidance-scale",
        type=_finite("--guidance-scale 5"),
        help="guidance runs when > 1, as in diffusers (default: none)",
    )
    p.set_defaults(run=_cfg)

    p = add(
        "kv-cache",
        "KV-cache bytes of a decoder-only transformer",
        f"{parser.prog} kv-cache --layers 32 --kv-heads 8 --head-dim 128 --seq 8192",
    )
    p.add_argument("--layers", type=_positive("--layers 32"), required=True, help="transformer layers L")
    p.add_argument("--kv-heads", type=_positive("--kv-heads 8"), required=True, help="key/value heads K")
    p.add_argument("--head-dim", type=_positive("--head-dim 128"), required=True, help="channels per head d")
    p.add_argument("--seq", type=_positive("--seq 8192"), required=True, help="tokens in the cache S")
    p.add_argument("--batch", type=_positive("--batch 1"), default=1, help="sequences B (default 1)")
    dtype_option(p, f"{dtypes} (default bf16)", default="bf16")
    p.set_defaults(run=_kv)

    p = add(
        "weights",
        "weight memory in a number format, with int4 group scales",
        f"{parser.prog} weights --params 8B --dtype int4",
    )
    p.add_argument("--params", type=_count, required=True, help="parameters P, e.g. 8e9 or 8B")
    dtype_option(p, dtypes, required=True)
    p.add_argument(
        "--group-size",
        type=_positive(f"--group-size {DEFAULT_INT4_GROUP}"),
        help=f"weights per 16-bit scale (int4 default: {DEFAULT_INT4_GROUP})",
    )
    p.add_argument("--zero-points", action="store_true", help="also a 16-bit zero point per group")
    p.set_defaults(run=_weights)

    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``infralens`` with ``argv`` (default: the command line); return the exit status.

    :param argv: the arguments after the program name.
    :returns: 0 on success, 2 for bad input (one line on stderr).
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as done:  # --help, --version, or an argparse error already printed
        return 0 if done.code is None else done.code if isinstance(done.code, int) else 2
    try:
        data, rows = args.run(args)
    except ValueError as err:  # the library names the argument, the rule and a valid value
        print(f"{parser.prog} {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(data) if args.json else _table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
