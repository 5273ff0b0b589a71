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
    DIFFUSERS_CFG_DEFAULTS,
    SCORE_DTYPES,
    attention_cost,
    cfg_cost,
    kv_cache_bytes,
    latent_tokens,
    weight_memory,
)
from infralens.core import DTYPE_BYTES, TORCH_NAMES, dtype_name
from infralens.diffusion import LATENT_FAMILIES
from infralens.distributed import (
    COLLECTIVES,
    LINKS,
    ZERO_STAGES,
    bus_bandwidth,
    collective_terms,
    collective_time,
    pipeline_bubble,
    zero_bytes_per_rank,
)
from infralens.transformer import llama_param_breakdown

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
        ("FLOPs QK^T + PV, per layer", f"{c.flops:.3e}"),
        (f"naive: scores ({c.dtype}), per layer", _size(c.score_bytes)),
        ("naive: scores + softmax, peak", _size(c.naive_peak_bytes)),
        ("fused kernels: scores stored", "none (fused SDPA, FlashAttention, SageAttention)"),
    ]
    return asdict(c), rows


def _cfg(args) -> tuple[dict, list]:
    given = {k: getattr(args, k) for k in ("steps", "guidance_scale", "true_cfg_scale") if getattr(args, k) is not None}
    if args.pipeline is None and "steps" not in given:
        raise ValueError("give --steps or --pipeline, e.g. --steps 50 or --pipeline FluxPipeline")
    c = cfg_cost(**(dict(DIFFUSERS_CFG_DEFAULTS[args.pipeline]) if args.pipeline else {}) | given)
    switch = "true_cfg_scale" if c.true_cfg_scale is not None else "guidance_scale"
    rows = [("pipeline", args.pipeline or "-"), ("steps", c.steps), ("guidance_scale", c.guidance_scale)]
    if c.true_cfg_scale is not None:
        rows.append(("true_cfg_scale", c.true_cfg_scale))
    rows += [
        (f"guided ({switch} > 1)", c.guided),
        ("denoiser calls", c.calls),
        ("cost multiplier", f"{c.multiplier:g}x"),
    ]
    return {"pipeline": args.pipeline} | asdict(c), rows


def _kv(args) -> tuple[dict, list]:
    names = ("layers", "kv_heads", "head_dim", "seq", "batch", "dtype")
    total = kv_cache_bytes(**{k: getattr(args, k) for k in names})
    data = {k: getattr(args, k) for k in names} | {"dtype": dtype_name(args.dtype), "bytes": total}
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


# `params`: the fields of a transformers config.json the count reads, each with its option
_PARAM_OPTIONS = (  # config field, flag, symbol, example value, help
    ("vocab_size", "vocab-size", "V", "32000", "vocabulary V"),
    ("hidden_size", "hidden-size", "D", "4096", "model width d"),
    ("intermediate_size", "intermediate-size", "F", "11008", "FFN width f"),
    ("num_hidden_layers", "layers", "L", "32", "decoder layers L"),
    ("num_attention_heads", "heads", "H", "32", "query heads h"),
    ("num_key_value_heads", "kv-heads", "H_KV", "8", "key/value heads (default: h)"),
    ("head_dim", "head-dim", "DH", "128", "channels per head (default: d / h)"),
)
_PARAM_FIELDS = {key: f"--{flag}" for key, flag, *_ in _PARAM_OPTIONS} | {
    "tie_word_embeddings": "--tie-word-embeddings"
}


def _read_config(path: str) -> dict:
    """The fields of a transformers ``config.json`` that :func:`_params` reads (others are ignored)."""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) else f"not JSON ({err})"
        raise ValueError(
            f"--config {path}: {reason}; give a transformers config.json, e.g. --config config.json"
        ) from None
    if not isinstance(config, dict):
        raise ValueError(f"--config {path}: expected a JSON object of config fields such as hidden_size")
    return {k: config[k] for k in _PARAM_FIELDS if config.get(k) is not None}


def _params(args) -> tuple[dict, list]:
    fields = _read_config(args.config) if args.config else {}
    fields |= {k: getattr(args, k) for k in _PARAM_FIELDS if getattr(args, k) is not None}
    fields.setdefault("num_key_value_heads", fields.get("num_attention_heads"))  # LlamaConfig's default
    missing = [
        flag for k, flag in _PARAM_FIELDS.items() if k not in fields and k not in ("head_dim", "tie_word_embeddings")
    ]
    if missing:
        raise ValueError(f"{missing[0]} is required (or a --config that has it); e.g. infralens {_PARAMS_EXAMPLE}")
    p = llama_param_breakdown(**fields)
    data = fields | asdict(p) | {"per_layer": p.per_layer, "total": p.total}
    head = "tied to the embeddings (0)" if fields.get("tie_word_embeddings") else f"{p.head:,}"
    rows = [("embeddings", f"{p.embeddings:,}"), ("attention (all layers)", f"{p.attention:,}")]
    rows += [("FFN (all layers)", f"{p.ffn:,}"), ("norms", f"{p.norms:,}"), ("head", head)]
    rows += [("per layer", f"{p.per_layer:,}"), ("FFN share of a layer", f"{p.ffn_share_of_block:.1%}")]
    rows += [("total", f"{p.total:,}"), ("weights in bf16", _size(2 * p.total))]
    return data, rows


_PARAMS_EXAMPLE = "params --vocab-size 32000 --hidden-size 4096 --intermediate-size 11008 --layers 32 --heads 32"


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
        """A subcommand; ``example`` is its command line after the program name."""
        description = summary[0].upper() + summary[1:] + "."
        return sub.add_parser(name, help=summary, description=description, example=f"{parser.prog} {example}")

    def whole(p: argparse.ArgumentParser, *specs: tuple[str, str, str], **kwargs: object) -> None:
        """Whole-number options ``--name`` (>= 1) from ``(name, example, help)``; required unless a default is given."""
        kwargs.setdefault("required", "default" not in kwargs)
        for name, example, text in specs:
            p.add_argument(f"--{name}", type=_positive(f"--{name} {example}"), help=text, **kwargs)

    def dtype_option(p: argparse.ArgumentParser, help: str, **kwargs: object) -> None:
        names = [*DTYPE_BYTES, *TORCH_NAMES]  # one vocabulary: bf16 and bfloat16 mean the same
        p.add_argument("--dtype", type=str.lower, choices=names, metavar="DTYPE", help=help, **kwargs)

    p = add("latent", "latent shape and transformer tokens of a request", "latent flux --height 1024 --width 1024")
    p.add_argument(
        "family",
        type=str.lower,
        choices=list(LATENT_FAMILIES),
        metavar="FAMILY",
        help=f"one of: {', '.join(LATENT_FAMILIES)}",
    )
    whole(p, ("height", "720", "pixels"), ("width", "1280", "pixels"))
    whole(p, ("frames", "81", "video families only (Wan: 1 + 4k)"), required=False)
    whole(p, ("batch", "1", "samples (default 1)"), default=1)
    p.set_defaults(run=_latent)

    p = add(
        "attention",
        "FLOPs of self-attention per layer, and the scores a naive kernel stores",
        "attention --tokens 75600 --heads 40 --head-dim 128",
    )
    whole(p, ("tokens", "75600", "sequence length N"), ("heads", "40", "attention heads h"))
    whole(p, ("head-dim", "128", "channels per head d"))
    whole(p, ("batch", "1", "samples B (default 1)"), default=1)
    score_names = [*SCORE_DTYPES, *(t for t, short in TORCH_NAMES.items() if short in SCORE_DTYPES)]
    p.add_argument(
        "--dtype",
        type=str.lower,
        choices=score_names,
        metavar="DTYPE",
        default="bf16",
        help=f"scores' format: {', '.join(SCORE_DTYPES)} (default bf16)",
    )
    p.set_defaults(run=_attention)

    p = add(
        "cfg", "denoiser calls and the cost multiplier of classifier-free guidance", "cfg --steps 50 --guidance-scale 5"
    )
    p.add_argument(
        "--pipeline",
        choices=list(DIFFUSERS_CFG_DEFAULTS),
        metavar="PIPELINE",
        help=f"start from a diffusers pipeline's defaults: {', '.join(DIFFUSERS_CFG_DEFAULTS)}",
    )
    whole(p, ("steps", "50", "denoising steps S (required without --pipeline)"), required=False)
    guidance_help = "guidance runs when > 1, as in diffusers (default: none)"
    p.add_argument("--guidance-scale", type=_finite("--guidance-scale 5"), help=guidance_help)
    true_help = "distilled-guidance pipelines (FLUX, HunyuanVideo): CFG runs when > 1, guidance-scale is free"
    p.add_argument("--true-cfg-scale", type=_finite("--true-cfg-scale 4"), help=true_help)
    p.set_defaults(run=_cfg)

    p = add(
        "kv-cache",
        "KV-cache bytes of a decoder-only transformer",
        "kv-cache --layers 32 --kv-heads 8 --head-dim 128 --seq 8192",
    )
    whole(p, ("layers", "32", "transformer layers L"), ("kv-heads", "8", "key/value heads K"))
    whole(p, ("head-dim", "128", "channels per head d"), ("seq", "8192", "tokens in the cache S"))
    whole(p, ("batch", "1", "sequences B (default 1)"), default=1)
    dtype_option(p, f"{dtypes} (default bf16)", default="bf16")
    p.set_defaults(run=_kv)

    p = add("weights", "weight memory in a number format, with int4 group scales", "weights --params 8B --dtype int4")
    p.add_argument("--params", type=_count, required=True, help="parameters P, e.g. 8e9 or 8B")
    dtype_option(p, dtypes, required=True)
    group_help = f"weights per 16-bit scale (int4 default: {DEFAULT_INT4_GROUP})"
    whole(p, ("group-size", str(DEFAULT_INT4_GROUP), group_help), required=False)
    p.add_argument("--zero-points", action="store_true", help="also a 16-bit zero point per group")
    p.set_defaults(run=_weights)

    p = add("params", "parameters of a Llama-style decoder from its config fields", _PARAMS_EXAMPLE)
    p.add_argument("--config", metavar="PATH", help="a transformers config.json; the options below override it")
    for key, flag, symbol, example, text in _PARAM_OPTIONS:
        p.add_argument(f"--{flag}", dest=key, metavar=symbol, type=_positive(f"--{flag} {example}"), help=text)
    p.add_argument(
        "--tie-word-embeddings",
        dest="tie_word_embeddings",
        action="store_const",
        const=True,
        help="the output head reuses the embedding table",
    )
    p.set_defaults(run=_params)

    _add_distributed(add, whole)

    for p in sub.choices.values():
        p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return parser


# --- distributed track: training-state, collective, pipeline -------------------------------------------------

_BYTE_UNITS = {"": 1, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "KI": 2**10, "MI": 2**20, "GI": 2**30, "TI": 2**40}


def _bytes(text: str) -> float:
    """A size in bytes such as ``2e9``, ``2GB``, ``512MiB`` or ``1.5G`` (decimal K/M/G/T, binary Ki/Mi/Gi/Ti)."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e\+?[0-9]+)?)\s*([KMGT]i?)?B?\s*", text, re.IGNORECASE)
    value = float(m.group(1)) * _BYTE_UNITS[(m.group(2) or "").upper()] if m else math.nan
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a size in bytes such as 2e9, 2GB or 512MiB, e.g. 2GB; got {text!r}")
    return value


def _gb(value: float) -> str:
    """Decimal gigabytes, and GiB beside them: the two units a reader meets."""
    return f"{value / 1e9:,.2f} GB ({value / 2**30:,.2f} GiB)"


def _training_state(args) -> tuple[dict, list]:
    stages = ZERO_STAGES if args.stage is None else (args.stage,)
    sizes = dict(param_bytes=args.param_bytes, grad_bytes=args.grad_bytes, optimizer_bytes=args.optimizer_bytes)
    per_rank = {s: zero_bytes_per_rank(args.params, args.world_size, s, **sizes) for s in stages}
    total = args.param_bytes + args.grad_bytes + args.optimizer_bytes
    convention = f"{args.param_bytes:g} + {args.grad_bytes:g} + {args.optimizer_bytes:g} = {total:g} bytes/param"
    data = {"params": args.params, "world_size": args.world_size} | sizes
    data["bytes_per_rank"] = {str(s): b for s, b in per_rank.items()}
    rows = [("params", f"{args.params:,.0f}"), ("data-parallel ranks", args.world_size), ("convention", convention)]
    rows += [(f"ZeRO-{s} per rank", _gb(b)) for s, b in per_rank.items()]
    return data, rows


def _collective(args) -> tuple[dict, list]:
    link = LINKS[args.link]
    alpha = link.alpha if args.alpha is None else args.alpha
    bandwidth = link.bandwidth if args.bandwidth is None else args.bandwidth
    if bandwidth <= 0:
        raise ValueError(f"bandwidth must be > 0 bytes per second, e.g. --bandwidth 50GB; got {bandwidth:g}")
    terms = collective_terms(args.op, args.world_size, algorithm=args.algorithm)
    seconds = collective_time(
        args.op, args.bytes, args.world_size, alpha=alpha, beta=1 / bandwidth, algorithm=terms.algorithm
    )
    latency = terms.steps * alpha
    data = {
        "collective": args.op,
        "algorithm": terms.algorithm,
        "world_size": args.world_size,
        "bytes": args.bytes,
        "volume_bytes": terms.volume * args.bytes,
        "steps": terms.steps,
        "alpha": alpha,
        "bandwidth": bandwidth,
        "link": args.link if args.alpha is None and args.bandwidth is None else "custom",
        "seconds": seconds,
        "latency_share": latency / seconds if seconds else 0.0,
    }
    if seconds:
        data["algbw"], data["busbw"] = bus_bandwidth(args.op, args.bytes, seconds, args.world_size)
    rows = [
        ("collective", f"{args.op} ({terms.algorithm}), {args.world_size} ranks"),
        ("message N", f"{args.bytes:,.0f} bytes"),
        (
            "critical path" if terms.algorithm == "tree" else "sent per rank",
            f"{terms.volume * args.bytes:,.0f} bytes ({terms.volume:g} N)",
        ),
        ("link", f"{data['link']}: alpha {alpha * 1e6:g} us/step, {bandwidth / 1e9:g} GB/s"),
        ("time", f"{seconds * 1e6:,.1f} us = {terms.steps} x alpha + {terms.volume:g} N / bandwidth"),
        ("latency share", f"{data['latency_share']:.1%}"),
    ]
    if seconds:
        rows += [("algbw, busbw", f"{data['algbw'] / 1e9:,.2f} GB/s, {data['busbw'] / 1e9:,.2f} GB/s")]
    return data, rows


def _pipeline(args) -> tuple[dict, list]:
    p, m = args.stages, args.micro_batches
    wall = pipeline_bubble(p, m, relative_to="wall")
    ideal = pipeline_bubble(p, m, relative_to="ideal")
    data = {"stages": p, "micro_batches": m, "bubble_wall": wall, "bubble_ideal": ideal}
    rows = [
        ("stages p, micro-batches m", f"{p}, {m}"),
        ("slots per pass", f"m + p - 1 = {m + p - 1}"),
        ("bubble / wall time", f"(p-1)/(m+p-1) = {wall:.2%}"),
        ("bubble / ideal compute", f"(p-1)/m = {ideal:.2%}"),
    ]
    return data, rows


def _add_distributed(add: Callable[..., argparse.ArgumentParser], whole: Callable[..., None]) -> None:
    """The distributed track's subcommands: training state by ZeRO stage, a collective's cost, a pipeline's bubble.

    ``add`` and ``whole`` are :func:`build_parser`'s helpers for a subcommand and its whole-number options.
    """
    p = add(
        "training-state",
        "persistent bytes per rank of weights, gradients and optimizer state by ZeRO stage",
        "training-state --params 7B --world-size 8",
    )
    p.add_argument("--params", type=_count, required=True, help="parameters P, e.g. 7e9 or 7B")
    whole(p, ("world-size", "8", "data-parallel ranks"))
    p.add_argument("--stage", type=int, choices=ZERO_STAGES, metavar="S", help="one ZeRO stage 0-3 (default: all)")
    for name, default, what in (
        ("param", 2, "bytes per weight (bf16: 2)"),
        ("grad", 2, "bytes per gradient (bf16: 2)"),
        ("optimizer", 12, "optimizer bytes per parameter (fp32 master + Adam m, v: 12)"),
    ):
        p.add_argument(f"--{name}-bytes", type=_finite(f"--{name}-bytes {default}"), default=default, help=what)
    p.set_defaults(run=_training_state)

    p = add(
        "collective",
        "bytes each rank sends and the alpha-beta time of one collective",
        "collective all_reduce --bytes 2GB --world-size 8 --link network",
    )
    p.add_argument("op", choices=list(COLLECTIVES), metavar="OP", help=f"one of: {', '.join(COLLECTIVES)}")
    p.add_argument("--bytes", type=_bytes, required=True, help="N: the buffer (all-reduce, all-to-all) or whole tensor")
    whole(p, ("world-size", "8", "ranks in the group"))
    p.add_argument("--algorithm", choices=["ring", "tree", "pairwise"], help="default: ring (pairwise for all_to_all)")
    p.add_argument("--link", choices=list(LINKS), default="network", help="assumed link (default: network)")
    p.add_argument("--alpha", type=_finite("--alpha 5e-6"), help="seconds per step (overrides the link's)")
    p.add_argument("--bandwidth", type=_bytes, help="bytes per second, e.g. 50GB (overrides the link's)")
    p.set_defaults(run=_collective)

    p = add(
        "pipeline",
        "the bubble of a synchronous pipeline in both conventions",
        "pipeline --stages 4 --micro-batches 16",
    )
    whole(p, ("stages", "4", "pipeline stages p"), ("micro-batches", "16", "micro-batches m"))
    p.set_defaults(run=_pipeline)


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
