"""``infralens training-state``, ``collective`` and ``pipeline``: tables, JSON, and every kind of bad input.

Values are checked against hand arithmetic (the drill numbers with their
conventions), not against the functions the command calls.
"""

import json
import subprocess
import sys

import pytest

from infralens.cli import main

SUBCOMMANDS = ["training-state", "collective", "pipeline"]


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_as_a_user():
    proc = subprocess.run(
        [sys.executable, "-m", "infralens", "pipeline", "--stages", "4", "--micro-batches", "16", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and proc.stderr == ""
    assert json.loads(proc.stdout) == {"stages": 4, "micro_batches": 16, "bubble_wall": 3 / 19, "bubble_ideal": 3 / 16}


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help(sub, capsys):
    code, out, err = run([sub, "--help"], capsys)
    assert code == 0 and err == "" and out.startswith(f"usage: infralens {sub}") and "--json" in out
    assert f"example:\n  infralens {sub} " in out


def test_training_state_both_conventions(capsys):
    code, out, _ = run(["training-state", "--params", "7B", "--world-size", "8"], capsys)
    assert code == 0
    assert "2 + 2 + 12 = 16 bytes/param" in out and "ZeRO-3 per rank      14.00 GB" in out
    assert "ZeRO-0 per rank      112.00 GB" in out  # 16 bytes x 7e9, nothing sharded
    code, out, _ = run(
        ["training-state", "--params", "7B", "--world-size", "8", "--stage", "3", "--optimizer-bytes", "8", "--json"],
        capsys,
    )
    data = json.loads(out)
    assert data["bytes_per_rank"] == {"3": 7e9 * 12 / 8} and data["optimizer_bytes"] == 8  # the 10.5 GB answer


def test_collective(capsys):
    code, out, _ = run(["collective", "all_reduce", "--bytes", "2GB", "--world-size", "8", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data["volume_bytes"] == 2e9 * 2 * 7 / 8 and data["steps"] == 14
    assert data["seconds"] == pytest.approx(14 * 14e-6 + 3.5e9 / 50e9)
    assert data["busbw"] / data["algbw"] == pytest.approx(1.75)
    code, out, _ = run(
        ["collective", "all_gather", "--bytes", "512MiB", "--world-size", "4", "--alpha", "0", "--bandwidth", "1GB"],
        capsys,
    )
    assert code == 0 and "sent per rank  402,653,184 bytes (0.75 N)" in out and "link           custom" in out
    code, out, _ = run(
        ["collective", "all_reduce", "--bytes", "1KiB", "--world-size", "64", "--algorithm", "tree"], capsys
    )
    assert "critical path" in out and "12 x alpha" in out and "latency share  99.9%" in out


def test_pipeline(capsys):
    code, out, _ = run(["pipeline", "--stages", "4", "--micro-batches", "16"], capsys)
    assert code == 0 and "15.79%" in out and "18.75%" in out and "m + p - 1 = 19" in out


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["training-state", "--params", "7x", "--world-size", "8"], ["--params", "'7x'"]),
        (["training-state", "--params", "7.5", "--world-size", "8"], ["num_params must be a whole number", "7.5"]),
        (["training-state", "--params", "7B", "--world-size", "0"], ["--world-size", "e.g. --world-size 8"]),
        (["training-state", "--params", "7B", "--world-size", "8", "--stage", "4"], ["--stage", "invalid choice"]),
        (["training-state", "--params", "7B", "--world-size", "8", "--grad-bytes", "-2"], ["grad_bytes must be >= 0"]),
        (["collective", "allreduce", "--bytes", "1GB", "--world-size", "8"], ["invalid choice: 'allreduce'"]),
        (["collective", "all_reduce", "--bytes", "1XB", "--world-size", "8"], ["--bytes", "e.g. 2GB", "'1XB'"]),
        (["collective", "all_gather", "--bytes", "1GB", "--world-size", "8", "--algorithm", "tree"], ["one of ring"]),
        (
            ["collective", "all_reduce", "--bytes", "1GB", "--world-size", "8", "--bandwidth", "0"],
            ["bandwidth must be > 0"],
        ),
        (["collective", "all_reduce", "--bytes", "1GB", "--world-size", "8", "--alpha", "-1"], ["alpha must be >= 0"]),
        (["collective", "all_reduce", "--bytes", "1GB", "--world-size", "8", "--link", "pcie"], ["--link", "'pcie'"]),
        (["pipeline", "--stages", "4"], ["--micro-batches"]),
        (["pipeline", "--stages", "0", "--micro-batches", "16"], ["--stages", "e.g. --stages 4"]),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, words, capsys):
    code, out, err = run(argv, capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1, err
    assert err.startswith(f"infralens {argv[0]}: error: ") and all(w in err for w in words), err
