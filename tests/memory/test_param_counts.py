"""Parameter counts from configurations (the real classes are compared in tests/upstream/test_memory_upstream.py)."""

import pytest

from infralens.memory import WAN21_VAE_PARAMS, umt5_encoder_layer_params, wan21_t2v_components, wan_dit_layer_params


def test_dit_block_by_hand_on_a_tiny_config():
    d, f = 4, 8
    units = wan_dit_layer_params(dim=d, ffn_dim=f, num_layers=2, in_channels=2, out_channels=3, text_dim=5,
                                 freq_dim=6, patch_size=(1, 2, 2))  # fmt: skip
    attention = 4 * (d * d + d) + 2 * d  # q, k, v, o with bias; two RMSNorm scales over d
    ffn = (d * f + f) + (f * d + d)
    assert units[1] == units[2] == 2 * attention + 2 * d + ffn + 6 * d == 8 * d * d + 2 * d * f + f + 21 * d
    patch = 2 * 4 * d + d
    time = (6 * d + d) + (d * d + d) + (d * 6 * d + 6 * d)
    text = (5 * d + d) + (d * d + d)
    assert units[0] == patch + time + text
    assert units[-1] == 2 * d + d * 3 * 4 + 3 * 4
    assert len(units) == 4


def test_wan21_14b_totals():
    units = wan_dit_layer_params()
    assert sum(units) == 14_288_491_584  # WanTransformer3DModel() counted on the meta device (diffusers 0.42.1)
    assert units[1] == 351_394_304 and len(units) == 42
    te = umt5_encoder_layer_params()
    assert sum(te) == 5_680_910_336 and te[0] == 256384 * 4096 and len(te) == 26


def test_components_are_parameters_times_bytes():
    te, dit, vae = wan21_t2v_components()
    assert te.total_bytes == 2 * sum(umt5_encoder_layer_params())
    assert dit.layer_bytes == tuple(2 * p for p in wan_dit_layer_params())
    assert vae.layer_bytes == (2 * WAN21_VAE_PARAMS,)
    assert wan21_t2v_components(dtype="fp32")[1].total_bytes == 4 * sum(wan_dit_layer_params())
    assert wan21_t2v_components(dtype="int4")[2].total_bytes == (WAN21_VAE_PARAMS + 1) // 2  # rounded up


def test_errors():
    with pytest.raises(ValueError, match=r"dim must be >= 1, e.g. dim=5120; got 0"):
        wan_dit_layer_params(dim=0)
    with pytest.raises(
        ValueError, match=r"patch_size must have 3 entries \(frames, height, width\), e.g. \(1, 2, 2\); got \(2, 2\)"
    ):
        wan_dit_layer_params(patch_size=(2, 2))
    with pytest.raises(ValueError, match=r"patch_size entries must be >= 1, e.g. patch_size entries=2; got 0"):
        wan_dit_layer_params(patch_size=(1, 0, 2))
    with pytest.raises(ValueError, match=r"num_buckets must be a whole number >= 1, e.g. num_buckets=32; got 'x'"):
        umt5_encoder_layer_params(num_buckets="x")
    with pytest.raises(ValueError, match=r"dtype must be one of fp32, bf16"):
        wan21_t2v_components(dtype="bfloat16")
