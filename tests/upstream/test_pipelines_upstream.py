"""infralens.pipelines against DiffSynth-Studio and diffusers: the facts DiffSynth Labs 01, 02 and 10 cite.

* Lab 01: the defaults a bare ``WanVideoPipeline(prompt=...)`` call uses, the
  per-model dtype/device fields of ``ModelConfig``, the pipeline dtype's role,
  diffusers' ``model_index.json``;
* Lab 02: how DiffSynth-Studio maps weight files to classes (a hash of key
  names and shapes looked up in ``MODEL_CONFIGS``), which names the Wan pipeline
  fetches, and which models each stage loads to the device;
* Lab 10: where the Wan loop zeroes padded prompt positions and casts noise.

DiffSynth-Studio is read from its installed files (``ast`` and text), since
``import diffsynth`` needs packages this environment does not install.
"""

from __future__ import annotations

import ast
import hashlib
import inspect

import pytest

torch = pytest.importorskip("torch")

from infralens.pipelines import DIFFSYNTH_WAN_DEFAULTS, architecture_fingerprint  # noqa: E402
from infralens.video import TinyVideoDiT  # noqa: E402

from ._diffsynth import import_submodule, load_module, package_dir, version  # noqa: E402

pytestmark = pytest.mark.upstream


def source(relative: str) -> str:
    return (package_dir() / relative).read_text()


def method(relative: str, cls: str, name: str) -> ast.FunctionDef:
    for node in ast.walk(ast.parse(source(relative))):
        if isinstance(node, ast.ClassDef) and node.name == cls:
            for item in node.body:
                if isinstance(item, ast.FunctionDef) and item.name == name:
                    return item
    raise LookupError(f"{cls}.{name} not in diffsynth/{relative} {version()}")


def defaults(fn: ast.FunctionDef) -> dict[str, str]:
    """Argument name -> its default, as source text."""
    args = fn.args.args[len(fn.args.args) - len(fn.args.defaults) :]
    return {a.arg: ast.unparse(d) for a, d in zip(args, fn.args.defaults, strict=True)}


# --- Lab 01 ----------------------------------------------------------------------------------------------


def test_a_bare_wan_call_uses_the_defaults_the_page_lists():
    found = defaults(method("pipelines/wan_video.py", "WanVideoPipeline", "__call__"))
    for name, value in DIFFSYNTH_WAN_DEFAULTS.items():
        assert ast.literal_eval(found[name]) == value, name


def test_from_pretrained_defaults_to_bfloat16_and_takes_model_configs():
    found = defaults(method("pipelines/wan_video.py", "WanVideoPipeline", "from_pretrained"))
    assert found["torch_dtype"] == "torch.bfloat16"
    assert found["model_configs"] == "[]"


def test_model_config_has_per_model_dtypes_and_devices():
    tree = ast.parse(source("core/loader/config.py"))
    cls = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == "ModelConfig")
    assert [ast.unparse(d) for d in cls.decorator_list] == ["dataclass"]  # unknown fields: TypeError
    fields = [n.target.id for n in cls.body if isinstance(n, ast.AnnAssign)]
    for stage in ("offload", "onload", "computation"):
        assert f"{stage}_dtype" in fields and f"{stage}_device" in fields
    assert "path" in fields and "model_id" in fields and "origin_file_pattern" in fields
    assert "model_class" not in fields  # a ModelConfig names files, not classes


def test_the_pipeline_dtype_is_for_intermediates():
    text = source("diffusion/base_pipeline.py")
    assert "The device and torch_dtype is used for the storage of intermediate variables, not models." in text
    # a model without its own computation_dtype computes in the pipeline's
    assert 'vram_config["computation_dtype"] = vram_config["computation_dtype"] or self.torch_dtype' in text


def test_diffusers_keeps_components_in_model_index_json():
    diffusers = pytest.importorskip("diffusers")
    from diffusers import WanPipeline

    assert diffusers.DiffusionPipeline.config_name == "model_index.json"
    params = inspect.signature(WanPipeline.__init__).parameters
    assert {"tokenizer", "text_encoder", "vae", "scheduler", "transformer"} <= set(params)
    assert WanPipeline.model_cpu_offload_seq == "text_encoder->transformer->transformer_2->vae"


# --- Lab 02 ----------------------------------------------------------------------------------------------


def model_configs() -> list[dict]:
    """The registry entries of configs/model_configs.py that are plain literals (a few compute a value)."""
    entries = []
    for node in ast.parse(source("configs/model_configs.py")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.List):
            for element in node.value.elts:
                try:
                    entries.append(ast.literal_eval(element))
                except ValueError:
                    continue
    return entries


def test_the_registry_maps_weight_hashes_to_classes():
    entries = model_configs()
    assert len(entries) > 100 and all({"model_hash", "model_name", "model_class"} <= set(e) for e in entries)
    by_hash = {e["model_hash"]: e for e in entries}
    dit_13b = by_hash["9269f8db9040a9d860eaca435be61814"]  # Wan2.1-T2V-1.3B diffusion_pytorch_model*.safetensors
    assert dit_13b["model_name"] == "wan_video_dit"
    assert dit_13b["model_class"] == "diffsynth.models.wan_video_dit.WanModel"
    kw = dit_13b["extra_kwargs"]
    assert (kw["dim"], kw["num_layers"], kw["num_heads"], kw["ffn_dim"], kw["text_dim"]) == (1536, 30, 12, 8960, 4096)
    dit_14b = by_hash["aafcfd9672c3a2456dc46e1cb6e52c70"]  # Wan2.1-T2V-14B
    assert (dit_14b["extra_kwargs"]["dim"], dit_14b["extra_kwargs"]["num_layers"]) == (5120, 40)
    names = {e["model_name"] for e in entries}
    assert {"wan_video_text_encoder", "wan_video_dit", "wan_video_vae"} <= names


def test_loading_hashes_the_file_then_builds_the_class_from_extra_kwargs():
    pool = source("models/model_loader.py")
    assert "model_hash = hash_model_file(path)" in pool
    assert 'if config["model_hash"] == model_hash:' in pool
    assert 'raise ValueError(f"Cannot detect the model type. File: {path}. Model hash: {model_hash}")' in pool
    assert "model = model_class(**config)" in source("core/loader/model.py")
    pipe = source("pipelines/wan_video.py")
    for call in (
        'model_pool.fetch_model("wan_video_text_encoder")',
        'model_pool.fetch_model("wan_video_dit", index=2)',
        'model_pool.fetch_model("wan_video_vae")',
    ):
        assert call in pipe, call


def test_diffsynth_hash_and_our_fingerprint_agree_on_what_matters():
    """Both see key names and shapes, not values: they agree on which state dicts are the same architecture."""
    pytest.importorskip("safetensors")
    files = load_module("core/loader/file.py")

    def theirs(module) -> str:
        keys = files.convert_state_dict_to_keys_dict(module.state_dict())
        return hashlib.md5(files.convert_keys_dict_to_single_str(keys).encode("UTF-8")).hexdigest()

    variants = [TinyVideoDiT(seed=0), TinyVideoDiT(seed=1), TinyVideoDiT(num_layers=2), TinyVideoDiT(dim=64)]
    for a in variants:
        for b in variants:
            assert (theirs(a) == theirs(b)) == (architecture_fingerprint(a) == architecture_fingerprint(b))
    assert theirs(variants[0]) == theirs(variants[1]) != theirs(variants[2])


def test_the_wan_13b_hash_is_the_hash_of_its_architecture():
    """WanModel(**extra_kwargs) on the meta device hashes to the registry's model_hash."""
    files = load_module("core/loader/file.py")
    WanModel = import_submodule("models.wan_video_dit").WanModel

    entry = next(e for e in model_configs() if e["model_hash"] == "9269f8db9040a9d860eaca435be61814")
    with torch.device("meta"):
        model = WanModel(**entry["extra_kwargs"])
    keys = files.convert_state_dict_to_keys_dict(model.state_dict())
    assert hashlib.md5(files.convert_keys_dict_to_single_str(keys).encode("UTF-8")).hexdigest() == entry["model_hash"]


def test_each_stage_loads_only_its_models():
    pipe = source("pipelines/wan_video.py")
    assert 'onload_model_names=("text_encoder",)' in pipe  # the prompt unit
    assert "self.load_models_to_device(self.in_iteration_models)" in pipe  # before the loop
    assert "self.load_models_to_device(['vae'])" in pipe  # before decoding
    assert "self.load_models_to_device([])" in pipe  # after
    base = source("diffusion/base_pipeline.py")
    assert "def load_models_to_device(self, model_names):" in base
    # the prompt unit is separate for CFG: the negative prompt is encoded only when cfg_scale != 1
    assert 'if inputs_shared["cfg_scale"] != 1:' in base


# --- Lab 10 ----------------------------------------------------------------------------------------------


def test_the_wan_loop_lines_lab_10_mirrors():
    pipe = source("pipelines/wan_video.py")
    assert "seq_len=512" in pipe  # the padded prompt length L of Wan's tokenizer
    tokenizer = source("models/wan_video_text_encoder.py")
    assert "'padding': 'max_length'," in tokenizer and "'truncation': True," in tokenizer  # longer: cut
    # the timestep is cast to the pipeline's dtype before the DiT reads it
    assert "timestep = timestep.unsqueeze(0).to(dtype=self.torch_dtype, device=self.device)" in pipe
    assert "prompt_emb[:, v:] = 0" in pipe  # padded prompt positions zeroed after the text encoder
    assert "noise_pred = noise_pred_nega + cfg_scale * (noise_pred_posi - noise_pred_nega)" in pipe
    base = source("diffusion/base_pipeline.py")
    # noise is drawn in float32 on rand_device, then cast to the pipeline's dtype and device
    assert 'def generate_noise(self, shape, seed=None, rand_device="cpu", rand_torch_dtype=torch.float32' in base
    assert "noise = noise.to(dtype=torch_dtype or self.torch_dtype, device=device or self.device)" in base
