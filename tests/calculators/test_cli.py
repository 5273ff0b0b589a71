"""The ``infralens`` command: as a user runs it (subprocesses), and every subcommand and error in-process.

The subprocesses use ``python -m infralens``, which works from any checkout;
one test runs the ``infralens`` console script itself when it is installed.
"""

import json
import shutil
import subprocess
import sys
import sysconfig
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from infralens.calculators import attention_cost, kv_cache_bytes, latent_tokens, weight_memory
from infralens.cli import main

SUBCOMMANDS = ["latent", "attention", "cfg", "kv-cache", "weights"]
WAN_720P = ["latent", "wan2.1", "--height", "720", "--width", "1280", "--frames", "81"]
KV = ["kv-cache", "--layers", "32", "--kv-heads", "8", "--head-dim", "128", "--seq", "8192"]


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    """``main(argv)`` in-process: exit status, stdout, stderr."""
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# --- as a user: subprocesses, started together once (each one imports torch) ---

AS_A_USER = {
    "help": ["--help"],
    "latent": WAN_720P,
    "latent-json": [*WAN_720P, "--json"],
    "bad-frames": [*WAN_720P[:-1], "80"],  # refused by the library
    "bad-dtype": [*KV, "--dtype", "fp64"],  # refused by argparse
}


@pytest.fixture(scope="module")
def as_a_user() -> dict[str, subprocess.CompletedProcess]:
    procs = {
        name: (
            args,
            subprocess.Popen(
                [sys.executable, "-m", "infralens", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
            ),
        )
        for name, args in AS_A_USER.items()
    }
    done = {}
    for name, (args, proc) in procs.items():
        out, err = proc.communicate(timeout=300)
        done[name] = subprocess.CompletedProcess(args, proc.returncode, out, err)
    return done


def test_user_help(as_a_user):
    proc = as_a_user["help"]
    assert proc.returncode == 0 and proc.stdout.startswith("usage: infralens")
    assert all(sub in proc.stdout for sub in SUBCOMMANDS)


def test_user_table_and_json(as_a_user):
    table = as_a_user["latent"]
    assert table.returncode == 0 and table.stderr == ""
    assert "(1, 16, 21, 90, 160)" in table.stdout and "75,600" in table.stdout
    data = json.loads(as_a_user["latent-json"].stdout)
    assert data["latent"] == [1, 16, 21, 90, 160] and data["tokens"] == 21 * 45 * 80


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("bad-frames", ["infralens latent: error:", "frames=80", "77 or 81"]),
        ("bad-dtype", ["infralens kv-cache: error:", "--dtype", "'fp64'", "'bf16'"]),
    ],
)
def test_user_bad_input_exits_2_with_one_line(as_a_user, name, words):
    proc = as_a_user[name]
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert all(word in lines[0] for word in words), lines[0]


CONSOLE_SCRIPT = shutil.which("infralens") or shutil.which("infralens", path=sysconfig.get_path("scripts"))


@pytest.mark.skipif(CONSOLE_SCRIPT is None, reason="the infralens console script is not installed (pip install -e .)")
def test_console_script():
    proc = subprocess.run([CONSOLE_SCRIPT, *KV, "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout)["bytes"] == 2 * 32 * 8 * 128 * 8192 * 2


# --- in-process: every subcommand, every kind of bad input ---


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_on_every_subcommand(sub, capsys):
    code, out, err = run([sub, "--help"], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"usage: infralens {sub}") and "--json" in out
    assert f"example:\n  infralens {sub} " in out


def test_latent(capsys):
    code, out, _ = run(["latent", "SDXL", "--height", "1024", "--width", "1024", "--batch", "2"], capsys)
    assert code == 0 and "(2, 4, 128, 128)" in out and "4,096" in out and "UNet" in out
    code, out, _ = run([*WAN_720P, "--json"], capsys)
    data = json.loads(out)
    t = latent_tokens("wan2.1", height=720, width=1280, frames=81)
    assert data["grid"] == [21, 45, 80] and data["tokens"] == t.tokens and data["counted"] == t.counted
    assert (data["height"], data["width"], data["frames"], data["batch"]) == (720, 1280, 81, 1)


def test_attention(capsys):
    argv = ["attention", "--tokens", "75600", "--heads", "40", "--head-dim", "128"]
    code, out, _ = run(argv, capsys)
    assert code == 0 and "GiB" in out and "75,600" in out
    code, out, _ = run([*argv, "--dtype", "FP32", "--batch", "2", "--json"], capsys)
    data = json.loads(out)
    assert data["score_bytes"] == 2 * 40 * 75600**2 * 4 == attention_cost(**{
        "tokens": 75600, "heads": 40, "head_dim": 128, "batch": 2, "dtype": "fp32"}).score_bytes  # fmt: skip
    assert data["flops"] == 4 * 2 * 40 * 75600**2 * 128


@pytest.mark.parametrize(
    ("extra", "calls"), [([], 50), (["--guidance-scale", "1"], 50), (["--guidance-scale", "5"], 100)]
)
def test_cfg(extra, calls, capsys):
    code, out, _ = run(["cfg", "--steps", "50", *extra], capsys)
    assert code == 0 and f"denoiser calls      {calls}" in out
    code, out, _ = run(["cfg", "--steps", "50", *extra, "--json"], capsys)
    assert json.loads(out)["calls"] == calls


def test_kv_cache(capsys):
    code, out, _ = run(KV, capsys)
    assert code == 0 and "1.00 GiB" in out and "128.00 KiB" in out  # per token: 2 * 32 * 8 * 128 * 2 bytes
    code, out, _ = run([*KV, "--batch", "4", "--dtype", "fp8", "--json"], capsys)
    data = json.loads(out)
    assert data["bytes"] == 2 * 32 * 8 * 128 * 8192 * 4 * 1
    assert data["bytes"] == kv_cache_bytes(layers=32, kv_heads=8, head_dim=128, seq=8192, batch=4, dtype="fp8")


@pytest.mark.parametrize(("text", "params"), [("8e9", 8e9), ("8B", 8e9), ("70b", 70e9), ("1.5M", 1.5e6), ("123", 123)])
def test_weights(text, params, capsys):
    code, out, _ = run(["weights", "--params", text, "--dtype", "int4", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["params"] == params
    assert (
        data["total_bytes"] == params * 0.5 + params / 128 * 2 == weight_memory(params=params, dtype="int4").total_bytes
    )
    code, out, _ = run(["weights", "--params", text, "--dtype", "int4", "--group-size", "64", "--zero-points"], capsys)
    assert code == 0 and "16-bit scale + zero point per 64" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["latent", "wan2.5", "--height", "480", "--width", "832"], ["FAMILY", "invalid choice", "'ltxvideo'"]),
        ([*WAN_720P[:-1], "80"], ["frames=80", "1 + 4k", "77 or 81"]),
        (WAN_720P[:-2], ["frames is required", "frames=81"]),
        (["latent", "sd", "--height", "512", "--width", "512", "--frames", "5"], ["frames=5", "image family"]),
        (["latent", "flux", "--height", "520", "--width", "512"], ["height=520", "512 or 528"]),
        (["latent", "sd", "--height", "0", "--width", "512"], ["--height", ">= 1", "--height 720"]),
        (["latent", "sd", "--height", "512", "--width", "x"], ["--width", "whole number", "'x'"]),
        (["latent", "sd", "--height", "512", "--width", "512", "--batch", "0"], ["--batch", ">= 1"]),
        (["latent", "sd", "--width", "512"], ["required: --height", "e.g. infralens latent"]),
        (["attention", "--tokens", "10", "--heads", "0", "--head-dim", "8"], ["--heads", ">= 1", "--heads 40"]),
        (["attention", "--tokens", "10", "--heads", "2", "--head-dim", "8", "--dtype", "fp64"], ["--dtype", "'bf16'"]),
        (["cfg"], ["required: --steps", "e.g. infralens cfg --steps 50"]),
        (["cfg", "--steps", "-1"], ["--steps", ">= 1"]),
        (["cfg", "--steps", "5", "--guidance-scale", "nan"], ["--guidance-scale", "finite", "--guidance-scale 5"]),
        ([*KV[:-2], "--seq", "0"], ["--seq", ">= 1", "--seq 8192"]),
        ([*KV, "--dtype", "int3"], ["--dtype", "'int4'"]),
        (["weights", "--params", "lots", "--dtype", "int4"], ["--params", "8B"]),
        (["weights", "--params", "0", "--dtype", "int4"], ["--params", "> 0"]),
        (["weights", "--params", "1e400", "--dtype", "int4"], ["--params", "'1e400'"]),
        (["weights", "--params", "8B", "--dtype", "int4", "--group-size", "0"], ["--group-size", ">= 1"]),
        (["weights", "--params", "8B", "--dtype", "bf16", "--zero-points"], ["zero_points", "group_size=128"]),
        (["weights", "--params", "8B"], ["required: --dtype"]),
        (["bogus"], ["COMMAND", "invalid choice", "'kv-cache'"]),
        ([], ["required: COMMAND"]),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, words, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"infralens {argv[0]}: error: " if argv and argv[0] in SUBCOMMANDS else "infralens: error: "
    assert lines[0].startswith(prefix), lines[0]
    assert all(word in lines[0] for word in words), lines[0]


@settings(max_examples=40, deadline=None)
@given(
    sub=st.sampled_from(SUBCOMMANDS),
    values=st.lists(st.one_of(st.integers(-3, 10**6).map(str), st.text(max_size=6)), min_size=1, max_size=3),
)
def test_any_value_gives_a_result_or_one_line(sub, values):
    """Whatever goes into the numeric options, the command answers (0) or refuses in one line (2)."""
    options = {
        "latent": ["wan2.1", "--height", "--width", "--frames"],
        "attention": ["--tokens", "--heads", "--head-dim"],
        "cfg": ["--steps", "--guidance-scale"],
        "kv-cache": ["--layers", "--kv-heads", "--head-dim", "--seq"],
        "weights": ["--params", "--group-size"],
    }[sub]
    argv = [sub]
    flags = [o for o in options if o.startswith("--")]
    argv += [o for o in options if not o.startswith("--")]
    for i, flag in enumerate(flags):
        argv += [flag, values[i % len(values)]]
    if sub == "weights":
        argv += ["--dtype", "int4"]
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(argv)
    assert code in (0, 2)
    if code == 2:
        assert out.getvalue() == "" and len(err.getvalue().splitlines()) == 1
    else:
        assert err.getvalue() == "" and out.getvalue()
