"""Lab 11 (DiffSynth) facts against DiffSynth-Studio's own code: Wan 2.2's two experts and the TI2V-5B path.

Each test runs the installed library's functions (compiled on their own, so
``import diffsynth`` and its torchvision dependency are not needed) on
stand-in pipelines and tiny random modules:

* ``WanVideoPipeline.__call__`` switches from ``dit`` to ``dit2`` at the step
  :func:`~infralens.diffusion.expert_switch_step` predicts, for several step
  counts, shifts and boundaries; its default boundary is 0.875 whatever the
  task; it takes one ``cfg_scale`` for both experts; it calls
  ``load_models_to_device`` once more at the switch, and
  ``BasePipeline.load_models_to_device`` then offloads ``dit`` and onloads
  ``dit2``.
* ``ModelPool.fetch_model(..., index=2)`` returns the experts in load order,
  so the order of the model configs decides which one is ``dit``.
* TI2V-5B: the tiny ``WanVideoVAE38`` has 48 latent channels and compresses
  16x in space; ``check_resize_height_width`` with the division factor that
  ``from_pretrained`` derives from it rounds sizes up to multiples of 32;
  ``model_fn_wan_video`` gives per-token timesteps (0 on latent frame 0); the
  loop re-injects the first frame after every step, as
  :func:`~infralens.video.fused_first_frame_sample` does.
"""

from __future__ import annotations

import ast
import functools
import inspect
import json
import typing
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from infralens.diffusion import EXPERTS, expert_schedule, expert_switch_step, pixel_multiple
from infralens.families import get_model
from infralens.memory import wan_dit_layer_params
from infralens.video import first_frame_timesteps, fused_first_frame_sample

from ._diffsynth import import_submodule, load_module, package_dir

pytestmark = pytest.mark.upstream

WAN = "pipelines/wan_video.py"


def _function_node(relative: str, cls: str | None, name: str) -> ast.FunctionDef:
    tree = ast.parse((package_dir() / relative).read_text())
    body = tree.body
    if cls is not None:
        body = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls).body
    for node in body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise LookupError(f"{cls}.{name} not in diffsynth/{relative}")


def _compile(relative: str, cls: str | None, name: str, **namespace):
    """One function (a method as a plain function) of ``diffsynth/<relative>``, with its decorators, alone."""
    node = _function_node(relative, cls, name)
    ns = {
        "torch": torch,
        "np": np,
        "json": json,
        "Image": SimpleNamespace(Image=object),
        "Literal": typing.Literal,
        "Optional": typing.Optional,
        "Union": typing.Union,
        "tqdm": lambda it: it,
        **namespace,
    }
    exec(compile(ast.Module([node], []), str(package_dir() / relative), "exec"), ns)
    return ns[name]


def _init_assignments(relative: str, cls: str, names: tuple[str, ...], target) -> None:
    """Run the lines ``self.<name> = ...`` of ``cls.__init__`` on ``target``."""
    init = _function_node(relative, cls, "__init__")
    for stmt in init.body:
        if isinstance(stmt, ast.Assign) and getattr(stmt.targets[0], "attr", None) in names:
            exec(compile(ast.Module([stmt], []), relative, "exec"), {"self": target})


class Expert(torch.nn.Module):
    """A stand-in expert: remembers its name; the model function below calls it."""

    def __init__(self, name: str, scale: float):
        super().__init__()
        self.name, self.scale = name, scale


class Recorder:
    """``model_fn`` for the stand-in pipeline: records which expert ran at which timestep, returns a velocity."""

    def __init__(self):
        self.calls: list[tuple[str, float]] = []
        self.vace: list[object] = []

    def __call__(self, dit, latents, timestep, **kwargs):
        self.calls.append((dit.name, timestep.item()))
        self.vace.append(kwargs.get("vace"))
        return dit.scale * latents  # a different velocity per expert


def _pipeline(dit, dit2, extra_units=()):
    """A stand-in ``self`` for ``WanVideoPipeline.__call__``: the real scheduler, stub units, recorded loads."""
    pipe = SimpleNamespace(
        scheduler=load_module("diffusion/flow_match.py").FlowMatchScheduler("Wan"),
        units=list(extra_units),
        post_units=[],
        dit=dit,
        dit2=dit2,
        motion_controller=None,
        vace=None,
        vace2=None,
        animate_adapter=None,
        vap=None,
        torch_dtype=torch.float32,
        device="cpu",
        loads=[],
        model_fn=Recorder(),
        vae=SimpleNamespace(decode=lambda latents, **kwargs: latents),
    )
    _init_assignments(WAN, "WanVideoPipeline", ("in_iteration_models", "in_iteration_models_2"), pipe)
    pipe.load_models_to_device = lambda names: pipe.loads.append(tuple(names))

    def unit_runner(unit, pipe_, shared, posi, nega):
        shared.update(unit(shared))
        return shared, posi, nega

    pipe.unit_runner = unit_runner
    return pipe


def _noise(shared):
    return {"latents": torch.randn(1, 4, 2, 4, 4, generator=torch.Generator().manual_seed(0))}


def _wan_call():
    return _compile(WAN, "WanVideoPipeline", "__call__")


@pytest.mark.parametrize(
    ("steps", "shift", "boundary"),
    [(40, 12.0, 0.875), (40, 5.0, 0.9), (50, 5.0, 0.875), (4, 1.0, 0.5), (10, 3.0, 0.99), (7, 5.0, 0.0)],
)
def test_switch_step_matches_the_diffsynth_loop(steps, shift, boundary):
    pipe = _pipeline(Expert("dit", 0.5), Expert("dit2", -0.5), [_noise])
    _wan_call()(
        pipe,
        num_inference_steps=steps,
        sigma_shift=shift,
        switch_DiT_boundary=boundary,
        cfg_scale=1.0,
        output_type="floatpoint",
    )
    ran = tuple(name for name, _ in pipe.model_fn.calls)
    assert ran == expert_schedule(steps, boundary, shift=shift)
    assert ran.count("dit") == expert_switch_step(steps, boundary, shift=shift)


def test_default_boundary_is_the_t2v_one_for_every_task():
    """Leaving switch_DiT_boundary out gives 0.875 (Wan2.2-T2V-A14B's); Wan2.2-I2V-A14B's config says 0.9."""
    default = inspect.signature(_wan_call()).parameters["switch_DiT_boundary"].default
    t2v, i2v = (get_model(f"wan2.2-{task}-a14b")["inference"]["boundary"] for task in ("t2v", "i2v"))
    assert default == t2v != i2v
    pipe = _pipeline(Expert("dit", 0.5), Expert("dit2", -0.5), [_noise])
    i2v = get_model("wan2.2-i2v-a14b")["inference"]
    steps, shift = i2v["sample_steps"], i2v["sample_shift"]
    _wan_call()(pipe, num_inference_steps=steps, sigma_shift=shift, cfg_scale=1.0, output_type="floatpoint")
    high = sum(name == "dit" for name, _ in pipe.model_fn.calls)
    assert high == expert_switch_step(steps, default, shift=shift)
    assert high != expert_switch_step(steps, i2v["boundary"], shift=shift)


def test_one_cfg_scale_for_both_experts():
    """Both experts get the same guidance: two calls per step each, and no second scale is accepted."""
    pipe = _pipeline(Expert("dit", 0.5), Expert("dit2", -0.5), [_noise])
    call = _wan_call()
    call(pipe, num_inference_steps=6, sigma_shift=5.0, cfg_scale=4.0, output_type="floatpoint")
    names = [name for name, _ in pipe.model_fn.calls]
    k = expert_switch_step(6, 0.875, shift=5.0)
    assert names == ["dit"] * (2 * k) + ["dit2"] * (2 * (6 - k))
    with pytest.raises(TypeError, match="cfg_scale_2"):
        call(pipe, num_inference_steps=6, cfg_scale=4.0, cfg_scale_2=3.0)


def test_a_per_expert_guidance_pair_is_refused_at_the_first_guided_step():
    """The released configs give a (low, high) pair; handed to cfg_scale, the loop fails after its first two calls."""
    low, high = get_model("wan2.2-t2v-a14b")["inference"]["sample_guide_scale"]
    pipe = _pipeline(Expert("dit", 0.5), Expert("dit2", -0.5), [_noise])
    with pytest.raises(TypeError, match="converted to an index"):  # tuple * tensor: no per-expert reading
        _wan_call()(pipe, num_inference_steps=6, sigma_shift=5.0, cfg_scale=(low, high), output_type="floatpoint")
    assert [name for name, _ in pipe.model_fn.calls] == ["dit", "dit"]  # prompt and negative prompt, then the error


def test_switch_loads_the_second_expert_once():
    pipe = _pipeline(Expert("dit", 0.5), Expert("dit2", -0.5), [_noise])
    pipe.vace, pipe.vace2 = "vace", "vace2"  # a VACE adapter per expert switches with it
    _wan_call()(pipe, num_inference_steps=10, sigma_shift=5.0, cfg_scale=1.0, output_type="floatpoint")
    k = expert_switch_step(10, 0.875, shift=5.0)
    assert pipe.model_fn.vace == ["vace"] * k + ["vace2"] * (10 - k)
    assert pipe.loads == [pipe.in_iteration_models, pipe.in_iteration_models_2, ("vae",), ()]
    assert "dit" in pipe.in_iteration_models and "dit" not in pipe.in_iteration_models_2
    assert "dit2" in pipe.in_iteration_models_2 and "dit2" not in pipe.in_iteration_models


class Managed(torch.nn.Module):
    """A model under DiffSynth's VRAM management: records onload and offload."""

    vram_management_enabled = True

    def __init__(self, log, name):
        super().__init__()
        self.log, self.label = log, name

    def onload(self):
        self.log.append(("onload", self.label))

    def offload(self):
        self.log.append(("offload", self.label))


def test_load_models_to_device_offloads_dit_and_onloads_dit2(monkeypatch):
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)  # CUDA has it, CPU does not
    load = _compile("diffusion/base_pipeline.py", "BasePipeline", "load_models_to_device")
    log: list[tuple[str, str]] = []
    pipe = torch.nn.Module()
    for name in ("text_encoder", "dit", "dit2", "vae"):
        setattr(pipe, name, Managed(log, name))
    pipe.vram_management_enabled, pipe.device_type = True, "cpu"
    holder = SimpleNamespace()
    _init_assignments(WAN, "WanVideoPipeline", ("in_iteration_models", "in_iteration_models_2"), holder)
    load(pipe, holder.in_iteration_models)
    log.clear()
    load(pipe, holder.in_iteration_models_2)  # the switch
    assert ("offload", "dit") in log and ("onload", "dit2") in log
    assert ("onload", "dit") not in log and ("offload", "dit2") not in log


def _unpack_dits(pipe, dit) -> None:
    """Run the ``if isinstance(dit, list): pipe.dit, pipe.dit2 = dit`` statement of ``from_pretrained``."""
    body = _function_node(WAN, "WanVideoPipeline", "from_pretrained").body
    for stmt in body:
        if isinstance(stmt, ast.If) and "pipe.dit2" in ast.unparse(stmt):
            exec(compile(ast.Module([stmt], []), WAN, "exec"), {"pipe": pipe, "dit": dit, "isinstance": isinstance})
            return
    raise LookupError("from_pretrained no longer unpacks dit, dit2")


def test_expert_order_is_load_order():
    """``fetch_model('wan_video_dit', index=2)`` returns the DiTs in load order: the first becomes ``dit``."""
    fetch = _compile("models/model_loader.py", "ModelPool", "fetch_model")
    high, low = Expert("high", 0.5), Expert("low", -0.5)
    paths = [f"{expert}/diffusion_pytorch_model.safetensors" for expert in ("high_noise_model", "low_noise_model")]
    for models, where in (([high, low], paths), ([low, high], paths[::-1])):
        pool = SimpleNamespace(model=models, model_path=where, model_name=["wan_video_dit"] * 2)
        fetched = fetch(pool, "wan_video_dit", index=2)
        pipe = SimpleNamespace(dit=None, dit2=None)
        _unpack_dits(pipe, fetched)  # from_pretrained's own lines
        assert (pipe.dit, pipe.dit2) == tuple(models)
    # swapped configs: the low-noise expert runs the early, high-noise steps
    pipe = _pipeline(low, high, [_noise])
    _wan_call()(pipe, num_inference_steps=8, sigma_shift=5.0, cfg_scale=1.0, output_type="floatpoint")
    assert pipe.model_fn.calls[0][0] == "low"
    expected = ["low" if e == EXPERTS[0] else "high" for e in expert_schedule(8, 0.875, shift=5.0)]
    assert [n for n, _ in pipe.model_fn.calls] == expected


# The real WanVideoPipeline (from_pretrained, __call__, model_fn_wan_video) on two tiny expert files --------------


def _wp():
    from . import _wan_pipeline  # imports diffsynth.pipelines.wan_video once per session, with stand-ins

    return _wan_pipeline


@pytest.fixture
def expert_files(tmp_path):
    wp = _wp()
    high = wp.save_tiny_dit(tmp_path / "high_noise.safetensors", seed=1)
    low = wp.save_tiny_dit(tmp_path / "low_noise.safetensors", seed=2)
    with wp.registered(high):  # one architecture, one hash: both files match this entry
        yield high, low


def _residency(pipe, steps=10):
    """Run a call; after every load_models_to_device, which experts hold float32 (computation) weights."""
    wp = _wp()
    wp.attach_standins(pipe)
    stages = []
    load = pipe.load_models_to_device

    def recording(names):
        load(names)
        held = {n for n in EXPERTS if {p.dtype for p in getattr(pipe, n).parameters()} == {torch.float32}}
        stages.append((tuple(names), held))

    pipe.load_models_to_device = recording
    wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=steps, cfg_scale=1.0, seed=0)
    return stages


def test_by_default_both_experts_stay_loaded_for_the_whole_call(expert_files, monkeypatch):
    """No offload fields: both experts are loaded on the device in torch_dtype and never move (M = both)."""
    monkeypatch.setattr(torch.cpu, "empty_cache", lambda: None, raising=False)  # CUDA has it, CPU does not
    wp = _wp()
    high, low = expert_files
    pipe = wp.from_pretrained(wp.model_config(path=high), wp.model_config(path=low), torch_dtype=torch.float32)
    assert pipe.vram_management_enabled is False  # load_models_to_device does nothing
    before = [p.data_ptr() for n in EXPERTS for p in getattr(pipe, n).parameters()]
    stages = _residency(pipe)
    names = [names for names, _ in stages]
    assert names[names.index(pipe.in_iteration_models) + 1] == pipe.in_iteration_models_2  # the switch
    assert all(held == set(EXPERTS) for _, held in stages)  # both, at every stage, the switch included
    assert before == [p.data_ptr() for n in EXPERTS for p in getattr(pipe, n).parameters()]
    # the offload pair in each ModelConfig turns management on: one expert computes at a time
    offload = dict(offload_dtype=torch.float16, offload_device="cpu")
    pipe = wp.from_pretrained(
        wp.model_config(path=high, **offload), wp.model_config(path=low, **offload), torch_dtype=torch.float32
    )
    assert pipe.vram_management_enabled is True
    stages = _residency(pipe)
    loop = [names for names, _ in stages].index(pipe.in_iteration_models)
    held = [held for _, held in stages][loop:]
    assert held == [{"dit"}, {"dit2"}, set(), set()]  # the loop, the switch, the VAE, the end


def test_one_vace_module_with_two_experts_is_not_shared(expert_files, tmp_path):
    """from_pretrained fills vace2 only from a second VACE file; with one, the first low-noise step fails."""
    from safetensors.torch import save_file

    wp = _wp()
    high, low = expert_files
    kw = dict(vace_layers=(0,), vace_in_dim=96, dim=24, num_heads=2, ffn_dim=48)  # TINY_DIT's width and heads
    with torch.random.fork_rng():
        torch.manual_seed(3)
        vace = wp.module("models.wan_video_vace").VaceWanModel(**kw)
    path = str(tmp_path / "vace.safetensors")
    save_file({k: v.contiguous() for k, v in vace.state_dict().items()}, path)
    vace_class = "diffsynth.models.wan_video_vace.VaceWanModel"
    with wp.registered(path, model_name="wan_video_vace", model_class=vace_class, extra_kwargs=kw):
        configs = [wp.model_config(path=p) for p in (high, low, path)]
        pipe = wp.from_pretrained(*configs, torch_dtype=torch.float32)
    assert pipe.dit2 is not None and pipe.vace is not None and pipe.vace2 is None
    wp.attach_standins(pipe)

    class VAE(wp.VAE):  # WanVideoVAE.encode returns one tensor, which the VACE unit casts
        def encode(self, videos, **kwargs):
            return torch.stack(super().encode(videos, **kwargs))

    pipe.vae = VAE()
    seen = []
    model_fn = pipe.model_fn
    pipe.model_fn = lambda **kw: (seen.append((kw["dit"] is pipe.dit2, kw["vace"] is pipe.vace)), model_fn(**kw))[1]
    frames = [np.full((32, 48, 3), 128, dtype=np.uint8) for _ in range(5)]  # a grey control video, (H, W, 3)
    with pytest.raises(TypeError, match="'NoneType' object is not callable"):
        wp.call(pipe, height=32, width=48, num_frames=5, num_inference_steps=10, cfg_scale=1.0, seed=0,
                vace_video=frames)  # fmt: skip
    k = expert_switch_step(10, 0.875, shift=5.0)  # the call's defaults: boundary 0.875, shift 5
    assert seen == [(False, True)] * k + [(True, False)]  # VACE on the high-noise steps, None at the switch


def test_a14b_experts_are_the_14b_shape():
    """The registry's I2V-A14B expert, built on the meta device, has the parameters wan_dit_layer_params counts."""
    registry = import_submodule("configs.model_configs").wan_series  # the registry DiffSynth's loader reads
    i2v = next(e for e in registry if e["model_hash"] == "5b013604280dd715f8457c6ed6d6a626")  # Wan2.2-I2V-A14B
    ti2v = next(e for e in registry if e["model_hash"] == "1f5ab7703c6fc803fdded85ff040c316")  # Wan2.2-TI2V-5B
    WanModel = import_submodule("models.wan_video_dit").WanModel
    with torch.device("meta"):
        expert = WanModel(**i2v["extra_kwargs"])
        five = WanModel(**ti2v["extra_kwargs"])
    a14b = get_model("wan2.2-i2v-a14b")
    assert i2v["extra_kwargs"]["in_dim"] == a14b["in_dim"]
    assert sum(p.numel() for p in expert.parameters()) == sum(wan_dit_layer_params(in_channels=a14b["in_dim"]))
    kw = ti2v["extra_kwargs"]
    t = get_model("wan2.2-ti2v-5b")
    assert (kw["in_dim"], kw["out_dim"]) == (t["in_dim"], t["out_dim"]) == (48, 48)
    counted = wan_dit_layer_params(
        dim=kw["dim"], ffn_dim=kw["ffn_dim"], num_layers=kw["num_layers"],
        in_channels=kw["in_dim"], out_channels=kw["out_dim"],
    )  # fmt: skip
    assert sum(p.numel() for p in five.parameters()) == sum(counted)
    assert kw["seperated_timestep"] and kw["fuse_vae_embedding_in_latents"]
    assert not kw["require_vae_embedding"] and not kw["require_clip_embedding"]


# TI2V-5B ------------------------------------------------------------------------------------------------


@functools.cache
def _tiny_vae38():
    module = import_submodule("models.wan_video_vae")
    real = module.VideoVAE38_
    module.VideoVAE38_ = functools.partial(real, dec_dim=16, num_res_blocks=1)  # the decoder's width is not an argument
    try:
        torch.manual_seed(0)
        return module.WanVideoVAE38(z_dim=48, dim=16)
    finally:
        module.VideoVAE38_ = real


def test_wan22_vae_has_48_channels_and_16x_space():
    vae = _tiny_vae38()
    video = torch.rand(3, 5, 64, 96, generator=torch.Generator().manual_seed(0)) * 2 - 1  # (C, F, H, W)
    with torch.no_grad():
        z = vae.encode([video], device="cpu")
    fam = get_model("wan2.2-ti2v-5b").family
    assert tuple(z.shape) == (1, 48, 2, 64 // 16, 96 // 16)
    assert vae.z_dim == 48 and vae.upsampling_factor == 16 == pixel_multiple(fam) // 2


def test_sizes_round_up_to_multiples_of_32():
    check = _compile("diffusion/base_pipeline.py", "BasePipeline", "check_resize_height_width")
    vae = _tiny_vae38()
    factor = vae.upsampling_factor * 2  # what WanVideoPipeline.from_pretrained sets
    pipe = SimpleNamespace(
        height_division_factor=factor, width_division_factor=factor, time_division_factor=4, time_division_remainder=1
    )
    assert factor == pixel_multiple("wan2.2")
    assert check(pipe, 704, 1280, 121, verbose=0) == (704, 1280, 121)
    assert check(pipe, 720, 1280, 121, verbose=0) == (736, 1280, 121)  # 720 is 16k, not 32k: rounded up


def _tiny_ti2v_dit():
    WanModel = import_submodule("models.wan_video_dit").WanModel
    torch.manual_seed(0)
    return WanModel(
        dim=48, in_dim=8, ffn_dim=64, out_dim=8, text_dim=16, freq_dim=16, eps=1e-6, patch_size=(1, 2, 2),
        num_heads=2, num_layers=1, has_image_input=False, seperated_timestep=True,
        require_vae_embedding=False, require_clip_embedding=False, fuse_vae_embedding_in_latents=True,
    ).eval()  # fmt: skip


def _model_fn():
    wan_dit = import_submodule("models.wan_video_dit")
    grad = load_module("core/gradient/gradient_checkpoint.py")

    class Never:  # the model classes model_fn_wan_video tests with isinstance
        pass

    return _compile(
        WAN, None, "model_fn_wan_video",
        rearrange=import_submodule("models.wan_video_dit").rearrange,
        sinusoidal_embedding_1d=wan_dit.sinusoidal_embedding_1d,
        gradient_checkpoint_forward=grad.gradient_checkpoint_forward,
        LongCatVideoTransformer3DModel=Never, WanAnimate2Transformer=Never,
        WanModel=Never, WanMotionControllerModel=Never, VaceWanModel=Never, MotWanModel=Never,
        WanAnimateAdapter=Never, TeaCache=Never, TemporalTiler_BCTHW=Never,
    )  # fmt: skip


def test_per_token_timesteps_hold_the_first_frame_clean():
    dit, model_fn = _tiny_ti2v_dit(), _model_fn()
    wan_dit = import_submodule("models.wan_video_dit")
    latents = torch.randn(1, 8, 3, 4, 6, generator=torch.Generator().manual_seed(1))
    context = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(2))
    seen = {}
    dit.blocks[0].register_forward_pre_hook(lambda m, args: seen.update(t_mod=args[2]))
    t = torch.tensor([700.0])
    with torch.no_grad():
        model_fn(dit=dit, latents=latents, timestep=t, context=context, fuse_vae_embedding_in_latents=True)
        ours = first_frame_timesteps(700.0, latents)  # (F' h w / 4,)
        emb = dit.time_embedding(wan_dit.sinusoidal_embedding_1d(dit.freq_dim, ours).unsqueeze(0))
        expected = dit.time_projection(emb).unflatten(2, (6, dit.dim))  # (1, N, 6, D)
    assert ours.tolist()[:6] == [0.0] * 6 and set(ours.tolist()[6:]) == {700.0}
    assert seen["t_mod"].shape == (1, 18, 6, 48)
    assert torch.allclose(seen["t_mod"], expected, atol=1e-6)
    # frame 0's tokens are modulated like a clean latent, the others like t = 700
    assert not torch.allclose(seen["t_mod"][:, 0], seen["t_mod"][:, 6])
    with torch.no_grad():  # without the fused flag the pipeline uses one timestep per sample
        model_fn(dit=dit, latents=latents, timestep=t, context=context, fuse_vae_embedding_in_latents=False)
    assert seen["t_mod"].shape == (1, 6, 48)


def test_first_frame_is_reinjected_after_every_step():
    dit, model_fn = _tiny_ti2v_dit(), _model_fn()
    first = torch.randn(1, 8, 1, 4, 6, generator=torch.Generator().manual_seed(3))
    noise = torch.randn(1, 8, 3, 4, 6, generator=torch.Generator().manual_seed(4))
    context = torch.randn(1, 5, 16, generator=torch.Generator().manual_seed(5))

    def fused(shared):  # WanVideoUnit_ImageEmbedderFused's outputs, with the tiny VAE's latent given
        latents = noise.clone()
        latents[:, :, 0:1] = first
        return {"latents": latents, "fuse_vae_embedding_in_latents": True, "first_frame_latents": first}

    pipe = _pipeline(dit, None, [fused, lambda shared: {"context": context}])
    after_steps = []
    pipe.model_fn = lambda **kw: (after_steps.append(kw["latents"][:, :, 0].clone()), model_fn(**kw))[1]
    with torch.no_grad():
        theirs = _wan_call()(pipe, num_inference_steps=5, sigma_shift=5.0, cfg_scale=1.0, output_type="floatpoint")
    assert all(torch.equal(f, first[:, :, 0]) for f in after_steps)  # every call sees the clean frame 0
    sigmas = pipe.scheduler.sigmas.clone()

    def denoiser(x, t, text):
        return model_fn(dit=dit, latents=x, timestep=t.new_tensor([t.max().item()]), context=text,
                        fuse_vae_embedding_in_latents=True)  # fmt: skip

    ours = fused_first_frame_sample(denoiser, noise, first, sigmas, context)
    assert torch.equal(theirs[:, :, :1], first)
    assert torch.allclose(theirs, ours, atol=1e-5)
