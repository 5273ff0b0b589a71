"""The residency simulator on cases small enough to check by hand, invariants on random pipelines, every error."""

import random

import pytest

from infralens.memory import STRATEGIES, Component, diffsynth_residency, plan_offload

PARTS = [Component("te", (4, 6)), Component("dit", (10, 30, 30)), Component("vae", 20)]
SCHEDULE = ["te", "dit", "dit", "dit", "vae"]


def moved(plan):
    return [s.moved_bytes for s in plan.stages]


def test_resident_moves_everything_once():
    plan = plan_offload(PARTS, SCHEDULE, strategy="resident")
    assert moved(plan) == [100, 0, 0, 0, 0]
    assert plan.peak_bytes == 100 and plan.moved_bytes == 100 and plan.fits


def test_model_offload_moves_a_component_when_the_schedule_switches_to_it():
    plan = plan_offload(PARTS, SCHEDULE, strategy="model")
    assert moved(plan) == [10, 70, 0, 0, 20]
    assert [s.weight_bytes for s in plan.stages] == [10, 70, 70, 70, 20]
    assert plan.peak_bytes == 70
    assert plan.moved_per_call("dit") == 0 and plan.calls("dit") == 3
    # coming back to a component copies it again
    back = plan_offload(PARTS, ["dit", "vae", "dit"], strategy="model")
    assert moved(back) == [70, 20, 70]


def test_sequential_layer_offload_streams_every_layer_every_call():
    plan = plan_offload(PARTS, SCHEDULE, strategy="layer")
    assert moved(plan) == [10, 70, 70, 70, 20]
    assert [s.weight_bytes for s in plan.stages] == [6, 30, 30, 30, 20]  # the largest layer at a time
    assert plan.moved_per_call("dit") == 70


def test_layer_offload_under_a_budget_keeps_what_fits():
    # dit: 70 > 50; room for its largest layer (30) is kept: 10 fits beside it, the two 30s stream
    plan = plan_offload(PARTS, SCHEDULE, strategy="layer", budget=50)
    assert moved(plan) == [10, 70, 60, 60, 20]
    assert [s.weight_bytes for s in plan.stages] == [10, 40, 40, 40, 20]
    assert plan.peak_bytes == 40 <= plan.budget and plan.fits
    # a budget that holds the whole component is model offload
    big = plan_offload(PARTS, SCHEDULE, strategy="layer", budget=70)
    assert moved(big) == moved(plan_offload(PARTS, SCHEDULE, strategy="model"))


def test_later_small_layers_still_fit_after_a_streamed_one():
    parts = [Component("m", (5, 30, 5, 30, 5))]
    plan = plan_offload(parts, ["m", "m"], strategy="layer", budget=50)
    # reserve 30: 5 fits (35), 30 does not (65), 5 fits (40), 30 does not, 5 fits (45)
    assert [s.weight_bytes for s in plan.stages] == [45, 45]
    assert moved(plan) == [75, 60]


def test_activations_add_to_the_peak_and_shrink_what_stays():
    plan = plan_offload(PARTS, ["dit"], strategy="layer", budget=60, activation_bytes={"dit": 15})
    # reserve 30 + 15 activations: 10 fits (55), 30 does not, 30 does not
    assert plan.stages[0].weight_bytes == 40 and plan.stages[0].peak_bytes == 55
    resident = plan_offload(PARTS, ["te", "dit"], strategy="resident", activation_bytes={"dit": 15})
    assert [s.peak_bytes for s in resident.stages] == [100, 115]


def test_budget_only_flags_the_other_strategies():
    assert not plan_offload(PARTS, SCHEDULE, strategy="resident", budget=99).fits
    assert plan_offload(PARTS, SCHEDULE, strategy="model", budget=70).fits
    assert not plan_offload(PARTS, SCHEDULE, strategy="model", budget=69).fits


@pytest.mark.parametrize("seed", range(20))
def test_invariants_on_random_pipelines(seed):
    rng = random.Random(seed)
    parts = [Component(f"c{i}", tuple(rng.randint(1, 50) for _ in range(rng.randint(1, 6)))) for i in range(3)]
    schedule = [rng.choice(parts).name for _ in range(rng.randint(1, 12))]
    used = {p.name: p for p in parts if p.name in schedule}
    resident = plan_offload(parts, schedule, strategy="resident")
    model = plan_offload(parts, schedule, strategy="model")
    stream = plan_offload(parts, schedule, strategy="layer")
    assert resident.peak_bytes == sum(p.total_bytes for p in parts)
    assert model.peak_bytes == max(p.total_bytes for p in used.values())
    assert stream.peak_bytes == max(max(p.layer_bytes) for p in used.values())
    switches = [n for k, n in enumerate(schedule) if k == 0 or schedule[k - 1] != n]
    assert model.moved_bytes == sum(used[n].total_bytes for n in switches)
    assert stream.moved_bytes == sum(used[n].total_bytes for n in schedule)
    budget = rng.randint(max(max(p.layer_bytes) for p in used.values()), 200)
    limited = plan_offload(parts, schedule, strategy="layer", budget=budget)
    assert limited.peak_bytes <= budget
    assert stream.moved_bytes >= limited.moved_bytes >= model.moved_bytes


def test_errors():
    with pytest.raises(ValueError, match=r"name must be a non-empty string, e.g. name='dit'; got ''"):
        Component("", (1,))
    with pytest.raises(ValueError, match=r"layer_bytes of 'x' must list at least one layer, e.g. \(1024,\); got \(\)"):
        Component("x", ())
    with pytest.raises(ValueError, match=r"layer_bytes of 'x' must be whole numbers of bytes >= 1, .* got 0"):
        Component("x", (4, 0))
    with pytest.raises(ValueError, match=r"layer_bytes of 'x' must be whole numbers .* got 1.5"):
        Component("x", 1.5)
    with pytest.raises(ValueError, match=r"components must be a non-empty list of Component"):
        plan_offload([], ["x"], strategy="model")
    with pytest.raises(ValueError, match=r"components must have unique names; got \['a', 'a'\]"):
        plan_offload([Component("a", 1), Component("a", 2)], ["a"], strategy="model")
    with pytest.raises(
        ValueError, match=r"schedule must call at least one component, e.g. schedule=\['te'\]; got \[\]"
    ):
        plan_offload(PARTS, [], strategy="model")
    with pytest.raises(
        ValueError, match=r"schedule names a component that is not given: 'unet'; known: \['dit', 'te', 'vae'\]"
    ):
        plan_offload(PARTS, ["unet"], strategy="model")
    with pytest.raises(
        ValueError,
        match=r"strategy must be one of resident, model, layer, diffsynth, e.g. strategy='model'; got 'sequential'",
    ):
        plan_offload(PARTS, SCHEDULE, strategy="sequential")
    with pytest.raises(
        ValueError, match=r"budget must be a whole number of bytes >= 0, e.g. budget=25769803776; got -1"
    ):
        plan_offload(PARTS, SCHEDULE, strategy="layer", budget=-1)
    with pytest.raises(ValueError, match=r"activation_bytes names a component that is not given: 'unet'"):
        plan_offload(PARTS, SCHEDULE, strategy="model", activation_bytes={"unet": 1})
    with pytest.raises(ValueError, match=r"activation_bytes\['dit'\] must be a whole number of bytes >= 0, .* got 1.5"):
        plan_offload(PARTS, SCHEDULE, strategy="model", activation_bytes={"dit": 1.5})
    with pytest.raises(
        ValueError, match=r"budget must hold the largest layer of 'dit' plus its activations, budget >= 35; got 34"
    ):
        plan_offload(PARTS, ["dit"], strategy="layer", budget=34, activation_bytes={"dit": 5})
    plan = plan_offload(PARTS, ["te"], strategy="model")
    with pytest.raises(ValueError, match=r"component must be one the schedule calls, e.g. 'te'; got 'vae'"):
        plan.moved_per_call("vae")
    assert STRATEGIES == ("resident", "model", "layer")  # "diffsynth" needs a limit: not a config's strategy
    with pytest.raises(ValueError, match=r"vram_limit must be a number of GiB >= 0 or None, e.g. vram_limit=20"):
        diffsynth_residency([1], vram_limit=-1)
    with pytest.raises(ValueError, match=r"resident must give one flag per layer \(2\); got 1"):
        diffsynth_residency([1, 2], vram_limit=1, resident=[True])
    with pytest.raises(ValueError, match=r"used_bytes must be a whole number of bytes >= 0"):
        diffsynth_residency([1], vram_limit=1, used_bytes=-5)


GiB = 2**30


def test_diffsynth_rule_checks_used_memory_before_each_layer_with_no_reserve():
    sizes = [1 * GiB, 3 * GiB, 3 * GiB, GiB // 2]
    # in use before each layer: 0, 1, 4 GiB (< 5: kept), then 7 GiB: the last one streams; 7 GiB > the limit
    assert diffsynth_residency(sizes, vram_limit=5) == (True, True, True, False)
    assert diffsynth_residency(sizes, vram_limit=None) == (True,) * 4  # DiffSynth's default: all resident
    assert diffsynth_residency(sizes, vram_limit=0) == (False,) * 4  # keep nothing
    assert diffsynth_residency(sizes, vram_limit=5, used_bytes=6 * GiB) == (False,) * 4  # the device is "full"
    # a streamed layer asks again at the next forward: freed memory elsewhere makes it resident
    first = diffsynth_residency(sizes, vram_limit=8, used_bytes=2 * GiB)
    assert first == (True, True, True, False)  # 2, 3, 6 GiB before the first three, 9 before the last
    assert diffsynth_residency(sizes, vram_limit=8, used_bytes=0, resident=first) == (True,) * 4


def test_diffsynth_strategy_replays_the_rule_and_drops_residency_at_a_switch():
    parts = [Component("dit", (10, 30, 30, 5)), Component("vae", 20)]
    plan = plan_offload(parts, ["dit", "dit", "vae", "dit"], strategy="diffsynth", budget=50)
    # bytes, in "GiB" of one byte here: 0, 10, 40 in use before the first three (< 50: kept), 70 before the last
    assert moved(plan) == [75, 5, 20, 75]  # copied in again after the switch, the small one streamed per call
    assert [s.weight_bytes for s in plan.stages] == [75, 75, 20, 75]
    assert plan.peak_bytes == 75 > plan.budget  # no reserve: above the limit
    none = plan_offload(parts, ["dit", "dit"], strategy="diffsynth")
    assert moved(none) == [75, 0]  # vram_limit=None: everything stays
    zero = plan_offload(parts, ["dit", "dit"], strategy="diffsynth", budget=0)
    assert moved(zero) == [75, 75] and zero.peak_bytes == 30  # keep none: the planner's "layer" without a budget
    busy = plan_offload(parts, ["dit", "dit"], strategy="diffsynth", budget=50, activation_bytes={"dit": 45})
    assert moved(busy) == [75, 65]  # 45 + 0 < 50 keeps 10; 55 >= 50: the other three stream at every call


def test_an_empty_device_takes_the_first_layer_under_any_positive_limit():
    # the rule compares what is in use *before* the layer with the limit and reserves nothing for
    # the layer itself: with nothing in use (used_bytes defaults to 0) the first layer always loads
    tiny = 2**-31  # half a byte, in GiB
    assert diffsynth_residency([2**30], vram_limit=tiny) == (True,)
    assert diffsynth_residency([2**30], vram_limit=tiny, used_bytes=1) == (False,)
    assert diffsynth_residency([2**30, 1], vram_limit=tiny) == (True, False)


def test_a_budget_of_exactly_the_largest_layer_streams_every_layer():
    # the error names the rule "budget >= largest layer + activations": equality is allowed
    parts = [Component("m", (5, 30, 5))]
    plan = plan_offload(parts, ["m"], strategy="layer", budget=30)
    assert [s.weight_bytes for s in plan.stages] == [30]  # room for the 30 alone: nothing stays
    with pytest.raises(ValueError, match="budget >= 30"):
        plan_offload(parts, ["m"], strategy="layer", budget=29)
