"""Tracer: forward hooks and explicit records, tagged by stage, merged into a table."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from infralens.pipelines import Tracer, TraceRow


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(4, 4)

    def forward(self, latents, timesteps, *, scale=None):
        return self.proj(latents) * (1 if scale is None else scale)


def test_hooks_record_named_arguments_keywords_and_output():
    tracer, net = Tracer(), TwoInputs()
    with tracer.stage("loop"), tracer.watch(net, "dit"):
        net(torch.zeros(2, 4), torch.ones(2, dtype=torch.float64), scale=torch.tensor(2.0))
        net(torch.zeros(2, 4), 7)  # a non-tensor argument is not a boundary
    assert [(r.stage, r.boundary, r.shape, r.dtype) for r in tracer.rows] == [
        ("loop", "dit in: latents", (2, 4), torch.float32),
        ("loop", "dit in: timesteps", (2,), torch.float64),
        ("loop", "dit in: scale", (), torch.float32),
        ("loop", "dit out", (2, 4), torch.float32),
        ("loop", "dit in: latents", (2, 4), torch.float32),
        ("loop", "dit out", (2, 4), torch.float32),
    ]


def test_the_hook_is_removed_after_the_block():
    tracer, net = Tracer(), nn.Linear(2, 2)
    with tracer.watch(net, "linear"):
        net(torch.zeros(1, 2))
    net(torch.zeros(1, 2))
    assert len(tracer.rows) == 2 and not net._forward_hooks


def test_stages_nest_and_restore():
    tracer = Tracer()
    with tracer.stage("outer"):
        with tracer.stage("inner"):
            tracer.record("a", torch.zeros(1))
        tracer.record("b", torch.zeros(1))
    tracer.record("c", torch.zeros(1))
    assert [r.stage for r in tracer.rows] == ["inner", "outer", ""]


def test_record_a_module_records_its_weights():
    tracer = Tracer()
    tracer.record("dit weights", nn.Linear(3, 2).to(torch.bfloat16))
    assert tracer.rows == [TraceRow("", "dit weights", None, torch.bfloat16, torch.device("cpu"), "8 params")]


def test_table_merges_repeats_within_a_stage_and_counts_them():
    tracer = Tracer()
    with tracer.stage("load"):
        tracer.record("dit weights", nn.Linear(3, 2))
    with tracer.stage("loop"):
        for _ in range(3):
            tracer.record("latents", torch.zeros(1, 16, 3, 4, 6))
            tracer.record("timestep", torch.zeros(1, dtype=torch.bfloat16), note="1000 sigma")
    with tracer.stage("decode"):
        tracer.record("latents", torch.zeros(1, 16, 3, 4, 6))  # same boundary, other stage: its own row
    assert tracer.table().splitlines() == [
        "  boundary     shape             dtype     device  calls",
        "load",
        "  dit weights  8 params          float32   cpu         1",
        "loop",
        "  latents      (1, 16, 3, 4, 6)  float32   cpu         3",
        "  timestep     (1,)              bfloat16  cpu         3  1000 sigma",
        "decode",
        "  latents      (1, 16, 3, 4, 6)  float32   cpu         1",
    ]


def test_rows_that_differ_are_not_merged():
    tracer = Tracer()
    tracer.record("x", torch.zeros(2))
    tracer.record("x", torch.zeros(3))
    tracer.record("x", torch.zeros(2, dtype=torch.float16))
    assert [line.split()[-1] for line in tracer.table().splitlines()[2:]] == ["1", "1", "1"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda t: t.record("", torch.zeros(1)), "boundary must be a non-empty string, e.g. 'noise'; got ''"),
        (
            lambda t: t.record("x", [1, 2]),
            "value must be a torch.Tensor or an nn.Module with parameters, e.g. torch.zeros(2); got list",
        ),
        (
            lambda t: t.record("x", nn.ReLU()),
            "value must be a torch.Tensor or an nn.Module with parameters, e.g. torch.zeros(2); got ReLU",
        ),
        (
            lambda t: t.watch("dit", "dit").__enter__(),
            "module must be an nn.Module, e.g. nn.Linear(4, 2); got str",
        ),
        (lambda t: t.stage("").__enter__(), "name must be a non-empty string, e.g. 'denoising loop'; got ''"),
    ],
)
def test_refusals(call, message):
    with pytest.raises(ValueError) as info:
        call(Tracer())
    assert str(info.value) == message
