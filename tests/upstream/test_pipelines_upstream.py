"""infralens.pipelines against DiffSynth-Studio: the registry and its hash (Lab 02).

* Lab 02: the registry maps hashes of key names and shapes to classes and their
  constructor arguments; the 1.3B entry's hash is the hash of ``WanModel`` built
  from its ``extra_kwargs``; DiffSynth's hash and ``architecture_fingerprint``
  agree on which state dicts are the same architecture. What ``from_pretrained``
  does with them is run in ``test_wan_pipeline_upstream.py``.

Lab 10's facts are run, not read: see ``test_wan_pipeline_run_upstream.py``.
"""

from __future__ import annotations

import hashlib

import pytest

torch = pytest.importorskip("torch")

from infralens.nets import TinyVideoDiT  # noqa: E402
from infralens.pipelines import architecture_fingerprint  # noqa: E402

from ._diffsynth import import_submodule, load_module  # noqa: E402

pytestmark = pytest.mark.upstream


# --- Lab 02 ----------------------------------------------------------------------------------------------


def model_configs() -> list[dict]:
    """DiffSynth-Studio's registry as its loader reads it (``models/model_loader.py`` imports ``MODEL_CONFIGS``)."""
    from ._wan_pipeline import module

    return module("models.model_loader").MODEL_CONFIGS


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
