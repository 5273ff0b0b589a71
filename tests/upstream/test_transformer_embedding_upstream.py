"""Tokens and embeddings in transformers: our BPE tokenizer behind its tokenizer API, Llama's embedding table.

Nothing downloaded: the tokenizer is trained on the book's pages with
``tokenizers``, the models are built from tiny ``LlamaConfig``s in code.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from transformers import LlamaForCausalLM, PreTrainedTokenizerFast  # noqa: E402

from infralens.transformer import (  # noqa: E402
    PAD_ID,
    book_tokenizer,
    encode_batch,
    one_hot_embedding,
    padded_vocab_size,
    vocab_params,
)

from ._tiny_llama import tiny_config  # noqa: E402

pytestmark = [pytest.mark.upstream]
TEXTS = ["The denoiser reads the latent.", "A prompt", "Schrödinger's 🙂"]


@pytest.mark.parametrize("side", ["left", "right"])
def test_transformers_tokenizer_wraps_the_same_tokenizer(side):
    """PreTrainedTokenizerFast around our tokenizers object: same ids, same padding, same attention mask."""
    hf = PreTrainedTokenizerFast(tokenizer_object=book_tokenizer(), pad_token="<pad>", padding_side=side)
    batch = hf(TEXTS, padding=True, return_tensors="pt")
    ids, mask = encode_batch(book_tokenizer(), TEXTS, padding_side=side)
    assert isinstance(hf.backend_tokenizer, type(book_tokenizer()))  # the Rust tokenizers object itself
    assert hf.pad_token_id == PAD_ID
    assert torch.equal(batch["input_ids"], ids)
    assert torch.equal(batch["attention_mask"], mask)
    assert hf.decode(ids[0], skip_special_tokens=True) == TEXTS[0]


def test_llama_embedding_is_a_lookup_with_padding_idx():
    cfg = tiny_config(pad_token_id=0)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    embed = model.get_input_embeddings()
    assert embed.padding_idx == cfg.pad_token_id == 0
    ids = torch.tensor([[5, 0, 7, 0]])
    assert torch.equal(embed(ids), one_hot_embedding(ids, embed.weight))
    model(input_ids=ids, labels=ids).loss.backward()
    grad = embed.weight.grad
    assert grad[0].abs().sum() == 0  # the pad row gets no gradient
    assert grad[5].abs().sum() > 0


def test_tied_embeddings_share_one_tensor_and_save_v_times_d():
    counts = {}
    for tied in (False, True):
        model = LlamaForCausalLM(tiny_config(tie_word_embeddings=tied))
        same = model.lm_head.weight is model.get_input_embeddings().weight
        assert same == tied
        counts[tied] = sum(p.numel() for p in model.parameters())
    v, d = 64, 32
    assert counts[False] - counts[True] == vocab_params(v, d, tied=False) - vocab_params(v, d, tied=True) == v * d


def test_resize_pads_the_vocabulary_to_a_multiple():
    model = LlamaForCausalLM(tiny_config())
    model.resize_token_embeddings(100, pad_to_multiple_of=64)
    assert model.get_input_embeddings().weight.shape[0] == padded_vocab_size(100, 64) == 128
    assert model.config.vocab_size == 128
