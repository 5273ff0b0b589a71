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
    with pytest.raises(ValueError, match=r"dtype must be one of fp32, bf16.*got 'float64'"):
        wan21_t2v_components(dtype="float64")


def test_wan22_a14b_two_experts_twice_one_resident_once():
    from infralens.diffusion import expert_schedule
    from infralens.memory import plan_offload, wan21_t2v_components, wan22_a14b_components

    te, dit, dit2, vae = wan22_a14b_components("t2v")
    assert dit.layer_bytes == dit2.layer_bytes == wan21_t2v_components()[1].layer_bytes  # the 14B shape
    i2v = wan22_a14b_components("i2v")[1]
    assert i2v.total_bytes - dit.total_bytes == 2 * (36 - 16) * 4 * 5120  # wider patch embedding, bf16
    schedule = ["text_encoder", *expert_schedule(40, 0.875, shift=12.0), "vae"]
    resident = plan_offload([te, dit, dit2, vae], schedule, strategy="resident")
    model = plan_offload([te, dit, dit2, vae], schedule, strategy="model")
    assert resident.peak_bytes == te.total_bytes + 2 * dit.total_bytes + vae.total_bytes
    assert model.peak_bytes == dit.total_bytes  # one expert at a time
    moved = [(s.component, s.moved_bytes) for s in model.stages if s.moved_bytes]
    assert moved[1:3] == [("dit", dit.total_bytes), ("dit2", dit2.total_bytes)]
    assert model.stages[27].component == "dit2" and model.stages[27].moved_bytes == dit2.total_bytes
    with pytest.raises(ValueError, match="task must be 't2v' or 'i2v'"):
        wan22_a14b_components("ti2v")
