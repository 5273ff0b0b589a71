"""Lab 07 · Training Loop and Cross Entropy Loss. Run: python training_loop.py

A decoder learns to predict each next token: the labels are the inputs
shifted by one, the loss is a mean of -log p(next token) over the counted
positions. This trains a tiny Llama for a few hundred steps on the book's
own pages (BPE tokens) and checks the loss falls from about ln V.
"""

import math

import torch

from infralens.transformer import (
    DecoderConfig,
    TinyLlama,
    accumulate_gradients,
    book_corpus,
    book_tokenizer,
    causal_lm_loss,
    count_label_tokens,
    shift_labels,
)

# [1] Setup / contract
tok = book_tokenizer(vocab_size=512)  # byte-level BPE trained on the book
stream = torch.tensor(tok.encode("\n".join(book_corpus())).ids)  # (N,)
split = int(0.9 * len(stream))
train, held_out = stream[:split], stream[split:]  # last 10% never trained
V = tok.get_vocab_size()
config = DecoderConfig(vocab_size=V, hidden_size=64, intermediate_size=176)
torch.manual_seed(0)
torch.set_num_threads(1)  # matrices this small run faster on one thread
model = TinyLlama(config)  # 2 layers, 4 query heads, 2 KV heads
B, S, steps = 16, 64, 200  # sequences, tokens each, optimizer steps


def windows(data, n, gen):
    """n random windows of S tokens: (n, S); each is its own label."""
    start = torch.randint(0, len(data) - S, (n,), generator=gen)
    return torch.stack([data[s : s + S] for s in start])  # (n, S)


@torch.no_grad()
def held_out_loss():
    x = windows(held_out, 64, torch.Generator().manual_seed(1))  # (64, S)
    return causal_lm_loss(model(x), x).item()


# [2] Main transition
optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
gen = torch.Generator().manual_seed(0)
before = held_out_loss()
losses = []
for _ in range(steps):
    x = windows(train, B, gen)  # (B, S) token ids
    logits = model(x)  # (B, S, V): position t predicts token t + 1
    loss = causal_lm_loss(logits, x)  # labels = x, shifted inside
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    losses.append(loss.item())
after = held_out_loss()

# [3] Interview hook
# two micro-batches of unequal length, right-padded into one full batch
short, long = windows(train, 3, gen)[:, :8], windows(train, 1, gen)
full = torch.zeros(4, S, dtype=torch.long)  # padding id 0
full[:3, :8], full[3:] = short, long
labels = full.clone()
labels[:3, 8:] = -100  # padding is not a target
micro = [(short, short), (long, long)]


def grads():
    return torch.cat([p.grad.flatten() for p in model.parameters()])


model.zero_grad()
causal_lm_loss(model(full), labels).backward()  # the reference
reference = grads().clone()
differences = {}
for normalize in ("tokens", "micro_batch"):
    model.zero_grad()
    accumulate_gradients(model, micro, normalize=normalize)
    differences[normalize] = (grads() - reference).norm() / reference.norm()
# [end]


if __name__ == "__main__":
    print(f"Corpus: {len(stream):,} BPE tokens of the book's pages, V = {V}")
    print(f"  train {len(train):,}, held out {len(held_out):,}")
    n = sum(p.numel() for p in model.parameters())
    print(f"Model: {n:,} parameters, {config.num_hidden_layers} layers")
    x = windows(train, 1, torch.Generator().manual_seed(2))[:, :6]
    print("\nLabels are the inputs shifted by one (position t -> t + 1)")
    print(f"  input ids  {x[0].tolist()}")
    print(f"  targets    {shift_labels(x)[0].tolist()}")
    print(f"\nInitial loss {losses[0]:.3f}; ln V = {math.log(V):.3f}")
    print(f"Training: {steps} steps of {B} x {S} tokens, AdamW lr 3e-3")
    for s in (0, 50, 100, 150, steps - 1):
        window = losses[max(0, s - 9) : s + 1]
        print(f"  step {s + 1:>4}  loss {sum(window) / len(window):.3f}")
    print(f"Held-out loss: {before:.3f} before, {after:.3f} after")

    print("\nGradient accumulation, micro-batches of 3 x 8 and 1 x 64")
    counts = [count_label_tokens(lab) for _, lab in micro]
    print(f"  counted tokens per micro-batch: {counts}")
    for k, v in differences.items():
        print(f"  normalize={k!r:<14} |g - g_full| / |g_full| = {v:.2e}")
    padded = count_label_tokens(full) - count_label_tokens(labels)
    print(f"  padding labelled with its id would add {padded} targets")
