"""The ``infralens`` command: the calculators from a shell.

Every subcommand prints a small table, or one JSON object with ``--json``.
Bad input exits with status 2 and one line naming the argument and a valid
value; there is never a traceback for it.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict

from infralens import __version__
from infralens.calculators import (
    DTYPE_BYTES,
    attention_cost,
    cfg_cost,
    kv_cache_bytes,
    latent_tokens,
    weight_memory,
)
from infralens.diffusion import LATENT_FAMILIES

__all__ = ["build_parser", "main"]

SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9, "G": 1e9, "T": 1e12}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``infralens latent: error: ...`` and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _count(text: str) -> float:
    """A positive count such as ``8e9``, ``8B``, ``70B`` or ``1.5M``."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([KMBGT]?)\s*", text, re.I)
    if not m:
        raise argparse.ArgumentTypeError(f"expected a count such as 8e9 or 8B; got {text!r}")
    return float(m.group(1)) * SUFFIXES.get(m.group(2).upper(), 1)


def _size(value: float) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if value >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} B"


def _table(rows: list[tuple[str, object]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def _latent(args) -> tuple[dict, list]:
    t = latent_tokens(args.family, height=args.height, width=args.width, frames=args.frames, batch=args.batch)
    data = asdict(t)
    rows = [("family", t.family), ("latent shape", t.latent), ("patch (F, H, W)", t.patch)]
    rows += [("token grid", " x ".join(map(str, t.grid))), ("tokens per sample", f"{t.tokens:,}")]
    return data, rows


def _attention(args) -> tuple[dict, list]:
    c = attention_cost(tokens=args.tokens, heads=args.heads, head_dim=args.head_dim, batch=args.batch, dtype=args.dtype)
    data = asdict(c)
    rows = [("tokens", f"{c.tokens:,}"), ("heads x head_dim", f"{c.heads} x {c.head_dim}"), ("batch", c.batch)]
    rows += [
        (f"score matrix ({c.dtype}), per layer", _size(c.score_bytes)),
        ("FLOPs (QK^T + PV), per layer", f"{c.flops:.3e}"),
    ]
    return data, rows


def _cfg(args) -> tuple[dict, list]:
    c = cfg_cost(steps=args.steps, guidance_scale=args.guidance_scale)
    rows = [("steps", c.steps), ("guidance_scale", c.guidance_scale), ("guided (scale > 1)", c.guided)]
    rows += [("denoiser calls", c.calls), ("cost multiplier", f"{c.multiplier:g}x")]
    return asdict(c), rows


def _kv(args) -> tuple[dict, list]:
    total = kv_cache_bytes(
        layers=args.layers,
        kv_heads=args.kv_heads,
        head_dim=args.head_dim,
        seq=args.seq,
        batch=args.batch,
        dtype=args.dtype,
    )
    data = {k: getattr(args, k) for k in ("layers", "kv_heads", "head_dim", "seq", "batch", "dtype")} | {"bytes": total}
    per_token = total / (args.seq * args.batch)
    return data, [("KV cache", _size(total)), ("per token", _size(per_token)), ("bytes", f"{total:,.0f}")]


def _weights(args) -> tuple[dict, list]:
    m = weight_memory(params=args.params, dtype=args.dtype, group_size=args.group_size)
    data = asdict(m) | {"total_bytes": m.total_bytes}
    rows = [("params", f"{m.params:,.0f}"), ("dtype", m.dtype), ("weights", _size(m.weight_bytes))]
    if m.group_size:
        rows.append((f"scales (fp16 per {m.group_size})", _size(m.scale_bytes)))
    rows.append(("total", _size(m.total_bytes)))
    return data, rows


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="infralens", description="Sizing calculators from the InfraLens library.")
    parser.add_argument("--version", action="version", version=f"infralens {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")
    dtypes = sorted(DTYPE_BYTES, key=list(DTYPE_BYTES).index)

    p = sub.add_parser("latent", help="latent shape and transformer tokens of a request")
    p.add_argument("family", help=f"one of: {', '.join(LATENT_FAMILIES)}")
    p.add_argument("--height", type=int, required=True, help="pixels")
    p.add_argument("--width", type=int, required=True, help="pixels")
    p.add_argument("--frames", type=int, help="video families: frames, 1 + 4k for Wan")
    p.add_argument("--batch", type=int, default=1)
    p.set_defaults(run=_latent)

    p = sub.add_parser("attention", help="score-matrix memory and FLOPs of naive attention, per layer")
    p.add_argument("--tokens", type=int, required=True)
    p.add_argument("--heads", type=int, required=True)
    p.add_argument("--head-dim", type=int, required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="bf16", help=f"one of: {', '.join(dtypes)} (default bf16)")
    p.set_defaults(run=_attention)

    p = sub.add_parser("cfg", help="denoiser calls and the cost multiplier of classifier-free guidance")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--guidance-scale", type=float, help="guidance is on when > 1, as in diffusers")
    p.set_defaults(run=_cfg)

    p = sub.add_parser("kv-cache", help="KV-cache bytes of a decoder-only transformer")
    p.add_argument("--layers", type=int, required=True)
    p.add_argument("--kv-heads", type=int, required=True)
    p.add_argument("--head-dim", type=int, required=True)
    p.add_argument("--seq", type=int, required=True, help="tokens")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dtype", default="bf16", help=f"one of: {', '.join(dtypes)} (default bf16)")
    p.set_defaults(run=_kv)

    p = sub.add_parser("weights", help="weight memory in a number format, with int4 group scales")
    p.add_argument("--params", type=_count, required=True, help="e.g. 8e9 or 8B")
    p.add_argument("--dtype", required=True, help=f"one of: {', '.join(dtypes)}")
    p.add_argument("--group-size", type=int, help="weights per fp16 scale (int4 default: 128)")
    p.set_defaults(run=_weights)

    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        data, rows = args.run(args)
    except ValueError as err:  # the library names the argument, the rule and a valid value
        print(f"infralens {args.command}: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(data) if args.json else _table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
