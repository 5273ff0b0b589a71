"""Gradient accumulation: token-normalised equals the full batch; per-micro-batch means do not when lengths differ."""

import pytest
import torch

from infralens.transformer import DecoderConfig, TinyLlama, accumulate_gradients, causal_lm_loss

CONFIG = DecoderConfig(vocab_size=20, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                       num_attention_heads=2, num_key_value_heads=1)  # fmt: skip


def grads(model):
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def setup(lengths):
    torch.manual_seed(0)
    model = TinyLlama(CONFIG)
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(1, 20, (1, n), generator=g) for n in lengths]
    S = max(lengths)
    padded = torch.cat([torch.nn.functional.pad(s, (0, S - s.shape[1])) for s in seqs])  # pad id 0 at the end
    labels = torch.cat([torch.nn.functional.pad(s, (0, S - s.shape[1]), value=-100) for s in seqs])
    model.zero_grad()
    full = causal_lm_loss(model(padded), labels)  # causal: right padding does not change real positions
    full.backward()
    return model, [(s, s) for s in seqs], full.item(), grads(model).clone()


@pytest.mark.parametrize("lengths", [(4, 12), (3, 9, 6)])
def test_tokens_normalisation_is_the_full_batch(lengths):
    model, micro, full_loss, full_grad = setup(lengths)
    model.zero_grad()
    loss = accumulate_gradients(model, micro, normalize="tokens")
    assert loss == pytest.approx(full_loss, rel=1e-5)
    assert torch.allclose(grads(model), full_grad, atol=1e-6)


@pytest.mark.parametrize("lengths", [(4, 12), (3, 9, 6)])
def test_micro_batch_means_differ_when_lengths_differ(lengths):
    model, micro, full_loss, full_grad = setup(lengths)
    model.zero_grad()
    loss = accumulate_gradients(model, micro, normalize="micro_batch")
    assert loss != pytest.approx(full_loss, rel=1e-3)
    assert not torch.allclose(grads(model), full_grad, atol=1e-4)


def test_micro_batch_means_agree_when_lengths_agree():
    model, micro, full_loss, full_grad = setup((7, 7))
    model.zero_grad()
    assert accumulate_gradients(model, micro, normalize="micro_batch") == pytest.approx(full_loss, rel=1e-5)
    assert torch.allclose(grads(model), full_grad, atol=1e-6)


def test_errors():
    model = TinyLlama(CONFIG)
    with pytest.raises(ValueError, match="normalize must be one of tokens, micro_batch"):
        accumulate_gradients(model, [(torch.ones(1, 3, dtype=torch.long),) * 2], normalize="mean")
    with pytest.raises(ValueError, match="at least one"):
        accumulate_gradients(model, [])


@pytest.mark.parametrize("normalize", ["tokens", "micro_batch"])
def test_a_custom_ignore_index_reaches_every_micro_batch_loss(normalize):
    # micro-batches padded to one length with id 0, and 0 as the ignored label: the result must be the
    # same as with the padding labelled -100 (the default), in both normalisations
    model, micro, _, _ = setup((4, 12))
    padded = [torch.nn.functional.pad(s, (0, 12 - s.shape[1])) for s, _ in micro]  # (1, 12) each
    model.zero_grad()
    with_zero = accumulate_gradients(model, [(p, p) for p in padded], normalize=normalize, ignore_index=0)
    zero_grad = grads(model).clone()
    model.zero_grad()
    minus = [(p, p.masked_fill(p == 0, -100)) for p in padded]
    with_default = accumulate_gradients(model, minus, normalize=normalize)
    assert with_zero == pytest.approx(with_default, rel=1e-6)
    assert torch.allclose(zero_grad, grads(model), atol=1e-7)
