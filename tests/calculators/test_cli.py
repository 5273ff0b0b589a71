"""The `infralens` command as a user runs it: subprocesses, tables, --json, errors."""

import json
import shutil
import subprocess
import sys

import pytest

CMD = [sys.executable, "-m", "infralens"]


def run(*args):
    return subprocess.run([*CMD, *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("sub", ["latent", "attention", "cfg", "kv-cache", "weights"])
def test_help_on_every_subcommand(sub):
    proc = run(sub, "--help")
    assert proc.returncode == 0 and "--json" in proc.stdout


def test_top_level_help_lists_subcommands():
    proc = run("--help")
    assert proc.returncode == 0
    for sub in ("latent", "attention", "cfg", "kv-cache", "weights"):
        assert sub in proc.stdout


def test_latent_table_and_json():
    proc = run("latent", "wan2.1", "--height", "720", "--width", "1280", "--frames", "81")
    assert proc.returncode == 0
    assert "(1, 16, 21, 90, 160)" in proc.stdout and "75,600" in proc.stdout
    data = json.loads(run("latent", "wan2.1", "--height", "720", "--width", "1280", "--frames", "81", "--json").stdout)
    assert data["latent"] == [1, 16, 21, 90, 160] and data["tokens"] == 21 * 45 * 80


def test_attention_json():
    data = json.loads(run("attention", "--tokens", "1000", "--heads", "2", "--head-dim", "8", "--json").stdout)
    assert data["score_bytes"] == 2 * 1000**2 * 2 and data["flops"] == 4 * 2 * 1000**2 * 8


def test_cfg_kv_weights():
    assert json.loads(run("cfg", "--steps", "50", "--guidance-scale", "5", "--json").stdout)["calls"] == 100
    kv = json.loads(
        run("kv-cache", "--layers", "32", "--kv-heads", "8", "--head-dim", "128", "--seq", "8192", "--json").stdout
    )
    assert kv["bytes"] == 2**30
    w = json.loads(run("weights", "--params", "8B", "--dtype", "int4", "--json").stdout)
    assert w["total_bytes"] == 8e9 * 0.5 + 8e9 / 128 * 2
    assert "GiB" in run("weights", "--params", "70e9", "--dtype", "bf16").stdout


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["latent", "wan2.5", "--height", "480", "--width", "832"], ["family", "'wan2.1'"]),
        (["latent", "wan2.1", "--height", "480", "--width", "832", "--frames", "80"], ["frames=80", "77 or 81"]),
        (["latent", "sd", "--height", "0", "--width", "512"], ["height", ">= 1"]),
        (["attention", "--tokens", "-5", "--heads", "2", "--head-dim", "8"], ["tokens", ">= 1"]),
        (
            ["kv-cache", "--layers", "1", "--kv-heads", "1", "--head-dim", "1", "--seq", "1", "--dtype", "fp64"],
            ["dtype", "bf16"],
        ),
        (["weights", "--params", "lots", "--dtype", "int4"], ["--params", "8e9"]),
        (["cfg"], ["--steps"]),
    ],
)
def test_bad_input_exits_2_with_one_line(args, words):
    proc = run(*args)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in lines[0]


@pytest.mark.skipif(shutil.which("infralens") is None, reason="the console script is not on PATH (pip install -e .)")
def test_console_script():
    proc = subprocess.run(["infralens", "cfg", "--steps", "4"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "denoiser calls" in proc.stdout
