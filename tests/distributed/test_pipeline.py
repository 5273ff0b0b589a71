"""The pipeline bubble in its two conventions, and the schedule simulator whose idle slots are its referent."""

import itertools

import pytest

from infralens.distributed import PIPELINE_SCHEDULES, pipeline_bubble, schedule_order, simulate_pipeline


def test_p4_m16_by_hand():
    # 3 idle slots of 19 on each stage, or 3 idle slots per 16 of useful work
    assert pipeline_bubble(4, 16) == 3 / 19
    assert round(100 * pipeline_bubble(4, 16), 2) == 15.79
    assert pipeline_bubble(4, 16, relative_to="ideal") == 0.1875


@pytest.mark.parametrize(("p", "m"), [(1, 1), (2, 1), (4, 16), (8, 3), (16, 64)])
def test_the_conventions_are_two_views_of_one_idle_time(p, m):
    wall, ideal = pipeline_bubble(p, m), pipeline_bubble(p, m, relative_to="ideal")
    assert wall == pytest.approx(ideal / (1 + ideal))  # idle/(idle + work) from idle/work
    assert wall <= ideal
    assert (wall == 0) == (p == 1)


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        ((0, 16), {}, r"stages must be >= 1, e.g. stages=4; got 0"),
        ((4, 0), {}, r"microbatches must be >= 1, e.g. microbatches=16; got 0"),
        ((4, 2.5), {}, r"microbatches must be a whole number >= 1, e.g. microbatches=16; got 2.5"),
        ((4, 16), {"relative_to": "compute"}, r"relative_to must be 'wall' .* or 'ideal' .*; got 'compute'"),
    ],
)
def test_errors(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline_bubble(*args, **kwargs)


# --- the simulator: the measured referent of the bubble formula --------------------------------------


@pytest.mark.parametrize("schedule", PIPELINE_SCHEDULES)
@pytest.mark.parametrize(("p", "m", "tb"), [(4, 16, 1.0), (4, 16, 2.0), (2, 3, 1.0), (8, 8, 2.0), (3, 1, 1.0)])
def test_idle_time_in_the_simulation_is_the_bubble_formula(schedule, p, m, tb):
    t = simulate_pipeline(schedule, p, m, backward_time=tb)
    assert t.makespan == (m + p - 1) * (1 + tb)
    assert t.bubble() == pytest.approx(pipeline_bubble(p, m))
    assert t.bubble(relative_to="ideal") == pytest.approx(pipeline_bubble(p, m, relative_to="ideal"))


@pytest.mark.parametrize(("p", "m"), [(4, 16), (4, 2), (2, 8)])
def test_gpipe_holds_every_microbatch_and_1f1b_at_most_p_minus_s(p, m):
    assert simulate_pipeline("gpipe", p, m).peak_activations() == [m] * p
    assert simulate_pipeline("1f1b", p, m).peak_activations() == [min(m, p - s) for s in range(p)]


@pytest.mark.parametrize("schedule", PIPELINE_SCHEDULES)
def test_every_operation_runs_once_after_what_it_needs(schedule):
    p, m = 4, 6
    t = simulate_pipeline(schedule, p, m, backward_time=2)
    end = {(op.kind, op.stage, op.microbatch): op.end for op in t.ops}
    start = {(op.kind, op.stage, op.microbatch): op.start for op in t.ops}
    assert len(t.ops) == 2 * p * m == len(end)
    for s in range(p):
        mine = sorted((op for op in t.ops if op.stage == s), key=lambda op: op.start)
        assert all(a.end <= b.start for a, b in itertools.pairwise(mine))  # one operation at a time
        assert [(op.kind, op.microbatch) for op in mine] == schedule_order(schedule, p, m)[s]
        for i in range(m):
            if s:
                assert start[("F", s, i)] >= end[("F", s - 1, i)]
            if s < p - 1:
                assert start[("B", s, i)] >= end[("B", s + 1, i)]
            assert start[("B", s, i)] >= end[("F", s, i)]


def test_the_grid_reads_like_the_papers_figures():
    rows = simulate_pipeline("1f1b", 2, 3).grid()
    assert rows == [["F0", "F1", "", "B0", "F2", "B1", "", "B2"], ["", "F0", "B0", "F1", "B1", "F2", "B2", ""]]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: schedule_order("zb", 4, 8), r"schedule must be 'gpipe' or '1f1b', e.g. schedule='1f1b'; got 'zb'"),
        (lambda: simulate_pipeline("gpipe", 4, 8, backward_time=0), r"backward_time must be a number > 0"),
        (lambda: simulate_pipeline("gpipe", 0, 8), r"stages must be >= 1, e.g. stages=4; got 0"),
        (lambda: simulate_pipeline("gpipe", 4, 8).bubble(relative_to="x"), r"relative_to must be 'wall' or 'ideal'"),
    ],
)
def test_simulator_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("schedule", PIPELINE_SCHEDULES)
def test_the_timeline_lists_operations_in_time_order(schedule):
    ops = simulate_pipeline(schedule, 3, 4, backward_time=2.0).ops
    assert [(o.start, o.stage) for o in ops] == sorted((o.start, o.stage) for o in ops)
