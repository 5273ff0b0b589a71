"""DiffSynth Lab 08 against DiffSynth-Studio: its VRAM management run on tiny modules, next to infralens's model.

DiffSynth-Studio's wrappers (``core/vram/layers.py``) decide residency at run
time by asking the device how much memory is in use (``torch.<device>.mem_get_info``).
On the CPU that function is replaced here by one whose "used" memory is what
the test says: memory used elsewhere plus a size assigned to every resident
layer. Residency is visible as the layer's dtype: the onload copy is float32,
the prepared (resident) one float64. Then:

* the rule at each forward equals :func:`infralens.memory.diffsynth_residency`
  on the same sizes (``vram_limit=None`` keeps everything, 0 nothing, a limit
  is a threshold on the whole device's use with no reserve);
* a streamed layer asks again at every forward; a stage switch
  (``load_models_to_device``) drops residency; a streamed layer's copy is
  synchronous, from unpinned memory;
* ``ModelPool`` wraps a model only when its config names an offload dtype and
  device; ``from_pretrained``'s default ``vram_limit=None`` reaches the wrappers;
* DiffSynth's offload units of the 14B DiT, counted on the meta device.
"""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from infralens.memory import Component, diffsynth_residency, plan_offload, wan21_t2v_components

from ._diffsynth_wan import diffsynth_module, wan_video

pytestmark = pytest.mark.upstream

GiB = 2**30
HOST, DEVICE = torch.float32, torch.float64  # onload (host copy) and preparing/computation (resident) dtypes
CONFIG = dict(
    offload_dtype=HOST, offload_device="cpu", onload_dtype=HOST, onload_device="cpu",
    preparing_dtype=DEVICE, preparing_device="cpu", computation_dtype=DEVICE, computation_device="cpu",
)  # fmt: skip


class Device:
    """A fake ``mem_get_info``: used = ``other`` + the sizes of the resident (state 2) layers, of 80 GiB."""

    def __init__(self, layers, sizes, other=0):
        self.layers, self.sizes, self.other, self.calls = layers, sizes, other, 0

    def mem_get_info(self, device=None):
        self.calls += 1
        used = self.other + sum(s for s, m in zip(self.sizes, self.layers, strict=True) if m.state == 2)
        return 80 * GiB - used, 80 * GiB  # (free, total) in bytes


def wrapped(sizes, vram_limit, monkeypatch, other=0):
    """Tiny Linears wrapped by DiffSynth's own enable_vram_management, onloaded as before a stage."""
    layers = diffsynth_module("core.vram.layers")
    net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in sizes])
    net = layers.enable_vram_management(net, {torch.nn.Linear: layers.AutoWrappedLinear}, CONFIG,
                                        vram_limit=vram_limit)  # fmt: skip
    units = list(net)
    assert all(isinstance(u, layers.AutoWrappedLinear) for u in units)
    for u in units:
        u.onload()  # what load_models_to_device(["dit"]) does: state 1, weights in the onload dtype
    device = Device(units, sizes, other)
    monkeypatch.setattr(torch.cpu, "mem_get_info", device.mem_get_info, raising=False)
    return net, units, device


def forward(net):
    with torch.no_grad():
        net(torch.zeros(1, 4, dtype=DEVICE))


def resident(units):
    return tuple(u.state == 2 and u.weight.dtype == DEVICE for u in units)


CASES = [
    ([1, 3, 3, 0.5], 5, 0),  # 0, 1, 4 GiB in use before the first three: kept; 7 before the last: streamed
    ([1, 3, 3, 0.5], None, 0),  # DiffSynth's default: everything resident
    ([1, 3, 3, 0.5], 0, 0),  # keep nothing
    ([1, 3, 3, 0.5], 5, 6),  # 6 GiB used by something else: nothing becomes resident
    ([2, 2, 2, 2, 2], 7, 1),
    ([0.75] * 8, 3.5, 0.25),
]


@pytest.mark.parametrize(("sizes", "limit", "other"), CASES)
def test_the_residency_rule_is_diffsynth_residency(sizes, limit, other, monkeypatch):
    size_bytes = [int(s * GiB) for s in sizes]
    net, units, _ = wrapped(size_bytes, limit, monkeypatch, other=int(other * GiB))
    forward(net)
    assert resident(units) == diffsynth_residency(size_bytes, vram_limit=limit, used_bytes=int(other * GiB))


def test_resident_layers_can_exceed_the_limit(monkeypatch):
    sizes = [1 * GiB, 3 * GiB, 3 * GiB, GiB // 2]
    net, units, _ = wrapped(sizes, 5, monkeypatch)
    forward(net)
    assert sum(s for s, r in zip(sizes, resident(units), strict=True) if r) == 7 * GiB  # above the 5 GiB limit


def test_a_streamed_layer_asks_again_at_every_forward(monkeypatch):
    sizes = [1 * GiB, 3 * GiB, 3 * GiB, GiB // 2]
    net, units, device = wrapped(sizes, 5, monkeypatch, other=2 * GiB)  # 2 GiB used elsewhere
    forward(net)
    first = resident(units)
    assert first == diffsynth_residency(sizes, vram_limit=5, used_bytes=2 * GiB) == (True, True, False, False)
    device.calls = 0
    forward(net)
    assert device.calls == first.count(False) == 2  # only the streamed layers ask, again
    device.other = 0  # the 2 GiB are freed (another process ends, the cache is emptied)
    forward(net)
    assert resident(units) == diffsynth_residency(sizes, vram_limit=5, resident=first) == (True, True, True, False)


def test_a_stage_switch_drops_residency(monkeypatch):
    """BasePipeline.load_models_to_device offloads every managed model not named, then onloads the named ones."""
    base = diffsynth_module("diffusion.base_pipeline").BasePipeline
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)  # absent on CPU builds
    sizes = [1 * GiB, 3 * GiB, 3 * GiB, GiB // 2]
    net, units, _ = wrapped(sizes, 5, monkeypatch)
    vae, _, _ = wrapped([GiB], None, monkeypatch)
    monkeypatch.setattr(torch.cpu, "mem_get_info", Device(units, sizes).mem_get_info, raising=False)
    pipe = torch.nn.Module()
    pipe.dit, pipe.vae = net, vae
    pipe.vram_management_enabled, pipe.device_type = True, "cpu"
    base.load_models_to_device(pipe, ["dit"])
    forward(net)
    assert resident(units) == (True, True, True, False)
    base.load_models_to_device(pipe, ["vae"])
    assert [u.state for u in units] == [0, 0, 0, 0]  # back to the host (a device-to-host copy on a GPU)
    base.load_models_to_device(pipe, ["dit"])
    assert [u.state for u in units] == [1, 1, 1, 1]  # decided again at the next forward
    parts = [Component("dit", tuple(sizes)), Component("vae", GiB)]
    plan = plan_offload(parts, ["dit", "vae", "dit"], strategy="diffsynth", budget=5 * GiB)
    assert plan.stages[2].moved_bytes == plan.stages[0].moved_bytes == sum(sizes)  # everything copied in again


class CopyLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.non_blocking = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten.copy_.default:
            self.non_blocking.append(kwargs.get("non_blocking", args[2] if len(args) > 2 else False))
        return func(*args, **kwargs)


def test_a_streamed_layer_runs_on_a_synchronous_copy_from_unpinned_memory(monkeypatch):
    _, units, _ = wrapped([GiB], 0, monkeypatch)  # keep nothing: the layer is streamed
    with CopyLog() as log, torch.no_grad():
        units[0](torch.zeros(1, 4, dtype=DEVICE))
    assert units[0].state == 1
    assert log.non_blocking == [False, False]  # weight and bias, each an empty_like + copy_
    assert not units[0].weight.is_pinned()


def tiny_dit_file(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch")
    dit = diffsynth_module("models.wan_video_dit")
    kw = dict(dim=24, in_dim=16, ffn_dim=48, out_dim=16, text_dim=32, freq_dim=32, eps=1e-6, patch_size=[1, 2, 2],
              num_heads=2, num_layers=1, has_image_input=False)  # fmt: skip
    torch.manual_seed(0)
    path = str(tmp_path / "tiny_wan_dit.safetensors")
    safetensors.save_file({k: v.contiguous() for k, v in dit.WanModel(**kw).state_dict().items()}, path)
    return path, {"model_name": "wan_video_dit", "model_class": "diffsynth.models.wan_video_dit.WanModel",
                  "extra_kwargs": kw}  # fmt: skip


def wrappers(model):
    layers = diffsynth_module("core.vram.layers")
    return [m for m in model.modules() if isinstance(m, layers.AutoTorchModule)]


def test_offload_needs_an_offload_dtype_and_device_not_just_a_vram_limit(tmp_path):
    pool = diffsynth_module("models.model_loader").ModelPool()
    path, config = tiny_dit_file(tmp_path)
    default = pool.default_vram_config()
    assert (default["offload_dtype"], default["offload_device"]) == (None, None)
    plain = pool.load_model_file(config, path, default, vram_limit=8)
    assert wrappers(plain) == [] and not getattr(plain, "vram_management_enabled", False)
    managed = pool.load_model_file(config, path, {**default, "offload_dtype": torch.float32, "offload_device": "cpu"},
                                   vram_limit=8)  # fmt: skip
    units = wrappers(managed)
    assert managed.vram_management_enabled and units
    assert {u.vram_limit for u in units} == {8}


def test_from_pretrained_defaults_to_no_limit_and_then_keeps_every_layer(tmp_path, monkeypatch):
    wv = wan_video()
    loader = diffsynth_module("models.model_loader")
    files = diffsynth_module("core.loader.file")
    ModelConfig = diffsynth_module("core.loader.config").ModelConfig
    path, config = tiny_dit_file(tmp_path)
    entry = {**config, "model_hash": files.hash_model_file(path)}  # registered as a real checkpoint's hash is
    loader.MODEL_CONFIGS.append(entry)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            pipe = wv.WanVideoPipeline.from_pretrained(
                torch_dtype=torch.float32, device="cpu", tokenizer_config=None,
                model_configs=[ModelConfig(path=path, offload_dtype=torch.float32, offload_device="cpu")],
            )  # fmt: skip
    finally:
        loader.MODEL_CONFIGS.remove(entry)
    units = wrappers(pipe.dit)
    assert pipe.vram_management_enabled and {u.vram_limit for u in units} == {None}
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)
    asked = []
    monkeypatch.setattr(torch.cpu, "mem_get_info", lambda d=None: asked.append(d) or (GiB, GiB), raising=False)
    pipe.load_models_to_device(["dit"])
    assert {u.state for u in units} == {1}
    with torch.no_grad():
        wv.model_fn_wan_video(dit=pipe.dit, latents=torch.randn(1, 16, 1, 4, 4), timestep=torch.tensor([500.0]),
                              context=torch.randn(1, 5, 32))  # fmt: skip
    used = [u for u in units if u.state != 0]
    assert used and {u.state for u in used} == {2} and asked == []  # resident without asking the device


def test_the_14b_dit_offload_units():
    """DiffSynth's module map for WanModel on the 14B DiT: 727 units, the largest the timestep projection."""
    layers = diffsynth_module("core.vram.layers")
    maps = diffsynth_module("configs.vram_management_module_maps").VRAM_MANAGEMENT_MODULE_MAPS
    loader = diffsynth_module("models.model_loader").ModelPool()
    module_map = {loader.import_model_class(k): loader.import_model_class(v)
                  for k, v in maps["diffsynth.models.wan_video_dit.WanModel"].items()}  # fmt: skip
    dit = diffsynth_module("models.wan_video_dit")
    with torch.device("meta"):
        model = dit.WanModel(dim=5120, in_dim=16, ffn_dim=13824, out_dim=16, text_dim=4096, freq_dim=256, eps=1e-6,
                             patch_size=(1, 2, 2), num_heads=40, num_layers=40, has_image_input=False)  # fmt: skip
    cfg = {k: (torch.bfloat16 if k.endswith("dtype") else "cpu") for k in CONFIG}
    model = layers.enable_vram_management(model, module_map, cfg, vram_limit=10.0)
    units = [m for m in model.modules() if isinstance(m, layers.AutoTorchModule)]

    def own(u):
        if isinstance(u, layers.AutoWrappedNonRecurseModule):
            return sum(p.numel() for p in u.module.parameters(recurse=False))
        if isinstance(u, layers.AutoWrappedLinear):
            return u.weight.numel() + (0 if u.bias is None else u.bias.numel())
        return sum(p.numel() for p in u.module.parameters())

    sizes = [own(u) for u in units]
    assert len(units) == 727
    assert sum(sizes) * 2 == wan21_t2v_components()[1].total_bytes  # every parameter in exactly one unit (bf16)
    largest = max(sizes)
    assert largest == 5120 * 6 * 5120 + 6 * 5120  # time_projection: Linear(dim, 6 dim)
    assert round(2 * largest / 2**20) == 300  # MiB in bf16
    assert max(wan21_t2v_components()[1].layer_bytes) > 2 * largest  # infralens's unit is a whole block


@pytest.mark.parametrize("onload_on_host", [False, True])
def test_streaming_needs_the_onload_device_on_the_host(onload_on_host, monkeypatch):
    """With only the offload pair, onload and preparing default to the computation device: the stage switch puts
    the whole model there before its first forward, whatever vram_limit says. ``meta`` stands in for the GPU."""
    base = diffsynth_module("diffusion.base_pipeline").BasePipeline
    layers = diffsynth_module("core.vram.layers")
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)  # absent on CPU builds
    config = dict(offload_dtype=HOST, offload_device="cpu", computation_dtype=HOST, computation_device="meta")
    if onload_on_host:
        config.update(onload_dtype=HOST, onload_device="cpu")  # the low-VRAM recipe: only preparing is on the GPU
    net = torch.nn.Sequential(*[torch.nn.Linear(4, 4) for _ in range(3)])
    net = layers.enable_vram_management(net, {torch.nn.Linear: layers.AutoWrappedLinear}, config, vram_limit=0)
    pipe = torch.nn.Module()
    pipe.dit = net
    pipe.vram_management_enabled, pipe.device_type = True, "cpu"
    base.load_models_to_device(pipe, ["dit"])  # before the loop; no forward has run, vram_limit=0 asked nothing
    devices = {p.device.type for p in net.parameters()}
    assert devices == ({"cpu"} if onload_on_host else {"meta"})
