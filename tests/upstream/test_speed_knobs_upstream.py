"""Lab 12 (Inference Speed Knobs Reading) against diffusers and torch, run on a tiny WanTransformer3DModel.

Each knob is applied the diffusers way to one copy of the model and the infralens way to another,
and the two are compared: what runs, what is skipped, what is stored, what moves and when.
"""

from __future__ import annotations

import copy
import logging
import warnings

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

diffusers = pytest.importorskip("diffusers")

from diffusers import FlowMatchEulerDiscreteScheduler, WanTransformer3DModel  # noqa: E402
from diffusers.hooks import FirstBlockCacheConfig  # noqa: E402
from diffusers.hooks import group_offloading as diffusers_group_offloading  # noqa: E402
from diffusers.models.attention_dispatch import attention_backend  # noqa: E402

from infralens.memory import LAYERWISE_SKIP_PATTERNS, GroupOffload, enable_layerwise_casting, stored_bytes  # noqa: E402
from infralens.pipelines import FirstBlockCache  # noqa: E402

pytestmark = [pytest.mark.upstream, pytest.mark.filterwarnings("ignore::FutureWarning")]


def tiny_wan(num_layers: int = 6) -> WanTransformer3DModel:
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=4,
            text_dim=16, freq_dim=16, ffn_dim=32, num_layers=num_layers, rope_max_seq_len=32,
        ).eval()  # fmt: skip


def inputs(seed: int = 1, frames: int = 2, size: int = 8, text_len: int = 5, batch: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 4, frames, size, size, generator=g)  # (B, C, F, H, W)
    return x, torch.tensor([500] * batch), torch.randn(batch, text_len, 16, generator=g)


def guided_loop(model, context, steps: int = 20, scale: float = 4.0):
    """A Wan-style flow loop with classifier-free guidance; returns the sample and the blocks run per call."""
    sched = FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(steps)
    x, _, text = inputs()
    negative = torch.zeros_like(text)
    ran: list[int] = []
    count = [0]
    hooks = [b.ffn.register_forward_hook(lambda *a: count.__setitem__(0, count[0] + 1)) for b in model.blocks]
    for t in sched.timesteps:
        with torch.no_grad():
            count[0] = 0
            with context("cond"):
                cond = model(x, t.reshape(1), text).sample
            ran.append(count[0])
            count[0] = 0
            with context("uncond"):
                uncond = model(x, t.reshape(1), negative).sample
            ran.append(count[0])
        x = sched.step(uncond + scale * (cond - uncond), t, x).prev_sample
    for h in hooks:
        h.remove()
    return x, ran


# --- first-block cache -----------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [None, 0.2])
def test_first_block_cache_is_diffusers(threshold):
    # None: both sides left at their defaults (diffusers' FirstBlockCacheConfig and ours)
    base = tiny_wan()
    theirs = copy.deepcopy(base)
    theirs.enable_cache(FirstBlockCacheConfig() if threshold is None else FirstBlockCacheConfig(threshold=threshold))
    their_x, their_ran = guided_loop(theirs, theirs.cache_context)
    ours = copy.deepcopy(base)
    cache = FirstBlockCache(ours.blocks) if threshold is None else FirstBlockCache(ours.blocks, threshold=threshold)
    our_x, our_ran = guided_loop(ours, cache.context)
    assert torch.equal(our_x, their_x)
    assert our_ran == their_ran
    assert [6 if d.computed else 1 for d in cache.decisions()] == their_ran
    assert cache.skipped_blocks == sum(6 - n for n in their_ran)


def test_first_block_cache_skips_more_and_moves_further_as_the_threshold_grows():
    base = tiny_wan()
    reference, full = guided_loop(base, lambda name: torch.no_grad())
    assert set(full) == {6}
    skipped, moved = [], []
    for threshold in (0.05, 0.1, 0.2, 0.4):
        model = copy.deepcopy(base)
        model.enable_cache(FirstBlockCacheConfig(threshold=threshold))
        x, ran = guided_loop(model, model.cache_context)
        skipped.append(sum(6 - n for n in ran))
        moved.append(((x - reference).norm() / reference.norm()).item())
    assert skipped == sorted(skipped) and skipped[0] > 0 and skipped[-1] > 150  # of 240 block calls
    assert moved == sorted(moved) and moved[0] > 0 and moved[-1] > 0.01  # a skipped step is not free
    assert FirstBlockCacheConfig().threshold == 0.05


def test_first_block_cache_keeps_one_state_per_context():
    model = tiny_wan()
    model.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    _, ran = guided_loop(model, model.cache_context)
    cond, uncond = ran[0::2], ran[1::2]
    assert cond[0] == uncond[0] == 6  # each context computes its first call in full
    assert cond != uncond  # and then decides on its own residuals


def test_first_block_cache_needs_a_context():
    model = tiny_wan()
    model.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    with pytest.raises(ValueError, match="No cache context is set"), torch.no_grad():
        model(*inputs())


# --- layerwise casting ------------------------------------------------------------------------------


class Matmuls(TorchDispatchMode):
    """The dtypes of the operands of every matrix product that runs."""

    def __init__(self):
        super().__init__()
        self.dtypes: set[torch.dtype] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func.overloadpacket.__name__ in {"mm", "addmm", "bmm", "baddbmm", "_scaled_mm", "convolution"}:
            self.dtypes |= {a.dtype for a in args if isinstance(a, torch.Tensor)}
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("compute", [torch.float32, torch.bfloat16])
def test_layerwise_casting_is_diffusers(compute):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = tiny_wan(2).to(compute)
    x, t, text = inputs()
    x, text = x.to(compute), text.to(compute)
    theirs = copy.deepcopy(base)
    theirs.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=compute)
    ours = copy.deepcopy(base)
    skip = (*LAYERWISE_SKIP_PATTERNS, *base._keep_in_fp32_modules, *base._skip_layerwise_casting_patterns)
    cast = enable_layerwise_casting(ours, torch.float8_e4m3fn, compute, skip_patterns=skip)
    assert {n: p.dtype for n, p in ours.named_parameters()} == {n: p.dtype for n, p in theirs.named_parameters()}
    assert stored_bytes(ours) == stored_bytes(theirs)
    assert len(cast) == 20 and all(".norm" not in n and "embedding" not in n for n in cast)
    with torch.no_grad(), Matmuls() as seen:
        their_out = theirs(x, t, text).sample
    assert seen.dtypes == {compute}  # every product in the compute dtype: fp8 is only how weights are stored
    with torch.no_grad():
        assert torch.equal(ours(x, t, text).sample, their_out)
    assert {p.dtype for n, p in theirs.named_parameters() if n.endswith("to_q.weight")} == {torch.float8_e4m3fn}


def test_layerwise_casting_keeps_norms_embeddings_and_tables():
    model = tiny_wan(2)
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
    kept = {n for n, p in model.named_parameters() if p.dtype == torch.float32}
    assert "scale_shift_table" in kept and "blocks.0.scale_shift_table" in kept  # no leaf layer owns them
    assert {"patch_embedding.weight", "proj_out.weight", "blocks.0.norm2.weight"} <= kept
    assert any(n.startswith("condition_embedder.") for n in kept)
    before, after = sum(stored_bytes(tiny_wan(2)).values()), sum(stored_bytes(model).values())
    assert after < 0.6 * before


# --- group offloading -------------------------------------------------------------------------------


def _diffusers_events(model, monkeypatch) -> list[tuple[str, str]]:
    events: list[tuple[str, str]] = []
    names = {id(m): n for n, m in model.named_modules()}

    def group_name(group):
        if not group.modules or group.onload_leader is model:
            return "top-level"
        idx = [names[id(m)].split(".")[-1] for m in group.modules]
        return f"blocks_{idx[0]}_{idx[-1]}"

    cls = diffusers_group_offloading.ModuleGroup
    onload, offload = cls.onload_, cls.offload_
    monkeypatch.setattr(cls, "onload_", lambda self: (events.append(("onload", group_name(self))), onload(self))[1])
    monkeypatch.setattr(cls, "offload_", lambda self: (events.append(("offload", group_name(self))), offload(self))[1])
    model.enable_group_offload(onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=2)
    for i, block in enumerate(model.blocks):  # a submodule runs after the block's group was onloaded
        block.attn1.register_forward_pre_hook(lambda m, a, i=i: events.append(("compute", f"blocks.{i}")))
    events.clear()
    with torch.no_grad():
        model(*inputs())
    return events


def test_group_offload_schedule_is_diffusers(monkeypatch):
    base = tiny_wan(5)
    theirs = _diffusers_events(copy.deepcopy(base), monkeypatch)
    ours_model = copy.deepcopy(base)
    off = GroupOffload(ours_model, num_blocks_per_group=2)
    with torch.no_grad():
        ours_model(*inputs())
    assert [(e.action, e.name) for e in off.events] == theirs
    assert theirs[:3] == [("onload", "top-level"), ("onload", "blocks_0_1"), ("compute", "blocks.0")]
    assert theirs[-2:] == [("offload", "blocks_4_4"), ("offload", "top-level")]
    sizes = off.group_bytes()
    assert off.peak_resident_bytes() == sizes["top-level"] + sizes["blocks_0_1"]


def test_group_offload_groups_every_sequential_child_like_diffusers(monkeypatch):
    # the library's TinyDiT keeps its embedders in nn.Sequential children: diffusers' apply_group_offloading,
    # which takes any nn.Module, makes groups of them too, and moves the same groups in the same order
    from infralens.nets import TinyDiT

    base = TinyDiT(latent_channels=4, text_dim=32, dim=64, num_layers=6)
    z, t, text = torch.randn(1, 4, 16, 16), torch.tensor([500.0]), torch.randn(1, 7, 32)
    theirs, events = copy.deepcopy(base), []
    names = {id(m): n for n, m in theirs.named_modules()}

    def group_name(group):
        if group.onload_leader is theirs:
            return "top-level"
        parent, first = names[id(group.modules[0])].rsplit(".", 1)
        return f"{parent}_{first}_{names[id(group.modules[-1])].rsplit('.', 1)[1]}"

    cls = diffusers_group_offloading.ModuleGroup
    onload, offload = cls.onload_, cls.offload_
    monkeypatch.setattr(cls, "onload_", lambda self: (events.append(("onload", group_name(self))), onload(self))[1])
    monkeypatch.setattr(cls, "offload_", lambda self: (events.append(("offload", group_name(self))), offload(self))[1])
    diffusers_group_offloading.apply_group_offloading(
        theirs, onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=2
    )
    events.clear()
    with torch.no_grad():
        their_out = theirs(z, t, text)
    ours = copy.deepcopy(base)
    off = GroupOffload(ours, num_blocks_per_group=2)
    with torch.no_grad():
        our_out = ours(z, t, text)
    assert [(e.action, e.name) for e in off.events if e.action != "compute"] == events
    assert ("onload", "time_embedding_0_1") in events and ("onload", "text_embedding_2_2") in events
    assert torch.equal(our_out, their_out)


def test_group_offload_refuses_streams_on_a_cpu_onload_device():
    model = tiny_wan(2)
    with pytest.raises(ValueError, match="requires an onload device whose backend implements streams"):
        model.enable_group_offload(onload_device=torch.device("cpu"), num_blocks_per_group=1, use_stream=True)
    with pytest.raises(ValueError, match="num_blocks_per_group"):
        model.enable_group_offload(onload_device=torch.device("cpu"), offload_type="block_level")


# --- attention kernels and compile --------------------------------------------------------------------


class Ops(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(func.overloadpacket.__name__)
        return func(*args, **(kwargs or {}))


def test_wan_attention_runs_the_cpu_flash_kernel_unless_told_otherwise():
    model = tiny_wan(2)
    with torch.no_grad(), Ops() as default:
        model(*inputs())
    assert default.ops.count("_scaled_dot_product_flash_attention_for_cpu") == 4  # 2 blocks x (self, cross)
    with torch.no_grad(), attention_backend("_native_math"), Ops() as math:
        model(*inputs())
    assert "_scaled_dot_product_flash_attention_for_cpu" not in math.ops and math.ops.count("_safe_softmax") == 4
    with (
        pytest.raises(RuntimeError, match="No viable backend"),
        torch.no_grad(),
        attention_backend("_native_efficient"),
    ):
        model(*inputs())


class Count:
    def __init__(self):
        self.graphs = 0

    def __call__(self, gm, example_inputs):
        self.graphs += 1
        return gm.forward


def test_compile_repeated_blocks_compiles_one_graph_for_every_block():
    torch._dynamo.reset()
    model, counter = tiny_wan(3), Count()
    assert model._repeated_blocks == ["WanTransformerBlock"]
    model.compile_repeated_blocks(backend=counter)
    after = {}
    for change, kwargs in [
        ("first", {}), ("again", {}), ("64 tokens", {"size": 16}), ("36 tokens", {"size": 12}),
        ("text 7", {"text_len": 7}), ("batch 2", {"batch": 2}), ("3 frames", {"frames": 3}),
    ]:  # fmt: skip
        with torch.no_grad():
            model(*inputs(**kwargs))
        after[change] = counter.graphs
    assert after == {
        "first": 1, "again": 1, "64 tokens": 2, "36 tokens": 2, "text 7": 3, "batch 2": 4, "3 frames": 4,
    }  # fmt: skip
    torch._dynamo.reset()


@pytest.mark.parametrize("knob", ["first-block cache", "layerwise casting", "group offload"])
def test_fullgraph_regional_compile_cannot_trace_the_knobs_hooks(knob):
    """compile_repeated_blocks(fullgraph=True) refuses a block carrying any of these knobs' hooks; without fullgraph
    the block compiles in pieces around the hook (more graphs than the plain model's one)."""

    def build():
        model = tiny_wan(3)
        if knob == "first-block cache":
            model.enable_cache(FirstBlockCacheConfig(threshold=0.1))  # its decision is torch.compiler.disable'd
        elif knob == "layerwise casting":  # each layer's hook calls module.to(dtype) inside the forward
            model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=torch.float32)
        else:  # onload_ and offload_ are torch.compiler.disable'd
            model.enable_group_offload(
                onload_device=torch.device("cpu"), offload_type="block_level", num_blocks_per_group=1
            )
        return model

    def forward(model):
        context = model.cache_context("cond") if knob == "first-block cache" else torch.no_grad()
        with torch.no_grad(), context:
            return model(*inputs()).sample

    torch._dynamo.reset()
    plain, counter = tiny_wan(3), Count()
    plain.compile_repeated_blocks(backend=counter, fullgraph=True)
    with torch.no_grad():
        plain(*inputs())
    assert counter.graphs == 1  # the model without hooks traces whole
    torch._dynamo.reset()
    model = build()
    model.compile_repeated_blocks(backend=Count(), fullgraph=True)
    with pytest.raises(torch._dynamo.exc.Unsupported):
        forward(model)
    torch._dynamo.reset()
    model, counter = build(), Count()
    model.compile_repeated_blocks(backend=counter)
    assert torch.equal(forward(model), forward(build()))  # runs, with graph breaks
    assert counter.graphs > 1
    torch._dynamo.reset()


def test_dynamo_runs_eagerly_after_the_recompile_limit():
    """Past torch._dynamo.config.recompile_limit recompiles of one code object Dynamo stops compiling it, runs it
    eagerly and only logs a warning."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 4))

        def forward(self, x):
            return torch.relu(x @ self.weight) + 1

    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    block, counter = Block(), Count()
    block.compile(backend=counter, dynamic=False)  # every new batch size is a new graph
    log, handler = [], logging.Handler()
    handler.emit = lambda record: log.append(record.getMessage())
    logger = logging.getLogger("torch._dynamo")
    logger.addHandler(handler)
    try:
        for n in range(1, limit + 4):
            x = torch.randn(n, 4)
            assert torch.equal(block(x), torch.relu(x @ block.weight) + 1)  # still right: eager
    finally:
        logger.removeHandler(handler)
        torch._dynamo.reset()
    assert counter.graphs == limit  # no graph after the limit
    assert any("recompile_limit" in m for m in log)
