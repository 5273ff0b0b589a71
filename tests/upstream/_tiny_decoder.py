"""One tiny Llama for the transformer track's cross-checks: transformers' model and ours on the same weights."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM

from infralens.transformer import DecoderConfig, TinyLlama

TINY = DecoderConfig(
    vocab_size=96,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
)


def llama_config(config: DecoderConfig = TINY) -> LlamaConfig:
    """transformers' config for the same architecture."""
    fields = config.count_fields()
    if fields["head_dim"] is None:
        del fields["head_dim"]
    return LlamaConfig(**fields, rope_theta=config.rope_theta, rms_norm_eps=config.rms_norm_eps)


def model_pair(config: DecoderConfig = TINY, seed: int = 0) -> tuple[LlamaForCausalLM, TinyLlama]:
    """A randomly initialised ``LlamaForCausalLM`` and a :class:`TinyLlama` loaded with its state dict."""
    torch.manual_seed(seed)
    hf = LlamaForCausalLM(llama_config(config)).eval()
    ours = TinyLlama(config).eval()
    ours.load_state_dict(hf.state_dict(), strict=True)  # same names, same shapes
    return hf, ours
