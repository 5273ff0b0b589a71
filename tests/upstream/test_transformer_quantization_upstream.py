"""Which modules transformers' bitsandbytes 4-bit quantizer leaves in 16 bits, on a tiny LlamaForCausalLM.

``Bnb4BitHfQuantizer`` asks ``get_modules_to_not_convert`` for its skip list with
the config's ``llm_int8_skip_modules`` (quantizer_bnb_4bit.py:121). bitsandbytes
itself is not installed here, so the conversion is not run; the skip list it
would use is, by calling the quantizer's method with the arguments that line
passes. With no skip list the output head (and, when tied, the embedding) stays
in 16 bits; a skip list given by the user replaces that default, so the head is
then quantised unless listed.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import BitsAndBytesConfig, LlamaForCausalLM  # noqa: E402
from transformers.quantizers.quantizer_bnb_4bit import Bnb4BitHfQuantizer  # noqa: E402

from ._tiny_decoder import llama_config  # noqa: E402

pytestmark = [pytest.mark.upstream]


def skipped(model, quant_config):
    """The module names the 4-bit quantizer would leave unconverted, as quantizer_bnb_4bit.py:121 asks for them."""
    skip = quant_config.llm_int8_skip_modules
    return sorted(Bnb4BitHfQuantizer.get_modules_to_not_convert(model, skip, model._keep_in_fp32_modules))


def tiny_llama(*, tied: bool) -> LlamaForCausalLM:
    cfg = llama_config()
    cfg.tie_word_embeddings = tied
    with torch.device("meta"):
        return LlamaForCausalLM(cfg)


def test_output_head_is_skipped_by_default():
    config = BitsAndBytesConfig(load_in_4bit=True)
    assert config.llm_int8_skip_modules is None
    untied = skipped(tiny_llama(tied=False), config)
    assert untied == ["lm_head"]  # every decoder projection is quantised, the head is not
    tied = skipped(tiny_llama(tied=True), config)
    assert {"lm_head", "model.embed_tokens"} <= set(tied)
    assert not any(".layers." in name for name in untied + tied)


def test_a_user_skip_list_replaces_the_default():
    config = BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=["mlp.down_proj"])
    assert skipped(tiny_llama(tied=False), config) == ["mlp.down_proj"]  # lm_head is now quantised
