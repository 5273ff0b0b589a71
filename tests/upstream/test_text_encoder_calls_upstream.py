"""How often a pipeline runs its text encoder: once per prompt set before the loop, twice with CFG.

``StableDiffusionPipeline`` with a tiny random ``CLIPTextModel`` and a word-level tokenizer (no downloads):
with ``guidance_scale > 1`` ``encode_prompt`` runs the encoder on the prompt and again on the negative (or
empty) prompt; without guidance once. Both happen before the denoising loop, whose length does not matter.
"""

from __future__ import annotations

import pytest

diffusers = pytest.importorskip("diffusers")
torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from ._tiny import tiny_sd_pipeline  # noqa: E402

pytestmark = [
    pytest.mark.upstream,
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]


def word_tokenizer(max_length: int = 8):
    vocab = {"<pad>": 0, "<unk>": 1, "</s>": 2}
    for word in "a red fox in snow blurry".split():
        vocab.setdefault(word, len(vocab))
    tok = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="</s>", model_max_length=max_length
    )


def tiny_sd_with_text_encoder():
    torch.manual_seed(0)
    config = transformers.CLIPTextConfig(
        hidden_size=12,
        intermediate_size=24,
        num_attention_heads=2,
        num_hidden_layers=1,
        vocab_size=16,
        max_position_embeddings=8,
        bos_token_id=0,
        eos_token_id=2,
        pad_token_id=0,
    )
    text_encoder = transformers.CLIPTextModel(config).eval()
    return tiny_sd_pipeline(text_encoder=text_encoder, tokenizer=word_tokenizer())


@pytest.mark.parametrize(("scale", "steps", "calls"), [(7.5, 2, 2), (7.5, 4, 2), (1.0, 3, 1)])
def test_text_encoder_runs_once_per_branch_before_the_loop(scale, steps, calls):
    pipe = tiny_sd_with_text_encoder()
    seen = []
    pipe.text_encoder.register_forward_hook(lambda module, args, out: seen.append(args[0].shape))
    pipe(
        prompt="a red fox in snow",
        negative_prompt="blurry",
        guidance_scale=scale,
        num_inference_steps=steps,
        height=16,
        width=16,
        output_type="latent",
        generator=torch.Generator().manual_seed(0),
    )
    assert len(seen) == calls  # 2 with guidance (prompt, negative prompt), 1 without; never per step
