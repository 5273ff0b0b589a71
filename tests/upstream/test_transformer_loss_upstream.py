"""infralens.transformer's loss against transformers' ``labels=`` loss, on a tiny random Llama.

transformers shifts ``labels`` inside the model (``ForCausalLMLoss``), ignores
-100, and divides by ``num_items_in_batch`` when given one.
"""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from infralens.transformer import (  # noqa: E402
    accumulate_gradients,
    causal_lm_loss,
    count_label_tokens,
    shift_labels,
)

from ._tiny_decoder import TINY, model_pair  # noqa: E402

pytestmark = [pytest.mark.upstream]


def padded_batch():
    """Two sequences of 10 and 6 tokens, right-padded with id 0; padding labelled -100."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, TINY.vocab_size, (2, 10), generator=g)
    ids[1, 6:] = 0
    labels = ids.masked_fill(ids == 0, -100)
    mask = (ids != 0).long()
    return ids, labels, mask


def test_our_loss_equals_transformers_labels_loss():
    hf, _ = model_pair()
    ids, labels, mask = padded_batch()
    with torch.no_grad():
        out = hf(ids, attention_mask=mask, labels=labels)
    assert torch.allclose(causal_lm_loss(out.logits, labels), out.loss, atol=1e-6)


def test_transformers_shifts_the_labels_itself():
    """Passing labels already shifted shifts them twice: the loss then trains position t on token t + 2."""
    hf, _ = model_pair()
    ids = padded_batch()[0]
    with torch.no_grad():
        right = hf(ids[:1], labels=ids[:1])
        twice = hf(ids[:1], labels=shift_labels(ids[:1]))
    assert torch.allclose(right.loss, causal_lm_loss(right.logits, ids[:1]), atol=1e-6)
    assert torch.allclose(twice.loss, causal_lm_loss(right.logits, shift_labels(ids[:1])), atol=1e-6)
    assert not torch.allclose(twice.loss, right.loss)


def test_padding_labelled_with_its_id_trains_on_padding():
    hf, _ = model_pair()
    ids, labels, mask = padded_batch()
    with torch.no_grad():
        masked = hf(ids, attention_mask=mask, labels=labels).loss
        padded = hf(ids, attention_mask=mask, labels=ids).loss  # padding counted as targets
    assert count_label_tokens(ids) - count_label_tokens(labels) == 4  # positions 5..8 of row 1 predict padding
    assert not torch.allclose(masked, padded)


def test_num_items_in_batch_is_the_divisor():
    """Given num_items_in_batch, the loss is the sum over counted shifted targets divided by it, not their mean."""
    hf, _ = model_pair()
    ids, labels, mask = padded_batch()
    with torch.no_grad():
        out = hf(ids, attention_mask=mask, labels=labels, num_items_in_batch=torch.tensor(40))
        mean = hf(ids, attention_mask=mask, labels=labels).loss
    targets = shift_labels(labels)  # (B, S), -100 at the end and on padding
    total = torch.nn.functional.cross_entropy(out.logits.flatten(0, 1), targets.flatten(), reduction="sum")
    n = count_label_tokens(labels)
    assert n == 9 + 5
    assert torch.allclose(out.loss, total / 40, atol=1e-6)  # the given count, not the batch's own
    assert torch.allclose(mean, total / n, atol=1e-6)
    assert torch.allclose(out.loss, mean * n / 40, atol=1e-6) and not torch.allclose(out.loss, mean)
    assert torch.allclose(out.loss, causal_lm_loss(out.logits, labels, num_items_in_batch=40), atol=1e-6)


def test_initial_loss_is_near_ln_vocab():
    """Random init (std 0.02) gives nearly uniform predictions: the loss starts at about ln V."""
    hf, _ = model_pair()
    ids, labels, mask = padded_batch()
    with torch.no_grad():
        loss = hf(ids, attention_mask=mask, labels=labels).loss.item()
    assert abs(loss - math.log(TINY.vocab_size)) < 0.05


def full_batch_grads(hf, ids, labels, mask):
    hf.zero_grad()
    hf(ids, attention_mask=mask, labels=labels).loss.backward()
    return [p.grad.clone() for p in hf.parameters()]


def test_token_normalised_accumulation_equals_the_full_batch_in_transformers():
    """num_items_in_batch and our normalize="tokens" give the full-batch gradient; per-batch means do not."""
    hf, _ = model_pair()
    ids, labels, mask = padded_batch()
    reference = full_batch_grads(hf, ids, labels, mask)
    micro = [(ids[:1], labels[:1]), (ids[1:, :6], labels[1:, :6])]  # 9 and 5 counted tokens
    n = sum(count_label_tokens(lab) for _, lab in micro)
    hf.zero_grad()
    for x, y in micro:
        hf(x, labels=y, num_items_in_batch=torch.tensor(n)).loss.backward()
    theirs = [p.grad.clone() for p in hf.parameters()]
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(theirs, reference, strict=True))

    def logits_of(x):
        return hf(x).logits

    for normalize, equal in (("tokens", True), ("micro_batch", False)):
        hf.zero_grad()
        accumulate_gradients(logits_of, micro, normalize=normalize)
        ours = [p.grad.clone() for p in hf.parameters()]
        assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(ours, reference, strict=True)) is equal


def test_trainer_counts_the_shifted_targets_of_every_micro_batch(tmp_path):
    """Trainer's num_items_in_batch for a step is the count of labels[..., 1:] != -100 over its micro-batches."""
    from transformers import Trainer, TrainingArguments

    hf, _ = model_pair()
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    trainer = Trainer(model=hf, args=args)
    labels = padded_batch()[1]
    micro = [{"labels": labels[:1]}, {"labels": labels[1:]}]
    counted = trainer._get_num_items_in_batch(micro, torch.device("cpu"))
    assert trainer._loss_shifts_labels
    assert int(counted) == sum(count_label_tokens(m["labels"]) for m in micro) == 9 + 5
