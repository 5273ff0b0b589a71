"""The family and model records: one place for every fact, and the views other modules expose agree with it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from infralens.families import LATENT_FAMILIES, MODELS, get_family, get_model

SRC = Path(__file__).resolve().parents[2] / "src" / "infralens"
RECORDS = SRC / "families" / "records.py"


def _facts() -> set[float]:
    """The distinctive numbers of the records: decimals, and whole numbers of three or more digits."""
    facts: set[float] = set()
    for fam in LATENT_FAMILIES.values():
        if fam.scaling is not None:
            s = fam.scaling
            facts |= {v for v in (s.scaling_factor, s.shift_factor) if v is not None}
            facts |= set(s.latents_mean or ()) | set(s.latents_std or ())
        if fam.flow_template is not None:
            facts.add(fam.flow_template.sigma_min)
    for model in MODELS.values():
        facts |= {v for v in model.config.values() if isinstance(v, int | float) and not isinstance(v, bool)}
    # powers of two (128, 4096) are everyone's sizes, not a family's fingerprint
    return {f for f in facts if (isinstance(f, float) and f not in (0.0, 1.0)) or (f >= 100 and f & (f - 1))}


def _numbers_in_code(path: Path) -> set[float]:
    """Numeric literals of a module, outside its docstrings and strings (messages quote examples)."""
    tree = ast.parse(path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float) and not isinstance(node.value, bool)
    }


@pytest.mark.parametrize(
    "module", sorted(p for p in SRC.rglob("*.py") if p != RECORDS), ids=lambda p: str(p.relative_to(SRC))
)
def test_no_other_module_spells_a_family_fact(module):
    spelled = _numbers_in_code(module) & _facts()
    assert not spelled, f"{module.relative_to(SRC)} spells {sorted(spelled)}: read them from infralens.families"


def test_each_family_record_is_complete_and_consistent():
    for name, fam in LATENT_FAMILIES.items():
        assert fam.name == name and fam.channels > 0 and fam.spatial_factor > 0
        assert fam.denoiser in {"unet", "dit"} and len(fam.patch) == 3
        assert fam.is_video == (fam.temporal_factor is not None)
        if fam.scaling is not None and fam.scaling.per_channel:
            assert len(fam.scaling.latents_mean) == fam.channels  # one statistic per latent channel
        if fam.scaling_source is not None:
            assert fam.scaling is not None
    assert LATENT_FAMILIES["wan2.1"].pipeline_defaults["tile_size"] == (30, 52)


def test_released_models_belong_to_families():
    for name, model in MODELS.items():
        assert model.name == name and (model.family in LATENT_FAMILIES or model.family == "text")
    wan14, wan13 = get_model("wan2.1-t2v-14b"), get_model("wan2.1-t2v-1.3b")
    # width = heads x head size in both checkpoints: the head size is shared, the heads are not
    assert wan14["dim"] == wan14["num_heads"] * wan14["head_dim"] and wan13["dim"] == wan13["num_heads"] * 128


@pytest.mark.parametrize(
    ("lookup", "bad", "words"), [(get_family, "wan9", "'wan2.1'"), (get_model, "wan", "'wan2.1-t2v-14b'")]
)
def test_unknown_names_list_the_known_ones(lookup, bad, words):
    with pytest.raises(ValueError, match=words):
        lookup(bad)


def test_wan22_records_carry_their_source_and_expert_order():
    for task in ("t2v", "i2v"):
        m = get_model(f"wan2.2-{task}-a14b")
        assert m.source.startswith("Wan-Video/Wan2.2 wan/configs/") and task in m.source
        assert m["experts"] == ("high_noise_model", "low_noise_model")  # the order DiffSynth loads them in
        assert 0 < m["inference"]["boundary"] < 1 and len(m["inference"]["sample_guide_scale"]) == 2
    t2v, i2v = (get_model(f"wan2.2-{task}-a14b")["inference"]["boundary"] for task in ("t2v", "i2v"))
    assert t2v != i2v  # a config fact per task
    assert get_model("wan2.2-ti2v-5b").family == "wan2.2" and get_model("wan2.1-t2v-14b").source is None
