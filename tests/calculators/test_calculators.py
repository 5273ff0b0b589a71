"""The calculators against hand arithmetic, and their errors."""

import pytest

from infralens.calculators import (
    DTYPE_BYTES,
    PATCH,
    attention_cost,
    cfg_cost,
    dtype_bytes,
    kv_cache_bytes,
    latent_tokens,
    weight_memory,
)
from infralens.diffusion import LATENT_FAMILIES


def test_every_family_has_a_patch():
    assert set(PATCH) == set(LATENT_FAMILIES)


@pytest.mark.parametrize(
    ("family", "kwargs", "tokens"),
    [
        ("wan2.1", dict(height=480, width=832, frames=81), 21 * 30 * 52),
        ("wan2.2", dict(height=704, width=1280, frames=121), 31 * 22 * 40),
        ("hunyuanvideo", dict(height=720, width=1280, frames=129), 33 * 45 * 80),
        ("cogvideox", dict(height=480, width=720, frames=49), 13 * 30 * 45),
        ("ltxvideo", dict(height=512, width=768, frames=121), 16 * 16 * 24),
        ("flux", dict(height=1024, width=768), 64 * 48),
        ("sd3", dict(height=1024, width=1024), 64 * 64),
        ("sd", dict(height=512, width=512), 64 * 64),
        ("sdxl", dict(height=1024, width=1024), 64 * 64),
    ],
)
def test_tokens(family, kwargs, tokens):
    assert latent_tokens(family, **kwargs).tokens == tokens


def test_tokens_batch_is_per_sample():
    t = latent_tokens("wan2.1", height=480, width=832, frames=81, batch=4)
    assert t.latent[0] == 4 and t.tokens == 21 * 30 * 52


def test_tokens_need_whole_patches():
    with pytest.raises(ValueError, match=r"height=520 .* multiple of 16; nearest valid: 512 or 528"):
        latent_tokens("flux", height=520, width=512)
    with pytest.raises(ValueError, match=r"frames=80"):
        latent_tokens("wan2.1", height=480, width=832, frames=80)


def test_attention_cost():
    c = attention_cost(tokens=1000, heads=8, head_dim=64, batch=2, dtype="fp32")
    assert c.score_bytes == 2 * 8 * 1000 * 1000 * 4
    assert c.flops == 2 * (2 * 2 * 8 * 1000 * 1000 * 64)  # QK^T and PV, 2 FLOPs per multiply-add


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        (dict(tokens=0, heads=8, head_dim=64), ["tokens", ">= 1", "tokens=32760"]),
        (dict(tokens=10, heads=8, head_dim=64, dtype="fp64"), ["dtype", "bf16", "'fp64'"]),
    ],
)
def test_attention_errors(kwargs, words):
    with pytest.raises(ValueError) as err:
        attention_cost(**kwargs)
    assert all(w in str(err.value) for w in words)


def test_cfg():
    assert cfg_cost(steps=30).calls == 30
    assert cfg_cost(steps=30, guidance_scale=1.0).calls == 30
    assert cfg_cost(steps=30, guidance_scale=1.01).calls == 60
    assert cfg_cost(steps=30, guidance_scale=7.5).multiplier == 2.0
    with pytest.raises(ValueError, match="steps"):
        cfg_cost(steps=0)
    with pytest.raises(ValueError, match="guidance_scale"):
        cfg_cost(steps=1, guidance_scale="high")


def test_kv_cache():
    assert kv_cache_bytes(layers=2, kv_heads=3, head_dim=4, seq=5, batch=6, dtype="fp8") == 2 * 2 * 3 * 4 * 5 * 6 * 1
    with pytest.raises(ValueError, match="kv_heads"):
        kv_cache_bytes(layers=2, kv_heads=0, head_dim=4, seq=5)


def test_weights():
    assert weight_memory(params=1000, dtype="bf16").total_bytes == 2000
    assert weight_memory(params=1024, dtype="int4").total_bytes == 512 + 1024 / 128 * 2
    assert weight_memory(params=1024, dtype="int4", group_size=32).scale_bytes == 64
    assert weight_memory(params=1024, dtype="int8", group_size=64).scale_bytes == 32
    assert weight_memory(params=1024, dtype="fp8").scale_bytes == 0
    for bad, word in ((0, "params"), (-1.0, "params"), ("8B", "params")):
        with pytest.raises(ValueError, match=word):
            weight_memory(params=bad, dtype="bf16")
    with pytest.raises(ValueError, match="group_size"):
        weight_memory(params=8, dtype="int4", group_size=0)


def test_dtype_bytes():
    assert dtype_bytes("fp32") == 4 and set(DTYPE_BYTES) >= {"fp32", "bf16", "fp8", "int8", "int4"}
