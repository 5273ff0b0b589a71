"""The public names other code and outside checks call (the API contract) import with their signatures.

The contract lists, per name, its parameters in order with their kind and default;
extra keyword-only parameters with defaults are allowed (they extend, never break).
"""

from __future__ import annotations

import importlib
import inspect

import pytest

E = inspect.Parameter.empty
CONTRACT = {
    "infralens.diffusion": {
        "make_betas": [("schedule", E), ("num_train_timesteps", 1000), ("beta_start", 1e-4), ("beta_end", 0.02)],
        "alphas_cumprod": [("betas", E)],
        "rescale_zero_terminal_snr": [("betas", E)],
        "add_noise": [("x0", E), ("noise", E), ("alpha_bar_t", E)],
        "v_target": [("x0", E), ("noise", E), ("alpha_bar_t", E)],
        "predict_x0_from_eps": [("x_t", E), ("eps", E), ("alpha_bar_t", E)],
        "flow_interpolate": [("x0", E), ("noise", E), ("sigma", E)],
        "flow_target": [("x0", E), ("noise", E)],
        "shift_sigmas": [("sigmas", E), ("shift", E)],
        "flow_euler_step": [("x_t", E), ("v", E), ("sigma", E), ("sigma_next", E)],
        "cfg_combine": [("uncond", E), ("cond", E), ("scale", E)],
        "latent_shape": [("family", E), ("*height", E), ("*width", E), ("*frames", None), ("*batch", 1)],
        "flux_pack": [("latents", E)],
        "flux_unpack": [("tokens", E), ("height", E), ("width", E)],
    },
    "infralens.transformer": {
        "rope_inv_freq": [("head_dim", E), ("base", 10000.0)],
        "apply_rope": [("x", E), ("positions", E), ("*base", 10000.0), ("*layout", "half")],
        "causal_mask": [("q_len", E), ("k_len", None), ("*dtype", "torch.float32")],
        "repeat_kv": [("x", E), ("n_rep", E)],
        "llama_param_count": [
            ("*vocab_size", E),
            ("*hidden_size", E),
            ("*intermediate_size", E),
            ("*num_hidden_layers", E),
            ("*num_attention_heads", E),
            ("*num_key_value_heads", E),
            ("*tie_word_embeddings", False),
            ("*head_dim", None),
        ],
    },
    "infralens.distributed": {
        "zero_bytes_per_rank": [
            ("num_params", E),
            ("world_size", E),
            ("stage", E),
            ("*param_bytes", 2),
            ("*grad_bytes", 2),
            ("*optimizer_bytes", 12),
        ],
        "ring_allreduce_bytes": [("nbytes", E), ("world_size", E)],
        "pipeline_bubble": [("stages", E), ("microbatches", E), ("*relative_to", "wall")],
        "expert_capacity": [("num_tokens", E), ("num_experts", E), ("*top_k", 1), ("*capacity_factor", 1.0)],
    },
}
NAMES = [(module, name) for module, names in CONTRACT.items() for name in names]


@pytest.mark.parametrize(("module", "name"), NAMES, ids=[f"{m.split('.')[1]}.{n}" for m, n in NAMES])
def test_contract_name_imports_with_its_signature(module, name):
    fn = getattr(importlib.import_module(module), name, None)
    assert fn is not None, f"{module}.{name} is part of the API contract"
    params = list(inspect.signature(fn).parameters.values())
    expected = CONTRACT[module][name]
    got = []
    for p in params[: len(expected)]:
        label = ("*" if p.kind is inspect.Parameter.KEYWORD_ONLY else "") + p.name
        default = str(p.default) if isinstance(p.default, object) and "torch." in str(p.default) else p.default
        got.append((label, default))
    assert got == expected
    for extra in params[len(expected) :]:  # extensions only: keyword-only with a default
        assert extra.kind is inspect.Parameter.KEYWORD_ONLY and extra.default is not E, extra
