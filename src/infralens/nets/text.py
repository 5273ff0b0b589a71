r"""A tiny T5-style text encoder with the contract of Wan's umT5 encoder: prompt in, ``(B, L, D)`` features out.

Wan 2.1 encodes a prompt with the encoder half of umT5-XXL: token ids padded to
a fixed length :math:`L` and an attention mask in, one :math:`D`-wide vector per
token position out, with the padded positions set to zero (DiffSynth-Studio's
``WanVideoUnit_PromptEmbedder``). The denoiser reads those vectors through
cross-attention at every step.

:class:`TinyTextEncoder` keeps that contract at toy size. Its tokenizer is
byte-level and needs no vocabulary file: id 0 pads, id 1 ends the prompt, and
byte :math:`b` of the UTF-8 text is id :math:`b + 2`. Its blocks are T5's
(pre-norm RMSNorm, attention and a gated-GELU feed-forward, no biases) without
T5's relative position buckets. Weights are random and fixed by a seed; the
shapes, the masking and the dtype are real, the features mean nothing.

Stable signature (other labs load this class): ``TinyTextEncoder(vocab_size=258,
dim=32, num_heads=2, num_layers=2, max_length=32, seed=0)``,
``forward(input_ids, attention_mask)`` and ``encode(prompts)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from infralens.core import positive_int, seeded

PAD_ID = 0
"""Token id of padding."""
EOS_ID = 1
"""Token id that ends every prompt (T5's ``</s>``)."""
BYTE_OFFSET = 2
"""Byte :math:`b` of the UTF-8 prompt is token id :math:`b + 2`."""


def tokenize(prompts: str | Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Byte-level token ids and attention mask, padded to ``max_length``: ``(B, L)`` each.

    Each prompt becomes its UTF-8 bytes shifted by 2, then the end id 1, then
    the padding id 0 up to :math:`L`. A prompt longer than
    :math:`L - 1` bytes is refused rather than truncated.

    :param prompts: one prompt or a list of them (:math:`B`).
    :param max_length: :math:`L`, the padded length (512 in Wan).
    :returns: ``(input_ids, attention_mask)``: int64 ids and a bool mask, True
        on real tokens (the bytes and the end token).

    >>> ids, mask = tokenize(["hi", ""], max_length=4)
    >>> ids.tolist(), mask.sum(dim=1).tolist()
    ([[106, 107, 1, 0], [1, 0, 0, 0]], [3, 1])
    """
    L = positive_int("max_length", max_length, example=32)
    batch = [prompts] if isinstance(prompts, str) else list(prompts)
    if not batch or not all(isinstance(p, str) for p in batch):
        raise ValueError(f"prompts must be a string or a non-empty list of strings, e.g. ['a cat']; got {prompts!r}")
    ids = torch.full((len(batch), L), PAD_ID, dtype=torch.long)  # (B, L)
    for row, prompt in enumerate(batch):
        data = prompt.encode("utf-8")
        if len(data) + 1 > L:
            raise ValueError(
                f"prompt {row} is {len(data)} bytes, but max_length={L} holds at most {L - 1} bytes and the "
                f"end token; shorten it or raise max_length to {len(data) + 1}"
            )
        ids[row, : len(data)] = torch.tensor(list(data), dtype=torch.long) + BYTE_OFFSET
        ids[row, len(data)] = EOS_ID
    return ids, ids != PAD_ID  # (B, L), (B, L)


class _Block(nn.Module):
    """T5 encoder block: pre-norm self-attention and a gated-GELU feed-forward, residual around each, no biases."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.norm1 = nn.RMSNorm(dim, eps=1e-6)
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.norm2 = nn.RMSNorm(dim, eps=1e-6)
        self.gate = nn.Linear(dim, 2 * dim, bias=False)
        self.value = nn.Linear(dim, 2 * dim, bias=False)
        self.down = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(B, L, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        # keys at padded positions are never attended to: keep is (B, 1, 1, L)
        a = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keep)  # (B, heads, L, D/heads)
        x = x + self.out(a.transpose(1, 2).reshape(B, L, D))  # (B, L, D)
        h = self.norm2(x)
        # gated GELU: down(gelu(gate(h)) * value(h))
        return x + self.down(nn.functional.gelu(self.gate(h), approximate="tanh") * self.value(h))  # (B, L, D)


class TinyTextEncoder(nn.Module):
    r"""``forward(input_ids (B, L), attention_mask (B, L)) -> (B, L, D)``, zero at padded positions.

    :param vocab_size: rows of the token embedding; at least 258 (pad, end, 256 bytes).
    :param dim: :math:`D`, the width of the output features (4096 for umT5-XXL).
    :param num_heads: attention heads; must divide ``dim``.
    :param num_layers: encoder blocks (24 for umT5-XXL).
    :param max_length: :math:`L`, the padded prompt length of :meth:`encode` (512 in Wan).
    :param seed: seeds the random weights, so every machine builds the same module.

    >>> te = TinyTextEncoder(dim=32, max_length=16)
    >>> context = te.encode(["a red fox", ""])
    >>> context.shape                                   # (B, L, D)
    torch.Size([2, 16, 32])
    >>> bool(context[0, 10:].eq(0).all()), bool(context[0, :10].ne(0).any())
    (True, True)
    """

    def __init__(
        self,
        vocab_size: int = 258,
        dim: int = 32,
        num_heads: int = 2,
        num_layers: int = 2,
        max_length: int = 32,
        seed: int = 0,
    ):
        super().__init__()
        self.vocab_size = positive_int("vocab_size", vocab_size, example=258)
        if vocab_size < 256 + BYTE_OFFSET:
            raise ValueError(
                f"vocab_size must be >= {256 + BYTE_OFFSET} (pad, end and 256 byte values), "
                f"e.g. vocab_size=258; got {vocab_size}"
            )
        self.dim = positive_int("dim", dim, example=32)
        heads = positive_int("num_heads", num_heads, example=2)
        layers = positive_int("num_layers", num_layers, example=2)
        if dim % heads:
            raise ValueError(f"num_heads must divide dim={dim}, e.g. num_heads=2; got {heads}")
        self.max_length = positive_int("max_length", max_length, example=32)
        with seeded(seed):  # the same weights on every machine
            self.token_embedding = nn.Embedding(vocab_size, dim)
            self.blocks = nn.ModuleList([_Block(dim, heads) for _ in range(layers)])
            self.norm = nn.RMSNorm(dim, eps=1e-6)
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        r"""Features ``(B, L, D)`` in the dtype of the weights; rows where ``attention_mask`` is False are zero.

        :param input_ids: ``(B, L)`` integer ids below ``vocab_size``.
        :param attention_mask: ``(B, L)``, True on real tokens.
        :returns: ``(B, L, D)``.
        """
        if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2 or input_ids.is_floating_point():
            got = tuple(input_ids.shape) if isinstance(input_ids, torch.Tensor) else type(input_ids).__name__
            raise ValueError(f"input_ids must be integer ids of shape (B, L), e.g. tokenize('a cat', 32)[0]; got {got}")
        if not isinstance(attention_mask, torch.Tensor) or attention_mask.shape != input_ids.shape:
            got = tuple(attention_mask.shape) if isinstance(attention_mask, torch.Tensor) else None
            raise ValueError(f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}; got {got}")
        bad = input_ids[(input_ids < 0) | (input_ids >= self.vocab_size)]
        if bad.numel():
            raise ValueError(f"input_ids must lie in [0, {self.vocab_size}), the vocab_size; got {bad[0].item()}")
        keep = attention_mask.bool()  # (B, L)
        x = self.token_embedding(input_ids)  # (B, L, D)
        for block in self.blocks:
            x = block(x, keep[:, None, None, :])  # (B, L, D)
        x = self.norm(x)  # (B, L, D)
        return x * keep[..., None].to(x.dtype)  # (B, L, D): padded positions zeroed, as Wan's pipeline does

    @torch.no_grad()
    def encode(self, prompts: str | Sequence[str]) -> torch.Tensor:
        r"""Tokenize to ``max_length`` on the module's device and run :meth:`forward`: ``(B, L, D)``.

        :param prompts: one prompt or a list of :math:`B` prompts.
        :returns: ``(B, L, D)`` in the weights' dtype.
        """
        ids, mask = tokenize(prompts, self.max_length)  # (B, L), (B, L)
        device = self.token_embedding.weight.device
        return self(ids.to(device), mask.to(device))
