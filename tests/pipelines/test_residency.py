"""stage_residency: what is on the compute device in each stage, under each offload strategy."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from infralens.pipelines import STAGES, layer_bytes, load_components, load_config, stage_calls, stage_residency

ROOT = Path(__file__).resolve().parents[2]
TEXT = (ROOT / "code/diffsynth/lab-01-pipeline-config-reading/pipeline_config.yaml").read_text()


def config(offload="model", guidance="5.0", steps=4):
    text = TEXT.replace("offload: model", f"offload: {offload}")
    text = text.replace("guidance_scale: 5.0", f"guidance_scale: {guidance}")
    return load_config(text.replace("num_inference_steps: 4", f"num_inference_steps: {steps}"))


@pytest.fixture(scope="module")
def modules():
    return load_components(config())


def total(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def test_layer_bytes_split_a_module_into_units(modules):
    for module in modules.values():
        assert sum(layer_bytes(module)) == total(module)
    dit = modules["dit"]
    # the two transformer blocks are separate units of equal size
    block = sum(p.numel() * 4 for p in dit.blocks[0].parameters())
    assert list(layer_bytes(dit)).count(block) == len(dit.blocks) == 2
    assert max(layer_bytes(dit)) == block


def test_layer_bytes_refuses():
    with pytest.raises(ValueError, match=r"^module must have parameters to place on a device; ReLU has none$"):
        layer_bytes(nn.ReLU())
    with pytest.raises(ValueError, match=r"^module must be a torch.nn.Module, e.g. nn.Linear\(4, 2\); got int$"):
        layer_bytes(3)


@pytest.mark.parametrize(
    ("guidance", "steps", "calls"), [("5.0", 4, (2, 8, 1)), ("1.0", 4, (1, 4, 1)), ("3", 7, (2, 14, 1))]
)
def test_stage_calls(guidance, steps, calls):
    assert tuple(stage_calls(config(guidance=guidance, steps=steps)).values()) == calls


def test_resident_keeps_everything_and_copies_once(modules):
    everything = sum(total(m) for m in modules.values())
    rows = stage_residency(config("resident"), modules)
    assert [(r.stage, r.component) for r in rows] == list(STAGES)
    assert all(r.on_device == ("text_encoder", "dit", "vae") for r in rows)
    assert [r.weight_bytes for r in rows] == [everything] * 3
    assert [r.moved_bytes for r in rows] == [everything, 0, 0]


def test_model_offload_keeps_one_component(modules):
    rows = stage_residency(config("model"), modules)
    for row in rows:
        assert row.on_device == (row.component,)
        # copied once when the stage starts, then reused for every call of the stage
        assert row.weight_bytes == row.moved_bytes == total(modules[row.component])
    assert [r.calls for r in rows] == [2, 8, 1]


def test_layer_offload_streams_every_call(modules):
    rows = stage_residency(config("layer"), modules)
    for row in rows:
        module = modules[row.component]
        assert row.weight_bytes == max(layer_bytes(module))
        assert row.moved_bytes == row.calls * total(module)


def test_bf16_text_encoder_weighs_half(modules):
    te = modules["text_encoder"]
    assert next(te.parameters()).dtype == torch.bfloat16
    assert stage_residency(config("model"), modules)[0].weight_bytes == 2 * sum(p.numel() for p in te.parameters())


def test_stage_residency_refuses(modules):
    with pytest.raises(ValueError, match=r"^modules must hold every component, text_encoder, dit, vae; missing: vae$"):
        stage_residency(config(), {k: v for k, v in modules.items() if k != "vae"})
    with pytest.raises(ValueError, match=r"^config must be a PipelineConfig"):
        stage_residency("pipeline_config.yaml", modules)
