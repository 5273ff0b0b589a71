"""Lab 01 · Tokenization and Embedding. Run: python tokenizer_embedding.py

A subword tokenizer turns text into integer ids; an embedding table turns
each id into a vector: (B, S) ids -> (B, S, D). The tokenizer here is a
byte-level BPE trained, when the script starts, on the book's own pages.
"""

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from infralens.transformer import (
    PAD_ID,
    book_tokenizer,
    encode_batch,
    padded_vocab_size,
)

# [1] Setup / contract
tok = book_tokenizer(vocab_size=2000)  # BPE: 3 specials, 256 bytes, merges
texts = ["The denoiser predicts the noise.", "Tokens are not words"]
ids, attention_mask = encode_batch(tok, texts)  # (B, S) each, right-padded
B, S = ids.shape
V = padded_vocab_size(tok.get_vocab_size(), 64)  # rows the model allocates
D = 64  # model width
torch.manual_seed(0)
embed = nn.Embedding(V, D, padding_idx=PAD_ID)  # the table E: (V, D)

# [2] Main transition
x = embed(ids)  # (B, S, D): x[b, s] = E[ids[b, s]], a gather
one_hot = F.one_hot(ids, V).float()  # (B, S, V): a single 1 per token
x_matmul = one_hot @ embed.weight  # (B, S, V) @ (V, D) -> (B, S, D)
assert torch.equal(x, x_matmul)  # the same numbers, bit for bit
with FlopCounterMode(display=False) as lookup:
    embed(ids)
with FlopCounterMode(display=False) as matmul:
    one_hot @ embed.weight

# [3] Interview hook
head = nn.Linear(D, V, bias=False)  # output head: (B, S, D) -> (B, S, V)
model = nn.ModuleDict({"embed": embed, "head": head})
untied = sum(p.numel() for p in model.parameters())  # two (V, D) tables
head.weight = embed.weight  # tied: one (V, D) tensor, read both ways
tied = sum(p.numel() for p in model.parameters())  # a shared tensor once
logits = head(x)  # (B, S, V): a score per vocabulary entry
# [end]


if __name__ == "__main__":
    n_merges = tok.get_vocab_size() - 3 - 256
    print(f"BPE trained on the diffusion tracks' pages: {n_merges} merges")
    print(f"  vocabulary {tok.get_vocab_size()}, padded to V = {V} rows")
    print("\nText -> tokens -> ids (<s> is prepended, Ġ is a space byte)")
    for text in texts:
        enc = tok.encode(text)
        words = len(text.split())
        print(f"  {text!r}: {words} words, {len(enc.ids)} tokens")
        print(f"    tokens {enc.tokens}")
        print(f"    ids    {enc.ids}")
    print(f"\nThe batch, padded with <pad> = {PAD_ID} on the right")
    print(f"  ids            {tuple(ids.shape)}  (B, S)")
    for row, mask in zip(ids.tolist(), attention_mask.tolist(), strict=True):
        print(f"    ids  {row}")
        print(f"    mask {mask}")
    print("\nLookup: (B, S) ids -> (B, S, D) vectors")
    print(f"  embed(ids)     {tuple(x.shape)}  (B, S, D)")
    print(f"  one_hot        {tuple(one_hot.shape)}  (B, S, V)")
    print(f"  equal, bit for bit: {torch.equal(x, x_matmul)}")
    pad = attention_mask == 0
    print(f"  pad rows are zero (padding_idx): {bool((x[pad] == 0).all())}")
    print(f"  FLOPs, lookup:         {lookup.get_total_flops():>12,}")
    print(f"  FLOPs, one-hot matmul: {matmul.get_total_flops():>12,}")
    print(f"    = 2 B S V D = {2 * B * S * V * D:,}")
    print("\nParameters of the vocabulary (input table + output head)")
    print(f"  untied: {untied:>9,} = 2 V D")
    print(f"  tied:   {tied:>9,} = V D")
    print(f"  logits {tuple(logits.shape)}  (B, S, V)")
