"""Multi-control: windows over the steps in diffusers' and DiffSynth's conventions, schedules, combined residuals."""

import re
from pathlib import Path

import pytest
import torch

from infralens.adapters import (
    ControlWindow,
    combine_control_residuals,
    control_keep,
    control_schedule,
    diffsynth_control_active,
    format_control_schedule,
)

ROOT = Path(__file__).resolve().parents[2]
STARTER = ROOT / "code/diffsynth/lab-09-multi-control-pipeline-reading/multi_control.py"
GRID = [k / 20 for k in range(21)]


def kept_steps(n, s, e):
    """Steps whose share [i/N, (i+1)/N] lies inside [s, e] (float arithmetic, as diffusers)."""
    return [i for i in range(n) if s <= i / n and (i + 1) / n <= e]


@pytest.mark.parametrize("n", [1, 3, 4, 10, 25, 50])
def test_control_keep_is_interval_containment(n):
    for s in GRID:
        for e in GRID:
            if s < e:
                keep = control_keep(n, s, e)
                assert keep.dtype == torch.float32 and keep.shape == (n,)
                assert keep.nonzero().flatten().tolist() == kept_steps(n, s, e), (n, s, e)


def test_control_keep_edges():
    assert control_keep(10).tolist() == [1.0] * 10  # defaults: the whole loop
    assert control_keep(10, 0.0, 0.3).nonzero().flatten().tolist() == [0, 1, 2]  # 3/10 == 0.3 in floats
    assert control_keep(10, 0.0, 0.05).sum() == 0  # shorter than one step
    assert control_keep(10, 0.05, 0.15).sum() == 0  # one step long, but no whole step inside
    assert control_keep(4, 0.25, 0.5).tolist() == [0.0, 1.0, 0.0, 0.0]


@pytest.mark.parametrize("n", [1, 2, 4, 10, 13])
def test_diffsynth_active_is_a_point_test_on_progress(n):
    for start in GRID:
        for end in GRID:
            if end <= start:
                got = diffsynth_control_active(n, start=start, end=end)
                assert got.dtype == torch.bool
                progress = [(n - 1 - i) / max(n - 1, 1) for i in range(n)]
                # DiffSynth skips a control when progress > start or progress < end
                assert got.tolist() == [not (p > start or p < end) for p in progress]


def test_diffsynth_and_diffusers_windows_can_differ_by_a_step():
    assert control_keep(10, 0.0, 0.15).nonzero().flatten().tolist() == [0]
    assert diffsynth_control_active(10, start=1.0, end=0.85).nonzero().flatten().tolist() == [0, 1]
    assert diffsynth_control_active(10, start=1.0, end=0.95).tolist() == [True] + [False] * 9
    assert diffsynth_control_active(1, start=0.0, end=0.0).tolist() == [True]  # one step: progress 0


def test_schedule_is_scale_times_keep():
    controls = [
        ControlWindow("canny", 1.0, 0.0, 0.5),
        ControlWindow("depth", 0.6, 0.2, 1.0),
        ControlWindow("pose", -0.5, 0.35, 0.9),
    ]
    sched = control_schedule(controls, 20)
    assert sched.shape == (20, 3)
    for j, c in enumerate(controls):
        col = torch.zeros(20)
        col[kept_steps(20, c.control_guidance_start, c.control_guidance_end)] = c.conditioning_scale
        assert torch.allclose(sched[:, j], col)


def test_table_lists_the_schedule():
    controls = [ControlWindow("canny", 1.0, 0.0, 0.5), ControlWindow("a_long_name", 0.25, 0.5, 1.0)]
    timesteps = torch.linspace(999, 0, 6)
    table = format_control_schedule(controls, 6, timesteps)
    lines = table.splitlines()
    assert lines[0].split() == ["step", "t", "canny", "a_long_name"]
    assert len(lines) == 7 and not table.endswith("\n")
    sched = control_schedule(controls, 6)
    for i, line in enumerate(lines[1:]):
        cells = line.split()
        assert int(cells[0]) == i and int(cells[1]) == round(timesteps[i].item())
        for j, cell in enumerate(cells[2:]):
            assert (cell == "-") == (sched[i, j] == 0)
            if cell != "-":
                assert float(cell) == pytest.approx(sched[i, j].item())
    assert len({len(line) for line in lines}) == 1  # columns line up
    no_t = format_control_schedule(controls, 6).splitlines()
    assert no_t[0].split() == ["step", "canny", "a_long_name"]


def test_combine_is_the_weighted_sum_and_skips_controls_that_are_off():
    g = torch.Generator().manual_seed(0)
    shapes = [(1, 8, 16, 16), (1, 8, 8, 8), (1, 8, 4, 4)]
    res = [[torch.randn(s, generator=g) for s in shapes] for _ in range(3)]
    scales = [1.0, 0.0, 0.6]
    out = combine_control_residuals(res, scales)
    for b, t in enumerate(out):
        assert torch.allclose(t, res[0][b] + 0.6 * res[2][b], atol=1e-6)
    skipped = combine_control_residuals([res[0], None, res[2]], torch.tensor(scales))
    assert all(torch.equal(a, b) for a, b in zip(out, skipped, strict=True))
    nothing = combine_control_residuals([res[0], None, None], [0.0, 0.0, 0.0])
    assert [tuple(t.shape) for t in nothing] == shapes and all(torch.count_nonzero(t) == 0 for t in nothing)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("", 1.0, 0.0, 1.0), "name must be a non-empty string, e.g. name='canny'; got ''"),
        (
            ("c", float("inf"), 0.0, 1.0),
            "conditioning_scale must be a finite number, e.g. conditioning_scale=1.0; got inf",
        ),
        (("c", "1", 0.0, 1.0), "conditioning_scale must be a finite number, e.g. conditioning_scale=1.0; got '1'"),
        (
            ("c", 1.0, -0.1, 1.0),
            "control_guidance_start must be a fraction in [0, 1], e.g. control_guidance_start=0.0; got -0.1",
        ),
        (
            ("c", 1.0, 0.0, 1.5),
            "control_guidance_end must be a fraction in [0, 1], e.g. control_guidance_end=1.0; got 1.5",
        ),
        (
            ("c", 1.0, 0.5, 0.5),
            "control_guidance_start must be < control_guidance_end (diffusers refuses start >= end), "
            "e.g. control_guidance_start=0.0, control_guidance_end=0.5; got 0.5 and 0.5",
        ),
        (
            ("c", 1.0, True, 1.0),
            "control_guidance_start must be a fraction in [0, 1], e.g. control_guidance_start=0.0; got True",
        ),
    ],
)
def test_control_window_errors(args, message):
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        ControlWindow(*args)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: control_keep(0), "num_inference_steps must be >= 1, e.g. num_inference_steps=50; got 0"),
        (lambda: control_keep(10, 0.6, 0.4), "control_guidance_start must be < control_guidance_end"),
        (
            lambda: diffsynth_control_active(10, start=0.5, end=0.8),
            "end must be <= start: DiffSynth-Studio counts progress down from 1 (first step) to 0 (last step), "
            "so start is the larger number, e.g. start=1.0, end=0.5; got start=0.5, end=0.8",
        ),
        (
            lambda: diffsynth_control_active(10, start=1.2),
            "start must be a fraction in [0, 1], e.g. start=1.0; got 1.2",
        ),
        (lambda: diffsynth_control_active(10, end=-0.1), "end must be a fraction in [0, 1], e.g. end=0.0; got -0.1"),
        (lambda: diffsynth_control_active(2.5), "num_inference_steps must be a whole number >= 1"),
        (
            lambda: control_schedule([], 10),
            "controls must be a non-empty list of ControlWindow, e.g. [ControlWindow('canny', 1.0, 0.0, 0.5)]; got []",
        ),
        (lambda: control_schedule(ControlWindow("c"), 10), "controls must be a non-empty list of ControlWindow"),
        (
            lambda: control_schedule([ControlWindow("c"), ControlWindow("c")], 10),
            "control names must be unique, one column each; got ['c', 'c']",
        ),
        (
            lambda: control_schedule([ControlWindow("c")], -3),
            "num_inference_steps must be >= 1, e.g. num_inference_steps=50; got -3",
        ),
        (
            lambda: format_control_schedule([ControlWindow("c")], 4, torch.zeros(5)),
            "timesteps must be a tensor of shape (num_inference_steps,) = (4,); got (5,)",
        ),
        (
            lambda: format_control_schedule([ControlWindow("c")], 4, [1, 2, 3, 4]),
            "timesteps must be a tensor of shape (num_inference_steps,) = (4,); got list",
        ),
    ],
)
def test_schedule_errors(call, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        call()


@pytest.mark.parametrize(
    ("residuals", "scales", "message"),
    [
        (
            [[torch.zeros(2)]],
            [1.0, 1.0],
            "residuals and scales need one entry per control (2 scales); got 1 residual sets",
        ),
        ([], [], "residuals and scales need one entry per control (0 scales); got 0 residual sets"),
        (torch.zeros(2), [1.0], "residuals and scales need one entry per control (1 scales); got Tensor"),
        (
            [None, None],
            [0.0, 0.0],
            "at least one control's residuals are needed to know the block shapes; got only None",
        ),
        (
            [[torch.zeros(2)], [torch.zeros(3)]],
            [1.0, 1.0],
            "every control must return residuals of the same shapes, one per block: "
            "control 0 gives [(2,)], control 1 gives [(3,)]",
        ),
        (
            [[torch.zeros(2)], None],
            [1.0, 0.5],
            "residuals[1] is None (not run) but its scale at this step is 0.5: "
            "only a control that is off (scale 0) may be skipped",
        ),
    ],
)
def test_combine_errors(residuals, scales, message):
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        combine_control_residuals(residuals, scales)


def test_starter_prints_checked_values(starter):
    out = starter(STARTER)
    rows = re.findall(r"^\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)$", out, re.M)
    assert [int(r[0]) for r in rows] == list(range(10))
    # FLUX.1 template, 10 steps, shift 3 (DiffSynth-Studio 2.1.12, run by the upstream report): 1000 * sigma
    assert [int(r[1]) for r in rows] == [1000, 960, 913, 858, 790, 707, 602, 465, 278, 9]
    canny = [i for i in range(10) if i / 10 >= 0.0 and (i + 1) / 10 <= 0.5]
    depth = [i for i in range(10) if i / 10 >= 0.2 and (i + 1) / 10 <= 1.0]
    for i, (_, _, c, d) in enumerate(rows):
        assert c == ("1.00" if i in canny else "-")
        assert d == ("0.60" if i in depth else "-")
    assert re.search(rf"every net, every step\s+{10 * 2}$", out, re.M)
    assert re.search(rf"only nets that are on\s+{len(canny) + len(depth)}$", out, re.M)
    assert "same final latent either way: True" in out
    assert f"canny  active at steps {canny}" in out and f"depth  active at steps {depth}" in out
    assert "same steps as the diffusers windows: True" in out
    assert "diffusers applies it at 0 steps" in out and "DiffSynth applies it at 1 step (step 0)" in out


def test_the_table_is_six_characters_a_column_at_least():
    # columns as wide as "  0.80" or the control's name, whichever is wider, right-aligned
    table = format_control_schedule([ControlWindow("edge", 0.8, 0.5, 1.0), ControlWindow("openpose", 1, 0, 0.5)], 2)
    assert table.splitlines() == ["step   edge openpose", "   0      -     1.00", "   1   0.80        -"]
