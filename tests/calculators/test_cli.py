"""The ``infralens`` command: as a user runs it (subprocesses), and every subcommand and error in-process.

The subprocesses use ``python -m infralens``, which works from any checkout;
one test runs the ``infralens`` console script itself when it is installed.
"""

import json
import re
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
from infralens.transformer import LLAMA2_7B, llama_param_count

SUBCOMMANDS = ["latent", "attention", "cfg", "kv-cache", "weights", "params"]
WAN_720P = ["latent", "wan2.1", "--height", "720", "--width", "1280", "--frames", "81"]
KV = ["kv-cache", "--layers", "32", "--kv-heads", "8", "--head-dim", "128", "--seq", "8192"]
LLAMA2 = ["params", "--vocab-size", "32000", "--hidden-size", "4096", "--intermediate-size", "11008", "--layers", "32"]
LLAMA2 += ["--heads", "32"]


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
    assert data["naive_peak_bytes"] == 2 * data["score_bytes"]  # the scores and their softmax


def test_attention_says_fused_kernels_store_no_scores(capsys):
    code, out, _ = run(["attention", "--tokens", "1024", "--heads", "8", "--head-dim", "64"], capsys)
    assert code == 0
    assert "fused kernels: scores stored" in out and "none" in out.split("fused kernels: scores stored")[1]
    assert out.index("FLOPs") < out.index("naive")  # the cost every kernel pays comes first


@pytest.mark.parametrize(
    ("extra", "calls"), [([], 50), (["--guidance-scale", "1"], 50), (["--guidance-scale", "5"], 100)]
)
def test_cfg(extra, calls, capsys):
    code, out, _ = run(["cfg", "--steps", "50", *extra], capsys)
    assert code == 0 and re.search(rf"^denoiser calls\s+{calls}$", out, re.M)
    code, out, _ = run(["cfg", "--steps", "50", *extra, "--json"], capsys)
    assert json.loads(out)["calls"] == calls


@pytest.mark.parametrize(
    ("argv", "calls"),
    [
        (["--pipeline", "FluxPipeline"], 28),  # guidance_scale=3.5 is an input of the transformer, not CFG
        (["--pipeline", "FluxPipeline", "--true-cfg-scale", "4"], 56),
        (["--pipeline", "WanPipeline"], 100),
        (["--pipeline", "WanPipeline", "--steps", "30"], 60),
        (["--steps", "28", "--guidance-scale", "3.5", "--true-cfg-scale", "1"], 28),
    ],
)
def test_cfg_pipeline_defaults_and_distilled_guidance(argv, calls, capsys):
    code, out, _ = run(["cfg", *argv, "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["calls"] == calls
    if "--pipeline" in argv:
        assert data["pipeline"] == argv[1]


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


def test_params(capsys):
    code, out, _ = run(LLAMA2, capsys)
    assert code == 0 and "6,738,415,616" in out and "4,328,521,728" in out and "12.55 GiB" in out
    code, out, _ = run([*LLAMA2, "--kv-heads", "8", "--tie-word-embeddings", "--json"], capsys)
    data = json.loads(out)
    gqa = LLAMA2_7B | {"num_key_value_heads": 8, "tie_word_embeddings": True}
    assert data["total"] == llama_param_count(**gqa) == 6_738_415_616 - 2 * 4096 * 24 * 128 * 32 - 32000 * 4096
    assert data["head"] == 0 and data["num_key_value_heads"] == 8


def test_params_from_a_config_file(tmp_path, capsys):
    config = tmp_path / "config.json"
    fields = LLAMA2_7B | {"num_key_value_heads": None, "head_dim": None, "model_type": "llama", "rope_theta": 1e4}
    config.write_text(json.dumps(fields))
    code, out, _ = run(["params", "--config", str(config), "--json"], capsys)
    assert code == 0 and json.loads(out)["total"] == 6_738_415_616  # null KV heads: one per query head
    code, out, _ = run(["params", "--config", str(config), "--layers", "2", "--json"], capsys)
    assert json.loads(out)["total"] == llama_param_count(**LLAMA2_7B | {"num_hidden_layers": 2})
    (tmp_path / "bad.json").write_text("{hidden_size: 4096")
    (tmp_path / "list.json").write_text("[4096]")
    for name, words in [
        ("missing.json", ["--config", "No such file", "e.g. --config config.json"]),
        ("bad.json", ["--config", "not JSON"]),
        ("list.json", ["--config", "JSON object"]),
    ]:
        code, out, err = run(["params", "--config", str(tmp_path / name)], capsys)
        assert code == 2 and out == "" and len(err.splitlines()) == 1
        assert err.startswith("infralens params: error: ") and all(w in err for w in words), err


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
        (["attention", "--tokens", "10", "--heads", "2", "--head-dim", "8", "--dtype", "int4"], ["--dtype", "'fp16'"]),
        (["cfg"], ["--steps or --pipeline", "e.g. --steps 50"]),
        (["cfg", "--pipeline", "Flux"], ["--pipeline", "invalid choice", "'FluxPipeline'"]),
        (["cfg", "--steps", "5", "--true-cfg-scale", "inf"], ["--true-cfg-scale", "finite"]),
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
        (LLAMA2[:-4], ["--layers is required", "e.g. infralens params"]),
        ([*LLAMA2, "--kv-heads", "5"], ["num_attention_heads=32", "num_key_value_heads=5", "4 or 8"]),
        ([*LLAMA2, "--heads", "0"], ["--heads", ">= 1", "--heads 32"]),
        ([*LLAMA2, "--hidden-size", "4000", "--heads", "48", "--kv-heads", "8"], ["hidden_size=4000", "head_dim"]),
        ([*LLAMA2, "--vocab-size", "3.5"], ["--vocab-size", "whole number", "'3.5'"]),
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
        "cfg": ["--steps", "--guidance-scale", "--true-cfg-scale"],
        "kv-cache": ["--layers", "--kv-heads", "--head-dim", "--seq"],
        "weights": ["--params", "--group-size"],
        "params": ["--vocab-size", "--hidden-size", "--intermediate-size", "--layers", "--heads", "--kv-heads"],
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
