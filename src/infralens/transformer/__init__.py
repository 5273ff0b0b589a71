"""The decoder-only transformer, tensor by tensor: tokens, attention shapes, masks, RoPE, parameters, loss, KV cache.

The transformer track's labs compute with these names; ``tox -e upstream``
checks them against Hugging Face ``transformers`` on tiny Llama-style configs.
"""

from .accumulation import NORMALIZATIONS, accumulate_gradients
from .backends import BACKENDS, SdpaDispatch, sdpa_dispatch
from .decode import DecodeCost, decode_cost
from .embedding import one_hot_embedding, padded_vocab_size, vocab_params
from .flops import AttentionFlops, attention_crossover, attention_flops, count_attention_flops
from .heads import merge_heads, repeat_kv, split_heads
from .kv_cache import KVCache
from .loss import IGNORE_INDEX, causal_lm_loss, count_label_tokens, shift_labels
from .masks import additive_mask, causal_mask, padded_causal_mask
from .model import DecoderConfig, TinyLlama
from .multi_head import MultiHeadAttention
from .paged_kv import CacheWaste, PagedKVCache, cache_waste
from .params import (
    LLAMA2_7B,
    SWIGLU_MULTIPLE_OF,
    LlamaParams,
    llama_param_breakdown,
    llama_param_count,
    swiglu_intermediate_size,
)
from .quantization import BITS, SCHEMES, Quantized, pack_int4, quantize_symmetric, unpack_int4
from .rope import (
    apply_rope,
    interleaved_rows_to_half,
    interleaved_to_half,
    rope_angles,
    rope_inv_freq,
    rope_scaled_inv_freq,
)
from .tokenizer import BOS_ID, EOS_ID, PAD_ID, SPECIAL_TOKENS, book_corpus, book_tokenizer, encode_batch, train_bpe

__all__: list[str] = [
    "BACKENDS",
    "BITS",
    "BOS_ID",
    "EOS_ID",
    "IGNORE_INDEX",
    "LLAMA2_7B",
    "NORMALIZATIONS",
    "PAD_ID",
    "SCHEMES",
    "SPECIAL_TOKENS",
    "SWIGLU_MULTIPLE_OF",
    "AttentionFlops",
    "CacheWaste",
    "DecodeCost",
    "DecoderConfig",
    "KVCache",
    "LlamaParams",
    "MultiHeadAttention",
    "PagedKVCache",
    "Quantized",
    "SdpaDispatch",
    "TinyLlama",
    "accumulate_gradients",
    "additive_mask",
    "apply_rope",
    "attention_crossover",
    "attention_flops",
    "book_corpus",
    "book_tokenizer",
    "cache_waste",
    "causal_lm_loss",
    "causal_mask",
    "count_attention_flops",
    "count_label_tokens",
    "decode_cost",
    "encode_batch",
    "interleaved_rows_to_half",
    "interleaved_to_half",
    "llama_param_breakdown",
    "llama_param_count",
    "merge_heads",
    "one_hot_embedding",
    "pack_int4",
    "padded_causal_mask",
    "padded_vocab_size",
    "quantize_symmetric",
    "repeat_kv",
    "rope_angles",
    "rope_inv_freq",
    "rope_scaled_inv_freq",
    "sdpa_dispatch",
    "shift_labels",
    "split_heads",
    "swiglu_intermediate_size",
    "train_bpe",
    "unpack_int4",
    "vocab_params",
]
