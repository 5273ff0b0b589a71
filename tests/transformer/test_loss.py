"""The causal LM loss against cross-entropy written out by hand, and its argument errors."""

import math

import pytest
import torch

from infralens.transformer import IGNORE_INDEX, causal_lm_loss, count_label_tokens, shift_labels


def by_hand(logits, ids, pad_positions=()):
    """Mean over (b, t) with a target of -log softmax(logits[b, t])[ids[b, t + 1]]."""
    terms = []
    B, S, _ = logits.shape
    logp = logits.double().log_softmax(-1)
    for b in range(B):
        for t in range(S - 1):
            if (b, t + 1) in pad_positions:
                continue
            terms.append(-logp[b, t, ids[b, t + 1]].item())
    return sum(terms) / len(terms), len(terms)


def test_loss_is_mean_next_token_nll():
    g = torch.Generator().manual_seed(0)
    logits, ids = torch.randn(3, 7, 11, generator=g), torch.randint(0, 11, (3, 7), generator=g)
    expected, n = by_hand(logits, ids)
    assert causal_lm_loss(logits, ids).item() == pytest.approx(expected, rel=1e-6)
    assert n == count_label_tokens(ids) == 3 * 6


def test_ignored_labels_count_in_neither_sum_nor_mean():
    g = torch.Generator().manual_seed(1)
    logits, ids = torch.randn(2, 6, 9, generator=g), torch.randint(0, 9, (2, 6), generator=g)
    labels = ids.clone()
    labels[1, 4:] = IGNORE_INDEX
    expected, n = by_hand(logits, ids, pad_positions={(1, 4), (1, 5)})
    assert causal_lm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert count_label_tokens(labels) == n == 5 + 3


def test_shift_labels_and_ignore_index():
    ids = torch.tensor([[3, 1, 4, 1, 5]])
    assert shift_labels(ids).tolist() == [[1, 4, 1, 5, -100]]
    assert shift_labels(ids, ignore_index=-1).tolist() == [[1, 4, 1, 5, -1]]
    loss = torch.nn.CrossEntropyLoss()(torch.zeros(4, 7), ids[0, 1:])  # torch's own module, pre-shifted
    assert causal_lm_loss(torch.zeros(1, 5, 7), ids).item() == pytest.approx(loss.item()) == pytest.approx(math.log(7))


def test_shifting_twice_trains_the_token_after_next():
    g = torch.Generator().manual_seed(2)
    logits, ids = torch.randn(1, 8, 5, generator=g), torch.randint(0, 5, (1, 8), generator=g)
    twice = causal_lm_loss(logits, shift_labels(ids))
    logp = logits.double().log_softmax(-1)
    expected = -sum(logp[0, t, ids[0, t + 2]].item() for t in range(6)) / 6
    assert twice.item() == pytest.approx(expected, rel=1e-6)


def test_num_items_in_batch_divides_the_sum():
    logits, ids = torch.randn(2, 5, 4), torch.randint(0, 4, (2, 5))
    mean = causal_lm_loss(logits, ids)
    assert causal_lm_loss(logits, ids, num_items_in_batch=16).item() == pytest.approx(mean.item() * 8 / 16)
    assert causal_lm_loss(logits, ids, num_items_in_batch=torch.tensor(8)).item() == pytest.approx(mean.item())


def test_bf16_logits_are_upcast():
    logits = torch.randn(2, 5, 30).bfloat16()
    ids = torch.randint(0, 30, (2, 5))
    loss = causal_lm_loss(logits, ids)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(causal_lm_loss(logits.float(), ids).item())


@pytest.mark.parametrize(
    ("logits", "labels", "kwargs", "words"),
    [
        (torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.long), {}, ["logits", "(B, S, V)"]),
        (torch.zeros(2, 5, 3), torch.zeros(2, 5), {}, ["labels", "integer"]),
        (torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long), {}, ["(2, 4)", "(2, 5)", "unshifted"]),
        (torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long), {"num_items_in_batch": 0}, ["num_items_in_batch"]),
        (torch.zeros(2, 5, 3), torch.zeros(2, 5, dtype=torch.long), {"num_items_in_batch": 2.5}, [">= 1"]),
    ],
)
def test_errors(logits, labels, kwargs, words):
    with pytest.raises(ValueError) as err:
        causal_lm_loss(logits, labels, **kwargs)
    assert all(w in str(err.value) for w in words), str(err.value)


def test_all_ignored_refuses_to_divide_by_zero():
    with pytest.raises(ValueError, match="num_items_in_batch"):
        causal_lm_loss(torch.zeros(1, 3, 4), torch.full((1, 3), IGNORE_INDEX))


def test_torch_cross_entropy_ignores_minus_100_by_default():
    """IGNORE_INDEX is torch's default: cross_entropy without ignore_index drops the -100 targets."""
    g = torch.Generator().manual_seed(4)
    logits, targets = torch.randn(6, 5, generator=g), torch.tensor([1, -100, 3, -100, 0, 2])
    kept = targets != -100
    default = torch.nn.functional.cross_entropy(logits, targets)
    assert torch.allclose(default, torch.nn.functional.cross_entropy(logits[kept], targets[kept]))
    assert IGNORE_INDEX == -100


def test_a_custom_ignore_index_is_used_for_the_shift_the_sum_and_the_count():
    # pad id 0 used as the ignored label: the same positions drop out as with -100, and the last
    # position (no next token) is ignored too, counted by hand
    g = torch.Generator().manual_seed(3)
    logits, ids = torch.randn(2, 6, 9, generator=g), torch.randint(1, 9, (2, 6), generator=g)
    labels = ids.clone()
    labels[1, 4:] = 0
    expected, n = by_hand(logits, ids, pad_positions={(1, 4), (1, 5)})
    assert count_label_tokens(labels, ignore_index=0) == n == 5 + 3
    assert causal_lm_loss(logits, labels, ignore_index=0).item() == pytest.approx(expected, rel=1e-6)


def test_one_counted_token_is_a_valid_batch():
    # the smallest N is 1: the loss is that one token's negative log-likelihood
    g = torch.Generator().manual_seed(4)
    logits = torch.randn(1, 3, 5, generator=g)
    labels = torch.tensor([[2, 4, IGNORE_INDEX]])
    expected = -logits[0, 0].double().log_softmax(-1)[4].item()
    assert count_label_tokens(labels) == 1
    assert causal_lm_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)
    assert causal_lm_loss(logits, labels, num_items_in_batch=1).item() == pytest.approx(expected, rel=1e-6)
